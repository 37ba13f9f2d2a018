"""Training-step speed of our DeepLab against what users would pick instead, in one run.

CPU (keras-hub, TensorFlow backend; needs `pip install -r benchmarks/requirements.txt`, best in
its own virtualenv, see RESULTS.md):

    KERAS_BACKEND=tensorflow python benchmarks/peers.py --peer keras-hub \
        --arch v3plus --resolution 256 --batch 4

GPU (torchvision `deeplabv3_resnet101`, AMP bf16 + channels_last + torch.compile, needs torch
with CUDA and jax[cuda]):

    python benchmarks/peers.py --peer torchvision --resolution 513 --batch 8

CPU against torchvision (`pip install torch torchvision`; eager float32, channels_last, as many
torch threads as cores), DeepLab v3 ResNet-50 at output stride 8 on both sides:

    python benchmarks/peers.py --peer torchvision --device cpu --task inference \
        --resolution 513 --batch 1 --ours default
    python benchmarks/peers.py --peer torchvision --device cpu --task train \
        --resolution 256 --batch 4 --ours default --layers reference cpu

TensorFlow's own ops on CPU (TF is in the project's requirements), the released Xception-65
DeepLab v3+ (`xception65_coco_voc_trainaug`) at its evaluation canvas 513x513, output stride 16,
batch 1, on a VOC-sized 375x500 image; `--ours zoo` is `jaxseg.zoo.load(...).logits`, `--ours
arguments` the same with the weights passed as arguments instead of the constants the
Segmenter compiles in on a CPU (see `_tf_peer.py`):

    python benchmarks/peers.py --peer tf-deeplab --ours zoo arguments

`--task inference` times one call of `jaxseg.Segmenter.logits` on a 513x513 image (the path
zoo models, run folders and `jaxseg.predict` use: on a CPU it runs `jaxseg.inference_forms`)
against `model(x)["out"]` under `torch.inference_mode()`; `--ours default` is
`DeepLabV3(backbone=..., output_stride=8)` with default arguments (multi-grid 1/2/4, ASPP
12/24/36), and `--ours plain` the same network jitted without the Segmenter's CPU forms and
compiler options (what the released-model path ran before).

Both sides get the same batch, resolution, number of classes (21), loss (softmax cross-entropy
over the full-resolution logits, label 255 ignored) and optimizer (SGD, momentum 0.9,
constant LR, no weight decay), random weights and random data. Timing alternates between the
sides in --rounds rounds of --iters steps (after --warmup untimed steps each), so a change in
the machine's load hits both; the reported time is the median over all timed steps.

Ours is built in one or more configurations (--ours):
- matched: as close to the peer's architecture as our constructor allows (see `PEER_NOTES`).
- paper: the published configuration (DeepLab v3+: output stride 16, rates 6/12/18,
  multi-grid 1/2/4, two 3x3 decoder convs).
each with the conv forms given by --layers (`jaxseg.nn.conv_layers`: 'reference', the
default, and/or 'cpu', the tap/region/phase convolutions of `jaxseg.ops.cpu`).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as common  # noqa: E402
import _step  # noqa: E402

HEADER = [
    "framework",
    "model",
    "res",
    "batch",
    "dtype",
    "step ms",
    "min-max ms",
    "img/s",
    "vs peer",
    "fwd GFLOP/img",
    "setup s",
]

# What differs between the peer's model and ours even in the "matched" configuration.
PEER_NOTES = {
    "keras-hub": (
        "keras-hub DeepLabV3Backbone on ResNetBackbone (v1 bottleneck 3/4/6/3, no atrous: ASPP "
        "on P5 at stride 32, rates 6/12/18, 256 ch, no dropout). v3plus: x8 bilinear to P2, "
        "concat 48-ch 1x1 projection, ONE 1x1 conv 256 + BN + ReLU, x4 bilinear of the 256-ch "
        "map, 1x1 classifier at full resolution. Ours matched: OS32, rates 6/12/18, multi-grid "
        "1/1/1, dropout 0, but our decoder keeps its two 3x3 convs 256 at stride 4 and "
        "classifies before the x4 upsampling (more conv FLOPs, fewer full-resolution bytes)."
    ),
    "torchvision": (
        "torchvision deeplabv3_resnet101 (GPU) / deeplabv3_<--backbone> (CPU): OS8 (layer3/4 "
        "dilated 2/4), ASPP 12/24/36, 256 ch, head 3x3 conv 256 + BN + ReLU + 1x1; ours: "
        "DeepLabV3 OS8 rates 12/24/36, multi-grid 1/1/1 (GPU) or the defaults 1/2/4 "
        "(--ours default: block4 at rates 4/8/16), ASPP straight to the 1x1 classifier."
    ),
}


# ---------------------------------------------------------------------------------------------
# ours


def ours_configs(args) -> list[tuple[str, argparse.Namespace]]:
    """argparse namespaces understood by `_step.build_model`, one per --ours entry."""
    configs = []
    for name, layers in itertools.product(args.ours, args.layers):
        ns = argparse.Namespace(
            num_classes=args.num_classes, model_arg=[], atrous_rates=None, layers=layers
        )
        if args.peer == "torchvision" and name in ("default", "plain", "arguments"):
            ns.model, ns.backbone, ns.output_stride = "DeepLabV3", args.backbone, 8
        elif args.peer == "torchvision":
            ns.model, ns.backbone, ns.output_stride = "DeepLabV3", "resnet101", 8
            ns.atrous_rates = [12, 24, 36]
            ns.model_arg = ["multi_grid=(1, 1, 1)"]
        else:
            ns.model = "DeepLabV3Plus" if args.arch == "v3plus" else "DeepLabV3"
            ns.backbone = args.backbone
            if name == "matched":
                ns.output_stride, ns.atrous_rates = 32, [6, 12, 18]
                ns.model_arg = ["multi_grid=(1, 1, 1)", "dropout_rate=0.0"]
            else:
                ns.output_stride = 16
                ns.model_arg = ["multi_grid=(1, 2, 4)"]
            if ns.model == "DeepLabV3Plus":  # ResNet: plain 3x3 ASPP and decoder convs
                ns.model_arg += ["separable=False"]
        if args.smoke:
            # A tiny ResNet (one block per stage, width 8) keeps CI fast on the same code path.
            from jaxseg.backbones import ResNet  # noqa: PLC0415

            ns.backbone = functools.partial(ResNet, stage_sizes=(1, 1, 1, 1), base_width=8)
            ns.model_arg = ["multi_grid=(1,)", "aspp_features=8"]
            if ns.model == "DeepLabV3Plus":
                ns.model_arg += ["decoder_features=8", "separable=False"]
        configs.append((name, ns))
    return configs


class Ours:
    def __init__(self, label: str, ns, args, data: dict, dtype: str):
        start = time.perf_counter()
        model = _step.build_model(ns, dtype)
        self.flops = _step.forward_flops_per_image(model, args.resolution)["total"]
        options = dict(args.compiler_options)
        self.step = _step.compile_train_step(model, data, compiler_options=options)
        self.step.run()  # first call: buffer placement, not steady state
        self.setup_s = time.perf_counter() - start
        self.label = f"ours {label}: {_step.model_label(ns)}"
        if options:
            self.label += f" compiler_options={options}"
        self.framework = "jaxseg (JAX/XLA)"

    def run(self):
        self.step.run()


class OursInference:
    """`Segmenter.logits` of one image (--ours default), or the same network jitted without
    the Segmenter's backend forms (--ours plain)."""

    def __init__(self, label: str, ns, args, data: dict, dtype: str):
        import jax  # noqa: PLC0415

        from jaxseg.segmenter import Segmenter  # noqa: PLC0415

        start = time.perf_counter()
        model = _step.build_model(ns, dtype)
        self.flops = _step.forward_flops_per_image(model, args.resolution)["total"]
        # Random weights from a small init (the parameter shapes do not depend on the size).
        variables = jax.jit(lambda x: model.init(jax.random.key(0), x))(data["image"][:1, :65, :65])
        self.images = np.clip(data["image"] * 40 + 128, 0, 255).astype(np.uint8)

        def normalize(x):
            return x / 127.5 - 1.0

        if label == "plain":
            network = jax.jit(lambda v, x: model.apply(v, normalize(x), train=False))
            self.call = lambda: np.asarray(network(variables, self.images.astype(np.float32)))
        else:
            names = [f"class_{i}" for i in range(args.num_classes)]
            size = args.resolution  # the canvas: the image itself, no bucket padding
            seg = Segmenter(
                model, variables, normalize=normalize, class_names=names, crop_size=size
            )
            if label == "arguments":  # the same program, the variables as an argument
                seg._network = _arguments_network(seg)
            self.call = lambda: seg.logits(self.images)
        compile_start = time.perf_counter()
        self.call()  # compiles
        self.compile_s = time.perf_counter() - compile_start
        self.setup_s = time.perf_counter() - start
        how = {"plain": "jit of model.apply", "arguments": "Segmenter.logits, weights as arguments"}
        how = how.get(label, "Segmenter.logits")
        self.label = f"ours {label} ({how}): {_step.model_label(ns)}"
        self.framework = "jaxseg (JAX/XLA)"

    def run(self):
        self.call()


