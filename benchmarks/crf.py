"""Dense CRF speed and agreement: jaxseg.crf.dense_crf against pydensecrf on the same inputs.

    python benchmarks/crf.py                          # 375x500, 21 classes, 10 iterations
    python benchmarks/crf.py --size 48x64 --repeats 1 # smoke run (CI)
    python benchmarks/crf.py --breakdown              # + lattice build vs per-iteration cost

Inputs are scikit-image photos with logits from a blurred, noisy colour segmentation
(`tests/crf/crf_inputs.py`). Both implementations get the same unaries (-log softmax(logits)),
image and parameters (the DeepLab v2 ResNet setting by default). pydensecrf is single-threaded;
ours runs on JAX's default device. Calls alternate between the two so that load from other
processes on a shared machine hits both alike; we report the median and the min-max of wall
time and, for the CPU, process CPU time (all threads), which is what one core would need.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # pydensecrf's Eigen: one core

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as common  # noqa: E402

# The tests' CRF inputs (photos plus degraded segmentations), shared with this benchmark.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "crf"))
import crf_inputs as synthetic  # noqa: E402

from jaxseg.crf import (  # noqa: E402
    DEEPLAB_V1_LARGEFOV,
    DEEPLAB_V2_RESNET,
    CRFParams,
    dense_crf,
    lattice,
)
from jaxseg.crf.grid import smoothness_filter  # noqa: E402
from jaxseg.crf.postprocess import capacity_tiers, pixel_features  # noqa: E402
from jaxseg.crf.stencil import Stencil  # noqa: E402

PRESETS = {"deeplab-v2-resnet": DEEPLAB_V2_RESNET, "deeplab-v1-largefov": DEEPLAB_V1_LARGEFOV}


def pydensecrf_inference(logits: np.ndarray, image: np.ndarray, params: CRFParams) -> np.ndarray:
    """[H, W, C] marginals from pydensecrf with the same energy as `dense_crf`."""
    import pydensecrf.densecrf as dcrf

    height, width, num_classes = logits.shape
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    unary = np.ascontiguousarray(-log_probs.reshape(-1, num_classes).T, dtype=np.float32)
    crf = dcrf.DenseCRF2D(width, height, num_classes)
    crf.setUnaryEnergy(unary)
    if params.w_gaussian:
        crf.addPairwiseGaussian(sxy=params.theta_gamma, compat=params.w_gaussian)
    if params.w_bilateral:
        crf.addPairwiseBilateral(
            sxy=params.theta_alpha,
            srgb=params.theta_beta,
            rgbim=np.ascontiguousarray(image),
            compat=params.w_bilateral,
        )
    q = np.array(crf.inference(params.num_iterations), dtype=np.float32)
    return q.T.reshape(height, width, num_classes)


def run_ours(logits, image, kwargs, num_iterations=None) -> np.ndarray:
    if num_iterations is not None:
        kwargs = {**kwargs, "num_iterations": num_iterations}
    return np.asarray(dense_crf(logits, image, **kwargs))


def timed(fn):
    """(result, wall seconds, process CPU seconds) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def summary(times: list[float]) -> str:
    return f"{1e3 * statistics.median(times):.0f} ({common.spread_ms(times)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="375x500", help="HxW of the inputs")
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per image and side")
    parser.add_argument("--images", nargs="+", default=["astronaut", "coffee", "chelsea"])
    parser.add_argument("--breakdown", action="store_true", help="time 1 vs N iterations")
    parser.add_argument(
        "--stencil-form",
        choices=["reference", "cpu"],
        default="cpu",
        help="dense_crf's stencil_form (cpu: the stencil as its own kernel, faster on CPU)",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="deeplab-v2-resnet",
        help="CRF parameters (the ResNet-DeepLab setting or DeepLab v1 LargeFOV's)",
    )
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    params = dataclasses.replace(PRESETS[args.preset], num_iterations=args.iterations)
    kwargs = {**dataclasses.asdict(params), "stencil_form": args.stencil_form}
    try:
        import pydensecrf.densecrf  # noqa: F401

        have_reference = True
    except ImportError:
        have_reference = False
        print("pydensecrf not installed: timing jaxseg only")

    common.print_context(["pydensecrf2"])
    print(f"input: {height}x{width}, {args.classes} classes, {params}")
    if params.w_gaussian:
        smoothness = smoothness_filter(height, width, params.theta_gamma)
        is_stencil = isinstance(smoothness, Stencil)
        form = f"stencil of {len(smoothness.offsets)} offsets" if is_stencil else "lattice"
        print(f"smoothness kernel (theta_gamma={params.theta_gamma}): {form}")
        print(f"stencil_form: {args.stencil_form}")
    rows = []
    for name in args.images:
        image = synthetic.photo(name, height, width)
        logits = synthetic.degraded_logits(image, args.classes)
        ours = functools.partial(run_ours, logits, image, kwargs)
        _, compile_s, _ = timed(ours)
        feats = pixel_features(height, width, image, params.theta_alpha, params.theta_beta)
        vertices = int(jax.jit(lattice.locate_vertices)(feats).num_vertices)
        tier = next(c for c in capacity_tiers(height * width) if vertices <= c)

        ours_wall, ours_cpu, ref_wall, ref_cpu = [], [], [], []
        q_ours = q_ref = None
        for _ in range(args.repeats):
            q_ours, wall, cpu = timed(ours)
            ours_wall.append(wall)
            ours_cpu.append(cpu)
            if have_reference:
                q_ref, wall, cpu = timed(
                    functools.partial(pydensecrf_inference, logits, image, params)
                )
                ref_wall.append(wall)
                ref_cpu.append(cpu)
        row = [
            name,
            f"{vertices / (height * width):.2f} N (capacity {tier / (height * width):.3g} N)",
            f"{compile_s:.1f}",
            summary(ours_wall),
            summary(ours_cpu),
        ]
        if have_reference:
            agree = np.mean(q_ours.argmax(-1) == q_ref.argmax(-1))
            changed = np.mean(q_ref.argmax(-1) != logits.argmax(-1))
            row += [
                summary(ref_wall),
                summary(ref_cpu),
                f"{statistics.median(ref_wall) / statistics.median(ours_wall):.2f}x",
                f"{100 * agree:.3f}%",
                f"{np.abs(q_ours - q_ref).max():.1e}",
                f"{100 * changed:.1f}%",
            ]
        if args.breakdown:
            one = [timed(functools.partial(ours, 1))[1] for _ in range(args.repeats)]
            full = statistics.median(ours_wall)
            per_iteration = (full - statistics.median(one)) / max(args.iterations - 1, 1)
            row.append(
                f"{1e3 * (full - args.iterations * per_iteration):.0f} + "
                f"{args.iterations} x {1e3 * per_iteration:.0f}"
            )
        rows.append(row)

    header = ["image", "bilateral vertices", "first call s", "ours ms", "ours CPU ms"]
    if have_reference:
        header += [
            "pydensecrf ms",
            "pydensecrf CPU ms",
            "speed-up",
            "label agreement",
            "max |dQ|",
            "labels CRF changed",
        ]
    if args.breakdown:
        header.append("ours: setup + iterations (ms)")
    print("times: median (min-max) over --repeats")
    common.print_table(header, rows)
    print(f"load average at end (1/5/15 min): {common.load_average()}")


if __name__ == "__main__":
    main()
