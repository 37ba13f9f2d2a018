"""One released network in three runtimes on CPU: jaxseg (JAX), its ONNX file in onnxruntime,
its TFLite file in LiteRT, side by side in one run.

    python benchmarks/export_runtimes.py                 # DeepLab v3 MobileNetV2, 513x513
    python benchmarks/export_runtimes.py --int8          # plus an int8 TFLite row
    python benchmarks/export_runtimes.py --smoke         # tiny, for the test suite
    python benchmarks/export_runtimes.py --segmenter [--network resnet50]

`--segmenter` times `Segmenter(runtime=...)` instead, the inference path's own option: per
image `Segmenter.logits` with runtime "jax" (the default: the CPU conv forms), "onnxruntime"
and "litert" (the network exported in memory for the canvas on first use, float32 input), the
calls alternating between runtimes, and the cost of the first call of each (JAX: compile;
the others: export and the runtime's loading, also given alone), on the MobileNetV2 release
(`--network mobilenetv2`, default) or DeepLab v3 ResNet-50 (`--network resnet50`: the
paper's network, output stride 16, ASPP rates 6/12/18, multi-grid 1/2/4, 21 classes, TF
DeepLab's preprocessing and canvas).

The network is the zoo entry `mobilenetv2_coco_voc_trainaug` (DeepLab v3, MobileNetV2, VOC,
evaluated at 513x513, output stride 16) with random weights in the release's variable layout
(speed does not depend on the values): `jaxseg.zoo.deeplab_models.build_segmenter`, the
`Segmenter` the zoo builds for the downloaded checkpoint. Rows, each the median of `--iters`
calls on one uint8 image after warm-up calls:

- jaxseg: `Segmenter.logits(image)` (pad to the 513 canvas, network, crop), with the reference
  conv forms the zoo uses and with the CPU forms (`jaxseg.nn.conv_layers("cpu")`);
- ONNX: `jaxseg-export --format onnx` (dynamic batch) in onnxruntime's CPU provider;
- TFLite: `--format tflite` (batch 1) in LiteRT's interpreter (XNNPACK), `--threads` threads;
- TFLite int8 (`--int8`): post-training quantised on `--calibration-images` noise images; its
  speed is representative, its label agreement on noise is not (no trained weights here).

Every runtime gets the machine's cores (onnxruntime and LiteRT: `--threads`, default all).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as common  # noqa: E402

from jaxseg.export import export_segmenter  # noqa: E402
from jaxseg.export import onnx as onnx_format  # noqa: E402
from jaxseg.export import tflite as tflite_format  # noqa: E402
from jaxseg.models import DeepLabV3  # noqa: E402
from jaxseg.nn import conv_layers  # noqa: E402
from jaxseg.segmenter import Segmenter  # noqa: E402
from jaxseg.zoo import deeplab_models  # noqa: E402

RELEASE = "mobilenetv2_coco_voc_trainaug"


def random_variables(model, size: int, seed: int = 0):
    """Seeded values in the model's variable tree (He-scaled kernels, BN variances near 1)."""
    abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = str(path[-1].key)
        if name == "var":
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        if leaf.ndim > 1:
            scale = np.sqrt(2.0 / max(1, int(np.prod(leaf.shape[:-1]))))
            return (rng.standard_normal(leaf.shape) * scale).astype(np.float32)
        values = rng.normal(0, 0.1, leaf.shape).astype(np.float32)
        return values + 1.0 if name == "scale" else values

    return jax.tree_util.tree_map_with_path(fill, abstract)


def fed_as(zoo_seg: Segmenter, model, variables, size: int) -> Segmenter:
    """A `Segmenter` of `model` and `variables` fed as the zoo's release is: its
    normalisation, class names, padding, canvas rule and resize convention."""
    return Segmenter(
        model,
        variables,
        normalize=zoo_seg.normalize,
        class_names=zoo_seg.class_names,
        crop_size=size,
        pad_pixel=zoo_seg.pad_pixel,
        bucket=zoo_seg.bucket,
        align_corners=zoo_seg.align_corners,
    )