def _arguments_network(seg):
    """`seg`'s network `images -> logits` jitted with `seg.variables` as an argument instead of
    the compile-time constants the Segmenter uses on a CPU: for measuring, not for users."""
    import jax  # noqa: PLC0415

    from jaxseg import inference  # noqa: PLC0415
    from jaxseg.inference_forms import compiler_options_for_backend  # noqa: PLC0415

    model, variables, normalize = seg.model, seg.variables, seg.normalize
    network = jax.jit(
        lambda v, x: inference.predict_logits(model.apply, v, normalize(x)),
        compiler_options=compiler_options_for_backend(),
    )
    return lambda images: network(variables, images)


# ---------------------------------------------------------------------------------------------
# keras-hub (CPU)


def keras_hub_available() -> str | None:
    """None if keras-hub imports, else why not."""
    try:
        import keras_hub  # noqa: F401, PLC0415
    except ImportError as e:
        return f"keras-hub not installed ({e}); pip install -r benchmarks/requirements.txt"
    return None


def keras_resnet50(resolution: int, smoke: bool):
    import keras_hub  # noqa: PLC0415

    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 64, 64, 64] if smoke else [64, 128, 256, 512],
        stackwise_num_blocks=[1, 1, 1, 1] if smoke else [3, 4, 6, 3],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="bottleneck_block",
        use_pre_activation=False,
        image_shape=(resolution, resolution, 3),
    )


