"""The two sides of `peers.py --peer tf-deeplab`: the released Xception-65 DeepLab v3+ at its
evaluation canvas, run by jaxseg's zoo and by TensorFlow's own ops.

`XceptionRelease` creates the official variables (random values with sane BatchNorm
statistics, the official names, by tracing `tf_deeplab.Official`'s graph once) and writes them
as a TF checkpoint in the official layout. Then:

- `TFDeepLab`: the official evaluation of one uint8 `[H, W, 3]` image (normalise, pad to the
  canvas, network at output stride 16, align_corners resize of the logits, crop back) as one
  `tf.function(jit_compile=False)` graph: TensorFlow's CPU kernels, the weights as graph
  constants, as in the released frozen graph.
- `OursZoo`: `jaxseg.zoo.load("xception65_coco_voc_trainaug", checkpoint=...)`, the
  `Segmenter` users get, `.logits(image)` (`--ours zoo`; on a CPU it compiles the weights in
  as constants); `--ours arguments`: the same Segmenter with its network jitted with the
  variables as an argument (`arguments_network`, from peers.py; a measurement only).

Both return float32 logits `[H, W, 21]` on the host; `check_agreement` compares them before
timing, so both sides are known to compute the same thing.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import tf_deeplab

NOTE = (
    "the released xception65_coco_voc_trainaug architecture (Xception-65, 16 middle-flow "
    "units, separable ASPP 6/12/18 + image pooling, separable decoder at stride 4, 21 classes) "
    "at output stride 16, random weights in a checkpoint with the official variable names; "
    "TF: the official graph composed from tf.nn ops (benchmarks/tf_deeplab.py) in one "
    "tf.function (no XLA), weights as graph constants; ours: jaxseg.zoo.load(...).logits "
    "(the Segmenter: CPU conv forms, compile options, weights as constants)."
)
ZOO_NAME = "xception65_coco_voc_trainaug"


class XceptionRelease:
    """The official variables, their checkpoint, the image and the canvas, shared by both sides.

    Attributes:
      case: `tf_deeplab.Case` of the release (`--smoke`: one middle-flow unit instead of 16).
      official: the `tf_deeplab.Official` holding the variables (after `TFDeepLab` traced it).
      image: uint8 `[H, W, 3]` (VOC's 375x500 when it fits the canvas, else the canvas).
      canvas: `(res, res)`, the evaluation crop the image is padded to.
    """

    def __init__(self, args):
        from jaxseg.weights.tf_slim import DeepLabArch  # noqa: PLC0415
        from jaxseg.zoo import deeplab_models  # noqa: PLC0415

        self.smoke = args.smoke
        # The official xception_65 has 16 middle-flow units (xception.py); the smoke run keeps
        # one so that CI compiles a small program on the same code path.
        arch = DeepLabArch(
            **{**deeplab_models.XCEPTION65, "num_classes": 21},
            middle_flow_units=1 if args.smoke else 16,
        )
        self.arch = arch
        self.case = tf_deeplab.Case(arch, scope=tf_deeplab.OFFICIAL_SCOPES["xception_65"])
        self.official = tf_deeplab.Official(seed=0)
        self.canvas = (args.resolution, args.resolution)
        h, w = (375, 500) if min(self.canvas) >= 500 else (args.resolution - 3, args.resolution)
        # A smooth image (random noise would make every pixel's class a near tie).
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        channels = [np.sin(6 * xx + 2 * c) * np.cos(5 * yy - c) for c in range(3)]
        self.image = np.clip(127.5 + 120 * np.stack(channels, -1), 0, 255).astype(np.uint8)
        self.folder = tempfile.TemporaryDirectory(prefix="jaxseg_tf_peer_")

    def write_checkpoint(self) -> str:
        """Write the variables `TFDeepLab` created; returns the checkpoint prefix."""
        prefix = os.path.join(self.folder.name, "model.ckpt")
        return tf_deeplab.write_checkpoint(self.official.variables, prefix)


class TFDeepLab:
    def __init__(self, args, release: XceptionRelease):
        import tensorflow as tf  # noqa: PLC0415

        start = time.perf_counter()
        official, case, canvas = release.official, release.case, release.canvas
        spec = tf.TensorSpec(release.image.shape, tf.uint8)

        @tf.function(jit_compile=False, input_signature=[spec])
        def forward(image):
            return tf_deeplab.evaluation_logits(official, case, image, canvas, 16)

        self.forward = forward.get_concrete_function()  # traces: creates the variables
        self.image = tf.constant(release.image)
        self.output()  # first call: TF's graph optimisations
        self.setup_s = time.perf_counter() - start
        self.flops = None
        intra = tf.config.threading.get_intra_op_parallelism_threads() or "all cores"
        inter = tf.config.threading.get_inter_op_parallelism_threads() or "all cores"
        self.framework = f"TensorFlow {tf.__version__} (tf.function graph, no XLA)"
        self.label = f"official graph in tf.nn ops, threads intra {intra} / inter {inter}"

    def output(self) -> np.ndarray:
        return self.forward(self.image).numpy()

    def run(self):
        self.output()


class OursZoo:
    def __init__(self, label: str, args, release: XceptionRelease, prefix: str, arguments_network):
        from jaxseg import zoo  # noqa: PLC0415
        from jaxseg.zoo import deeplab_models  # noqa: PLC0415

        start = time.perf_counter()
        # The converted weights go to a throwaway cache, not the user's.
        os.environ["JAXSEG_CACHE"] = os.path.join(release.folder.name, "cache")
        if release.smoke:  # the registry entry has 16 middle-flow units
            entry = deeplab_models.Release(release.arch, labels="voc")
            seg = deeplab_models.load_release(entry, prefix, crop_size=release.canvas)
        else:
            seg = zoo.load(ZOO_NAME, checkpoint=prefix, crop_size=release.canvas)
        if label == "arguments":  # the Segmenter's canvas handling kept
            seg._network = arguments_network(seg)
        self.seg, self.image = seg, release.image
        compile_start = time.perf_counter()
        self.output()  # compiles
        self.compile_s = time.perf_counter() - compile_start
        self.setup_s = time.perf_counter() - start
        self.flops = None
        self.framework = "jaxseg (JAX/XLA)"
        how = "weights as arguments" if label == "arguments" else "the Segmenter as shipped"
        self.label = f"ours {label}: zoo.load(...).logits, {how}, compile {self.compile_s:.0f} s"

    def output(self) -> np.ndarray:
        return self.seg.logits(self.image)

    def run(self):
        self.output()


def tf_op_profile(side: TFDeepLab) -> list[tuple[str, int, float]]:
    """One traced call of the TF graph: `[(op type, calls, ms summed over threads)]`, largest
    first. TF names kernel events `node:OpType` (`_Mkl...`: its oneDNN kernels)."""
    import collections  # noqa: PLC0415
    import glob  # noqa: PLC0415

    import jax  # noqa: PLC0415 - its ProfileData reads TF's xplane files too
    import tensorflow as tf  # noqa: PLC0415

    folder = tempfile.mkdtemp(prefix="jaxseg_tf_profile_")
    tf.profiler.experimental.start(folder)
    side.run()
    tf.profiler.experimental.stop()
    path = glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True)[0]
    totals: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    for plane in jax.profiler.ProfileData.from_file(path).planes:
        for line in plane.lines:
            for event in line.events:
                node, sep, op_type = (part.strip() for part in event.name.partition(":"))
                kernel = node and " " not in node and "::" not in event.name
                if sep and op_type and kernel and not op_type.startswith("__inference"):
                    totals[op_type] += event.duration_ns
                    calls[op_type] += 1
    return [(op, calls[op], ns / 1e6) for op, ns in totals.most_common()]


def check_agreement(reference: np.ndarray, ours: np.ndarray, name: str) -> str:
    """One line comparing the logits; raises SystemExit if they are not the same computation."""
    if reference.shape != ours.shape:
        raise SystemExit(f"{name}: logits shape {ours.shape}, TF's {reference.shape}")
    error = float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))
    labels = float(np.mean(np.argmax(ours, -1) == np.argmax(reference, -1)))
    line = f"{name} vs TF: logits relative error {error:.2e}, labels equal on {labels:.4%}"
    if error > 1e-4:  # the conversion tests hold this network to 1e-4
        raise SystemExit(f"{line}: not the same computation")
    return line