def segmenter_runtimes(args: argparse.Namespace) -> None:
    """The `--segmenter` table: `Segmenter.logits(image)` per runtime, calls alternating."""
    common.print_context(["tensorflow-cpu", "jax2onnx", "onnxruntime", "ai-edge-litert"])
    release = deeplab_models.RELEASES[RELEASE]
    if args.network == "mobilenetv2":
        name, model = f"zoo {RELEASE}", release.arch.model()
    else:
        name, model = "DeepLab v3 ResNet-50", DeepLabV3(num_classes=21, backbone="resnet50")
    print(f"model: {name} (random weights), {args.size}x{args.size}, one image a call")
    variables = random_variables(model, args.size)
    zoo_seg = deeplab_models.build_segmenter(release, variables, crop_size=args.size)
    jax_seg = fed_as(zoo_seg, model, variables, args.size)
    image = np.random.default_rng(1).integers(0, 256, (args.size, args.size, 3), np.uint8)
    segs = {r: jax_seg.replace(runtime=r) for r in ("onnxruntime", "litert")}
    segs = {"jax": jax_seg, **segs}
    first, export_s, logits = {}, {}, {}
    for runtime, seg in segs.items():
        start = time.perf_counter()
        logits[runtime] = seg.logits(image)
        first[runtime] = time.perf_counter() - start
        if runtime != "jax":
            export_s[runtime] = sum(seg._exported.first_use_seconds.values())
    times = {runtime: [] for runtime in segs}
    for i in range(args.warmup + args.iters):
        order = list(segs) if i % 2 == 0 else list(segs)[::-1]  # alternate who goes first
        for runtime in order:
            start = time.perf_counter()
            segs[runtime].logits(image)
            if i >= args.warmup:
                times[runtime].append(time.perf_counter() - start)
    base = common.median_ms(times["jax"])
    reference = logits["jax"]
    table = []
    for runtime in segs:
        error = np.max(np.abs(logits[runtime] - reference)) / np.max(np.abs(reference))
        agree = np.mean(np.argmax(logits[runtime], -1) == np.argmax(reference, -1))
        table.append(
            (
                runtime,
                f"{first[runtime]:.1f}",
                f"{export_s[runtime]:.1f}" if runtime in export_s else "-",
                f"{common.median_ms(times[runtime]):.1f}",
                common.spread_ms(times[runtime]),
                f"{base / common.median_ms(times[runtime]):.2f}x",
                f"{error:.1e}",
                f"{100 * agree:.2f}",
            )
        )
    header = (
        "Segmenter(runtime=)", "first call s", "of which export + load s", "median ms",
        "min-max ms", "speed vs jax", "max rel. logit diff", "labels equal %",
    )  # fmt: skip
    common.print_table(header, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=513, help="evaluation canvas (513)")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--int8", action="store_true", help="add an int8 TFLite row")
    parser.add_argument("--calibration-images", type=int, default=8)
    parser.add_argument("--smoke", action="store_true", help="65x65, 2 iterations")
    parser.add_argument(
        "--segmenter", action="store_true", help="time Segmenter(runtime=...) (see above)"
    )
    parser.add_argument("--network", choices=("mobilenetv2", "resnet50"), default="mobilenetv2")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.iters, args.warmup, args.calibration_images = 65, 2, 1, 2
    if args.segmenter:
        segmenter_runtimes(args)
        return
    common.print_context(["tensorflow-cpu", "jax2onnx", "onnxruntime", "ai-edge-litert"])
    print(f"model: zoo {RELEASE} (random weights), {args.size}x{args.size}, batch 1, "
          f"threads {args.threads}")  # fmt: skip

    release = deeplab_models.RELEASES[RELEASE]
    variables = random_variables(release.arch.model(), args.size)
    seg = deeplab_models.build_segmenter(release, variables, crop_size=args.size)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)

    rows = []
    reference = None
    for form in ("reference", "cpu"):
        # The zoo's Segmenter with the network's convs computed in `form` (same variables).
        form_model = release.arch.model().clone(conv=conv_layers(form).conv)
        form_seg = fed_as(seg, form_model, variables, args.size)
        start = time.perf_counter()
        logits = form_seg.logits(image)
        first = time.perf_counter() - start
        reference = logits if reference is None else reference
        times = common.time_call(lambda s=form_seg: s.logits(image), args.warmup, args.iters)
        rows.append((f"jaxseg (JAX), {form} convs", "-", first, times, logits))

    with tempfile.TemporaryDirectory() as folder:
        exports = [("onnx", "model.onnx", None), ("tflite", "model.tflite", None)]
        if args.int8:
            calibration = rng.integers(
                0, 256, (args.calibration_images, args.size, args.size, 3), dtype=np.uint8
            )
            exports.append(("tflite", "model_int8.tflite", calibration))
        for fmt, name, calibration in exports:
            path = Path(folder) / name
            start = time.perf_counter()
            export_segmenter(seg, path, format=fmt, size=args.size, calibration=calibration)
            export_s = time.perf_counter() - start
            size_mb = f"{path.stat().st_size / 2**20:.1f}"
            if fmt == "onnx":
                import onnxruntime

                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = args.threads
                session = onnxruntime.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )

                def call(session=session):
                    return session.run(["logits"], {"images": image[None]})[0][0]

                label = f"ONNX in {onnx_format.runtime_version()}"
            else:
                runner = tflite_format.Runner(str(path), num_threads=args.threads)

                def call(runner=runner):
                    return runner(image[None])[0][0]

                kind = "int8" if calibration is not None else "float32"
                label = f"TFLite {kind} in {tflite_format.runtime_version()}"
            start = time.perf_counter()
            logits = call()
            first = time.perf_counter() - start
            times = common.time_call(call, args.warmup, args.iters)
            rows.append((label, size_mb, first, times, logits, export_s))

    base = common.median_ms(rows[0][3])
    table = []
    for row in rows:
        label, size_mb, first, times, logits = row[:5]
        export_s = f"{row[5]:.0f}" if len(row) > 5 else "-"
        error = np.max(np.abs(logits - reference)) / np.max(np.abs(reference))
        agree = np.mean(np.argmax(logits, -1) == np.argmax(reference, -1))
        table.append(
            (
                label,
                size_mb,
                export_s,
                f"{1e3 * first:.0f}",
                f"{common.median_ms(times):.1f}",
                common.spread_ms(times),
                f"{base / common.median_ms(times):.2f}x",
                f"{error:.1e}",
                f"{100 * agree:.2f}",
            )
        )
    header = (
        "runtime", "file MiB", "export s", "first call ms", "median ms", "min-max ms",
        "speed vs jaxseg (reference convs)", "max rel. logit diff", "labels equal %",
    )  # fmt: skip
    common.print_table(header, table)


if __name__ == "__main__":
    main()