def keras_graph_flops(model, resolution: int) -> float | None:
    """Forward FLOPs of one image from TensorFlow's graph profiler (2 x MACs of convs/matmuls)."""
    try:
        import tensorflow as tf  # noqa: PLC0415
        from tensorflow.python.framework.convert_to_constants import (  # noqa: PLC0415
            convert_variables_to_constants_v2,
        )

        spec = tf.TensorSpec((1, resolution, resolution, 3), tf.float32)
        concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
        graph = convert_variables_to_constants_v2(concrete).graph
        opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        opts["output"] = "none"
        info = tf.compat.v1.profiler.profile(graph, options=opts)
        return float(info.total_float_ops)
    except Exception as e:  # noqa: BLE001 - FLOPs are informative only
        print(f"(keras FLOP count unavailable: {e})")
        return None


class KerasHub:
    def __init__(self, args, data: dict):
        import keras  # noqa: PLC0415
        import keras_hub  # noqa: PLC0415

        start = time.perf_counter()
        shape = (args.resolution, args.resolution, 3)
        v3plus = args.arch == "v3plus"
        backbone = keras_hub.models.DeepLabV3Backbone(
            image_encoder=keras_resnet50(args.resolution, args.smoke),
            spatial_pyramid_pooling_key="P5",
            upsampling_size=8,
            dilation_rates=[6, 12, 18],
            low_level_feature_key="P2" if v3plus else None,
            projection_filters=48,
            image_shape=shape,
        )
        self.model = keras_hub.models.DeepLabV3ImageSegmenter(
            backbone=backbone, num_classes=args.num_classes
        )
        self.model.compile(
            optimizer=keras.optimizers.SGD(0.007, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255),
            metrics=[],
            # Keras' "auto" turns XLA off on CPU-only TensorFlow: that default is what users get.
            jit_compile=args.keras_jit_compile,
        )
        self.images, self.labels = data["image"], data["label"]
        self.flops = keras_graph_flops(self.model, args.resolution)
        self.model.train_on_batch(self.images, self.labels)  # traces the train function
        self.setup_s = time.perf_counter() - start
        xla = "XLA" if args.keras_jit_compile else "graph, no XLA"
        self.framework = f"keras-hub {keras_hub.__version__} (TF {_tf_version()}, {xla})"
        self.label = f"DeepLabV3ImageSegmenter {args.arch} ResNet-50"

    def run(self):
        # train_on_batch returns the loss as numpy: the step has finished when it returns.
        self.model.train_on_batch(self.images, self.labels)


def _tf_version() -> str:
    import tensorflow as tf  # noqa: PLC0415

    return tf.__version__


# ---------------------------------------------------------------------------------------------
# torchvision (GPU, or CPU with --device cpu)


def torchvision_available(device: str = "gpu") -> str | None:
    try:
        import torch  # noqa: PLC0415
        import torchvision  # noqa: F401, PLC0415
    except ImportError as e:
        return f"torch/torchvision not installed ({e})"
    if device == "gpu" and not torch.cuda.is_available():
        return "no CUDA GPU visible to torch"
    return None


class TorchvisionCPU:
    """deeplabv3_<backbone>, random weights, float32 eager, channels_last, one thread per core.

    `--task train`: SGD step as the GPU peer (no AMP); `--task inference`: `model(x)["out"]`
    under `torch.inference_mode()` in eval mode (what users run on a CPU).
    """

    def __init__(self, args, data: dict):
        import torch  # noqa: PLC0415
        import torchvision  # noqa: PLC0415

        start = time.perf_counter()
        torch.set_num_threads(os.cpu_count() or 1)
        self.torch, self.task = torch, args.task
        build = getattr(torchvision.models.segmentation, f"deeplabv3_{args.backbone}")
        model = build(weights=None, weights_backbone=None, num_classes=args.num_classes)
        model = model.to(memory_format=torch.channels_last)
        images = torch.from_numpy(data["image"]).permute(0, 3, 1, 2)
        self.images = images.contiguous(memory_format=torch.channels_last)
        if args.task == "train":
            model.train()
            self.optimizer = torch.optim.SGD(model.parameters(), lr=0.007, momentum=0.9)
            self.loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
            self.labels = torch.from_numpy(data["label"]).long()
        else:
            model.eval()
        self.model = model
        self.flops = None
        self.run()
        self.setup_s = time.perf_counter() - start
        self.framework = f"torchvision {torchvision.__version__} (torch {torch.__version__}, CPU)"
        threads = torch.get_num_threads()
        self.label = f"deeplabv3_{args.backbone} float32 channels_last eager, {threads} threads"

    def run(self):
        torch = self.torch
        if self.task == "inference":
            with torch.inference_mode():
                self.model(self.images)["out"]
            return
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(self.images)["out"], self.labels)
        loss.backward()
        self.optimizer.step()


class Torchvision:
    """deeplabv3_resnet101, random weights, AMP bf16, channels_last, torch.compile."""

    def __init__(self, args, data: dict):
        import torch  # noqa: PLC0415
        import torchvision  # noqa: PLC0415

        start = time.perf_counter()
        self.torch = torch
        model = torchvision.models.segmentation.deeplabv3_resnet101(
            weights=None, weights_backbone=None, num_classes=args.num_classes, aux_loss=False
        )
        model = model.cuda().to(memory_format=torch.channels_last).train()
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.007, momentum=0.9)
        self.loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
        self.model = torch.compile(model)
        images = torch.from_numpy(data["image"]).permute(0, 3, 1, 2)
        self.images = images.contiguous(memory_format=torch.channels_last).cuda()
        self.labels = torch.from_numpy(data["label"]).long().cuda()
        self.flops = None
        for _ in range(3):  # torch.compile traces and autotunes on the first calls
            self.run()
        self.setup_s = time.perf_counter() - start
        self.framework = f"torchvision {torchvision.__version__} (torch {torch.__version__})"
        self.label = "deeplabv3_resnet101 AMP bf16 channels_last compile"

    def run(self):
        torch = self.torch
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = self.model(self.images)["out"]
        loss = self.loss_fn(logits.float(), self.labels)
        loss.backward()
        self.optimizer.step()
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--peer", default="keras-hub", choices=["keras-hub", "torchvision", "tf-deeplab"]
    )
    p.add_argument("--device", default="gpu", choices=["gpu", "cpu"], help="torchvision peer")
    p.add_argument(
        "--task",
        default="train",
        choices=["train", "inference"],
        help="inference: --peer torchvision --device cpu, batch 1 through jaxseg.Segmenter",
    )
    p.add_argument(
        "--compiler-option",
        dest="compiler_options",
        action="append",
        default=[],
        type=lambda text: tuple(text.split("=", 1)),
        metavar="NAME=VALUE",
        help="ours, --task train: an XLA compile option of the step, e.g. "
        "xla_cpu_experimental_ynn_fusion_type= (repeatable)",
    )
    p.add_argument("--arch", default="v3plus", choices=["v3plus", "v3"], help="keras-hub peer")
    p.add_argument("--backbone", default="resnet50", help="ours, keras-hub peer")
    p.add_argument(
        "--ours",
        nargs="+",
        default=["matched", "paper"],
        choices=["matched", "paper", "default", "plain", "arguments", "zoo"],
        help="keras-hub: matched/paper; torchvision on CPU: default (and plain or arguments, "
        "--task inference); tf-deeplab: zoo and/or arguments; see the module docstring",
    )
    p.add_argument(
        "--layers",
        nargs="+",
        default=["reference"],
        choices=["reference", "space_to_batch", "cpu"],
        help="ours: conv forms to build with (jaxseg.nn.conv_layers), one run each",
    )
    p.add_argument("--resolution", type=int, default=None, help="256; tf-deeplab: 513")
    p.add_argument(
        "--tf-threads",
        type=int,
        nargs=2,
        default=None,
        metavar=("INTRA", "INTER"),
        help="tf-deeplab: TensorFlow's intra-op and inter-op thread counts (default: TF's)",
    )
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--num-classes", type=int, default=21)
    p.add_argument("--dtype", default=None, help="ours; default float32 (CPU), bfloat16 (GPU)")
    p.add_argument("--keras-jit-compile", action="store_true", help="keras-hub with XLA")
    p.add_argument(
        "--profile-tf",
        action="store_true",
        help="tf-deeplab: after timing, TF's kernel time by op type in one traced call "
        "(ours: benchmarks/cpu_options.py --model x65 --profile)",
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="tiny models, 32x32, batch 1 (CI)")
    args = p.parse_args(argv)
    if args.peer == "tf-deeplab":
        args.task, args.batch, args.num_classes = "inference", 1, 21
        args.resolution = args.resolution or 513
        args.ours = [name for name in args.ours if name in ("zoo", "arguments")] or ["zoo"]
    args.resolution = args.resolution or 256
    if args.smoke and args.peer == "tf-deeplab":
        args.resolution, args.rounds, args.iters, args.warmup = 33, 1, 1, 0
    elif args.smoke:
        args.resolution, args.batch, args.rounds, args.iters, args.warmup = 32, 1, 1, 1, 0
        args.ours, args.layers = ["matched"], ["cpu"]
    if args.dtype is None:
        args.dtype = (
            "bfloat16" if args.peer == "torchvision" and args.device == "gpu" else "float32"
        )
    pair = (args.peer, args.device)
    if args.task == "inference" and pair != ("torchvision", "cpu") and args.peer != "tf-deeplab":
        p.error("--task inference compares against --peer torchvision --device cpu")
    return args


def tf_deeplab_sides(args) -> list:
    """[TF side, ours...] of --peer tf-deeplab, their logits checked against each other."""
    import _tf_peer  # noqa: PLC0415 - imports TensorFlow
    import tensorflow as tf  # noqa: PLC0415

    if args.tf_threads:  # before TF's first op creates its thread pools
        tf.config.threading.set_intra_op_parallelism_threads(args.tf_threads[0])
        tf.config.threading.set_inter_op_parallelism_threads(args.tf_threads[1])
    print(f"peer: {_tf_peer.NOTE}")
    release = _tf_peer.XceptionRelease(args)
    sides = [_tf_peer.TFDeepLab(args, release)]
    prefix = release.write_checkpoint()
    reference = sides[0].output()
    for name in args.ours:
        sides.append(_tf_peer.OursZoo(name, args, release, prefix, _arguments_network))
        print(_tf_peer.check_agreement(reference, sides[-1].output(), name), flush=True)
    image = release.image.shape[:2]
    print(f"image {image[0]}x{image[1]} on the {args.resolution}x{args.resolution} canvas")
    return sides


def main(argv=None):
    args = parse_args(argv)
    packages = ["tensorflow", "tensorflow-cpu", "keras", "keras-hub", "torch", "torchvision"]
    common.print_context(packages)
    missing = None
    if args.peer == "tf-deeplab":
        sides = tf_deeplab_sides(args)
    else:
        sides = other_sides(args)
        missing = sides.pop()
    time_and_report(args, sides, missing)
    if args.profile_tf and args.peer == "tf-deeplab":
        import _tf_peer  # noqa: PLC0415

        rows = _tf_peer.tf_op_profile(sides[0])
        total = sum(ms for *_, ms in rows) or 1.0
        print(f"\nTF kernel time of one call by op type (summed over threads): {total:.0f} ms")
        common.print_table(
            ["op type", "calls", "ms", "share"],
            [[op, n, f"{ms:.1f}", f"{100 * ms / total:.1f}%"] for op, n, ms in rows],
        )


def other_sides(args) -> list:
    """[peer (if installed)..., ours..., why the peer is missing or None]."""
    print(f"peer: {PEER_NOTES[args.peer]}")
    data = _step.fake_batch(args.batch, args.resolution, args.num_classes)
    data = {"image": data["image"], "label": data["label"]}

    if args.peer == "keras-hub":
        missing, peer_cls = keras_hub_available(), KerasHub
    else:
        missing = torchvision_available(args.device)
        peer_cls = TorchvisionCPU if args.device == "cpu" else Torchvision
    sides = []
    if missing:
        print(f"peer skipped: {missing}")
    else:
        sides.append(peer_cls(args, data))
    ours_cls = OursInference if args.task == "inference" else Ours
    for name, ns in ours_configs(args):
        sides.append(ours_cls(name, ns, args, data, args.dtype))
    return [*sides, missing]


def time_and_report(args, sides: list, missing: str | None) -> None:
    """Time the sides alternately (--rounds of --iters calls) and print the table."""
    times: list[list[float]] = [[] for _ in sides]
    for r in range(args.rounds):
        for i, side in enumerate(sides):
            times[i] += common.time_call(side.run, args.warmup, args.iters)
        print(f"round {r + 1}/{args.rounds} done, load {common.load_average()}", flush=True)

    peer_ms = statistics.median(times[0]) * 1e3 if not missing else None
    rows = []
    for side, t in zip(sides, times, strict=True):
        ms = statistics.median(t) * 1e3
        dtype = "float32 (AMP bf16)" if isinstance(side, Torchvision) else args.dtype
        if isinstance(side, KerasHub | TorchvisionCPU):
            dtype = "float32"
        rows.append(
            [
                side.framework,
                side.label,
                args.resolution,
                args.batch,
                dtype,
                f"{ms:.1f}",
                common.spread_ms(t),
                f"{args.batch / ms * 1e3:.2f}",
                "n/a" if peer_ms is None else f"{peer_ms / ms:.2f}x",
                common.fmt(None if side.flops is None else side.flops / 1e9),
                f"{side.setup_s:.0f}",
            ]
        )
    print()
    common.print_table(HEADER, rows)
    print(f"task: {args.task} (step ms: one training step, or one inference call)")
    print("vs peer: peer step time / this step time (> 1 means faster than the peer)")
    print(f"load average at end (1/5/15 min): {common.load_average()}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
