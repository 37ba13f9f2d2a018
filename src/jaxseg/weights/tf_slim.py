"""TF-slim checkpoints of the official DeepLab release -> jaxseg DeepLab v3 / v3+ variables.

The DeepLab authors released their networks as TF-slim checkpoints (`model.ckpt.index` +
`model.ckpt.data-*`). `read_checkpoint` reads one without TensorFlow
(`jaxseg.weights.tf_checkpoint`); `DeepLabArch` describes one released architecture and builds
the jaxseg model that computes the same function; `convert_checkpoint` maps the checkpoint onto
that model through the `jaxseg.weights.convert` engine: every checkpoint variable is used or
reported (training-only variables are ignored by rule, see `is_training_only`), every model
variable is filled or reported, and shapes are checked with the variable's name.

Name mapping (official scope -> jaxseg path; `docs/model_zoo.md` lists the facts):

    <xception_N>/entry_flow/conv1_1, conv1_2         -> backbone/entry_conv1, entry_conv2
    <xception_N>/entry_flow/blockK/unit_1            -> backbone/entry_blockK
    <xception_N>/middle_flow/block1/unit_K           -> backbone/middle_blockK
    <xception_N>/exit_flow/blockK/unit_1             -> backbone/exit_blockK
      xception_module/separable_convJ_depthwise,
      _pointwise, shortcut                           -> separable_convJ/depthwise, ..., shortcut
    MobilenetV2/Conv, expanded_conv, expanded_conv_K -> backbone/stem, block1, blockK+1
    resnet_v1_N/conv1_1..3                           -> backbone/conv1_1..3
    resnet_v1_N/blockS/unit_B/bottleneck_v1          -> backbone/stageS_blockB
    image_pooling, aspp0, asppK                      -> aspp/image_pooling, conv1x1, atrousK
    concat_projection                                -> aspp/project (input rows reordered)
    decoder/feature_projection0                      -> decoder/low_level_project
    decoder/decoder_conv0, decoder_conv1             -> decoder/conv1, conv2
    logits/semantic                                  -> classifier

The official ASPP concatenates [image pooling, aspp0, aspp1..N]; jaxseg's ASPP concatenates
[1x1, atrous1..N, image pooling], so the converter moves the first 256 input rows of
`concat_projection/weights` to the end (an exact permutation of the same function).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import numpy as np

from jaxseg.backbones import BACKBONES
from jaxseg.backbones.mobilenet import MOBILENET_V2_STAGES, make_divisible
from jaxseg.models._common import scaled_rates
from jaxseg.models.deeplab_v3 import DeepLabV3
from jaxseg.models.deeplab_v3plus import DeepLabV3Plus
from jaxseg.weights import convert as engine
from jaxseg.weights.convert import Entry, ImportedWeights, Spec
from jaxseg.weights.tf_checkpoint import read_tf_checkpoint

# Optimiser slots, moving-average shadows and counters: present in training checkpoints,
# never part of the network.
_TRAINING_ONLY = re.compile(
    r"(^|/)(global_step|beta1_power|beta2_power)$"
    r"|/(Momentum|Adam|Adam_1|RMSProp|RMSProp_1|ExponentialMovingAverage)(_\d+)?$"
)
# ImageNet classifier heads of the backbone checkpoints (1001 classes): not used for segmentation.
_IMAGENET_HEAD = re.compile(r"^[^/]+/(logits|AuxLogits|Logits)/")

# DeepLab's `model_variant`s as jaxseg backbones (names of `jaxseg.backbones.BACKBONES`) with
# the settings that make them the official graph: ResNet "beta" is the 3-conv stem with the
# stride at the end of each block.
OFFICIAL_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "xception_41": ("xception41", {}),
    "xception_65": ("xception65", {}),
    "xception_71": ("xception71", {}),
    "mobilenet_v2": ("mobilenetv2", {}),
    "resnet_v1_50_beta": ("resnet50", {"stem": "beta", "stride_at_end": True}),
    "resnet_v1_101_beta": ("resnet101", {"stem": "beta", "stride_at_end": True}),
}
BACKBONE_SCOPES = {
    "xception_41": "xception_41",
    "xception_65": "xception_65",
    "xception_71": "xception_71",
    "mobilenet_v2": "MobilenetV2",
    "resnet_v1_50_beta": "resnet_v1_50",
    "resnet_v1_101_beta": "resnet_v1_101",
}


def is_training_only(key: str) -> bool:
    """True for checkpoint variables that only training uses (optimiser slots, EMA, steps)."""
    return bool(_TRAINING_ONLY.search(key))


def checkpoint_prefix(path: str | Path) -> str:
    """The TF checkpoint prefix (`.../model.ckpt`) for a prefix or a folder holding one.

    Raises:
      FileNotFoundError / ValueError naming `path` when there is no checkpoint or several.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        found = sorted(path.rglob("*.index"))
        if not found:
            raise FileNotFoundError(
                f"{path}: no TF checkpoint (*.index + *.data-*) in this folder; pass the "
                "folder extracted from a DeepLab release archive or the checkpoint prefix"
            )
        if len(found) > 1:
            names = ", ".join(str(f.with_suffix("")) for f in found)
            raise ValueError(f"{path}: holds several checkpoints ({names}); pass one prefix")
        return str(found[0].with_suffix(""))
    if path.name.endswith(".index"):
        path = path.with_name(path.name[: -len(".index")])
    elif ".data-" in path.name:
        path = path.with_name(path.name.split(".data-")[0])
    if not Path(f"{path}.index").exists():
        raise FileNotFoundError(
            f"{path}: no TF checkpoint here ({path}.index does not exist); pass the prefix "
            "such as .../model.ckpt, or the folder that holds it"
        )
    return str(path)


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """All variables of a TF checkpoint as `{name: array}`, read without TensorFlow.

    Args:
      path: checkpoint prefix or a folder holding one checkpoint.

    Raises:
      FileNotFoundError naming the path when there is no checkpoint (or a data file is missing).
      ValueError (`tf_checkpoint.CheckpointFormatError`) naming the file when it cannot be read:
        corrupt (a CRC32C mismatch names the variable), truncated, or not a TF checkpoint.
    """
    return read_tf_checkpoint(checkpoint_prefix(path))


@dataclasses.dataclass(frozen=True)
class DeepLabArch:
    """One released DeepLab architecture, as the official code's flags define it.

    Attributes:
      backbone: an official `model_variant`: a key of `BACKBONE_SCOPES`.
      num_classes: outputs of `logits/semantic`; None for an ImageNet backbone checkpoint
        (backbone variables only).
      atrous_rates: ASPP rates at output stride 16 (doubled at 8); () for the MobileNetV2
        models, whose head is image pooling + a 1x1 conv only.
      decoder: the v3+ decoder (`decoder_output_stride=4`).
      separable: depthwise-separable ASPP and decoder convs (`aspp_with_separable_conv`,
        `decoder_use_separable_conv`; the Xception models).
      depth_multiplier: MobileNetV2 width (1.0 in the released models).
      middle_flow_units: Xception middle-flow depth override (tests); None = the variant's.
      stage_sizes: ResNet units per block override (tests); None = the variant's.
      backbone_epsilon: BN epsilon of the backbone (1e-3 Xception and MobileNetV2, 1e-5 ResNet).
      head_epsilon: BN epsilon of ASPP and decoder (1e-5).
    """

    backbone: str
    num_classes: int | None = 21
    atrous_rates: tuple[int, ...] = (6, 12, 18)
    decoder: bool = True
    separable: bool = True
    depth_multiplier: float = 1.0
    middle_flow_units: int | None = None
    stage_sizes: tuple[int, ...] | None = None
    backbone_epsilon: float = 1e-3
    head_epsilon: float = 1e-5

    def __post_init__(self):
        if self.backbone not in BACKBONE_SCOPES:
            raise ValueError(
                f"unknown DeepLab model_variant {self.backbone!r}; known: {sorted(BACKBONE_SCOPES)}"
            )

        if self.backbone == "mobilenet_v2":
            self._check_expansion_rounding()

    def _check_expansion_rounding(self) -> None:
        """The official expansion width is `make_divisible(6 * inputs, 8)`; jaxseg's MobileNetV2
        uses `6 * inputs`, equal whenever the inputs are a multiple of 4 (depth 1.0 and 0.5)."""

        divisor = 8 if self.depth_multiplier == 1.0 else 1
        widths = [make_divisible(c * self.depth_multiplier, divisor) for _, c, _, _ in
                  MOBILENET_V2_STAGES[:-1]]  # fmt: skip
        odd = [w for w in widths if (6 * w) % 8]
        if odd:
            raise ValueError(
                f"mobilenet_v2 depth_multiplier={self.depth_multiplier}: expansion widths of "
                f"{odd} inputs would be rounded by the official code, which jaxseg's MobileNetV2 "
                "does not do; supported: multipliers giving widths divisible by 4 (1.0, 0.5)"
            )

    @property
    def scope(self) -> str:
        return BACKBONE_SCOPES[self.backbone]

    def _norm(self, epsilon: float):
        # decay 0.9997 as the official training; irrelevant in inference.
        return functools.partial(nn.BatchNorm, momentum=0.9997, epsilon=epsilon)

    def backbone_factory(self) -> Any:
        """The backbone class with this architecture's settings bound (no `output_stride`)."""
        name, kwargs = OFFICIAL_VARIANTS[self.backbone]
        kwargs = dict(kwargs)
        if name.startswith("xception") and self.middle_flow_units is not None:
            kwargs["middle_flow_units"] = self.middle_flow_units
        elif name == "mobilenetv2":
            kwargs["width_multiplier"] = self.depth_multiplier
            # mobilenet_v2 in DeepLab: channels rounded to multiples of 8 only at width 1.0.
            kwargs["channel_divisor"] = 8 if self.depth_multiplier == 1.0 else 1
        elif name.startswith("resnet") and self.stage_sizes is not None:
            kwargs["stage_sizes"] = tuple(self.stage_sizes)
        return functools.partial(BACKBONES[name], norm=self._norm(self.backbone_epsilon), **kwargs)

    def model(self, output_stride: int = 16) -> nn.Module:
        """The jaxseg module computing the official graph at `output_stride` (8, 16 or 32).

        With `num_classes=None` this is the backbone alone (returning its feature dict).
        """
        factory = self.backbone_factory()
        if self.num_classes is None:
            return factory(output_stride=output_stride)

        rates = scaled_rates(self.atrous_rates, 16, output_stride) if self.atrous_rates else ()
        common = dict(
            num_classes=self.num_classes,
            backbone=factory,
            output_stride=output_stride,
            atrous_rates=rates,
            multi_grid=(1, 1, 1),  # the released models leave multi_grid unset
            align_corners=True,  # every resize of the official graph
            norm=self._norm(self.head_epsilon),
            backbone_norm=self._norm(self.backbone_epsilon),
        )
        if self.backbone == "mobilenet_v2":
            common["multi_grid"] = None  # MobileNetV2 has none
        if self.decoder:
            return DeepLabV3Plus(separable=self.separable, **common)
        return DeepLabV3(separable_aspp=self.separable, **common)

    def key(self) -> str:
        """A unique name of this configuration (shape-cache key and messages)."""
        return f"DeepLab TF-slim {self!r}"


# --- the entries ------------------------------------------------------------------------------


def _bn_keys(scope: str) -> dict[str, str]:
    return {
        "gamma": f"{scope}/BatchNorm/gamma",
        "beta": f"{scope}/BatchNorm/beta",
        "mean": f"{scope}/BatchNorm/moving_mean",
        "var": f"{scope}/BatchNorm/moving_variance",
    }


def _bn(arrays: Mapping[str, np.ndarray], epsilon: float) -> dict[str, dict]:
    return engine.batch_norm(
        arrays["gamma"], arrays["beta"], arrays["mean"], arrays["var"], epsilon, epsilon
    )


def _conv_bn_convert(arrays, epsilon: float, depthwise: bool, input_order=None):
    kernel = np.asarray(arrays["kernel"], np.float32)
    if depthwise:  # TF [k, k, C, 1] (depth multiplier 1) -> grouped conv [k, k, 1, C]
        kernel = kernel.reshape(*kernel.shape[:2], 1, -1)
    if input_order is not None:
        kernel = kernel[:, :, input_order(kernel.shape[2]), :]
    bn = _bn(arrays, epsilon)
    return {
        "params": {"conv": {"kernel": kernel}, "bn": bn["params"]},
        "batch_stats": {"bn": bn["batch_stats"]},
    }


def _conv_bn(scope: str, target: tuple[str, ...], epsilon: float, depthwise=False, **kw) -> Entry:
    kernel = f"{scope}/depthwise_weights" if depthwise else f"{scope}/weights"
    return Entry(
        name=scope,
        keys={"kernel": kernel, **_bn_keys(scope)},
        target=target,
        convert=functools.partial(_conv_bn_convert, epsilon=epsilon, depthwise=depthwise, **kw),
    )


def _separable(scope: str, target: tuple[str, ...], epsilon: float) -> list[Entry]:
    return [
        _conv_bn(f"{scope}_depthwise", (*target, "depthwise"), epsilon, depthwise=True),
        _conv_bn(f"{scope}_pointwise", (*target, "pointwise"), epsilon),
    ]


def _xception_entries(arch: DeepLabArch, prefix: tuple[str, ...]) -> list[Entry]:
    module = arch.backbone_factory()()
    eps, scope = arch.backbone_epsilon, arch.scope
    entries = [
        _conv_bn(f"{scope}/entry_flow/conv1_1", (*prefix, "entry_conv1"), eps),
        _conv_bn(f"{scope}/entry_flow/conv1_2", (*prefix, "entry_conv2"), eps),
    ]
    blocks = [
        *[(f"entry_flow/block{i + 1}/unit_1", f"entry_block{i + 1}", True)
          for i in range(len(module.entry_flow))],
        *[(f"middle_flow/block1/unit_{i + 1}", f"middle_block{i + 1}", False)
          for i in range(module.middle_flow_units)],
        ("exit_flow/block1/unit_1", "exit_block1", True),
        ("exit_flow/block2/unit_1", "exit_block2", False),
    ]  # fmt: skip
    for official, ours, has_shortcut in blocks:
        base = f"{scope}/{official}/xception_module"
        for j in (1, 2, 3):
            entries += _separable(
                f"{base}/separable_conv{j}", (*prefix, ours, f"separable_conv{j}"), eps
            )
        if has_shortcut:
            entries.append(_conv_bn(f"{base}/shortcut", (*prefix, ours, "shortcut"), eps))
    return entries


def _mobilenet_entries(arch: DeepLabArch, prefix: tuple[str, ...]) -> list[Entry]:

    eps, scope = arch.backbone_epsilon, arch.scope
    entries = [_conv_bn(f"{scope}/Conv", (*prefix, "stem"), eps)]
    expansions = [t for t, _, n, _ in MOBILENET_V2_STAGES for _ in range(n)]
    for i, expansion in enumerate(expansions):
        official = f"{scope}/expanded_conv" + (f"_{i}" if i else "")
        target = (*prefix, f"block{i + 1}")
        if expansion != 1:
            entries.append(_conv_bn(f"{official}/expand", (*target, "expand"), eps))
        entries.append(_conv_bn(f"{official}/depthwise", (*target, "depthwise"), eps, True))
        entries.append(_conv_bn(f"{official}/project", (*target, "project"), eps))
    return entries


def _resnet_entries(arch: DeepLabArch, prefix: tuple[str, ...]) -> list[Entry]:
    module = arch.backbone_factory()()
    eps, scope = arch.backbone_epsilon, arch.scope
    entries = [_conv_bn(f"{scope}/conv1_{i}", (*prefix, f"conv1_{i}"), eps) for i in (1, 2, 3)]
    for s, units in enumerate(module.stage_sizes):
        for b in range(units):
            official = f"{scope}/block{s + 1}/unit_{b + 1}/bottleneck_v1"
            target = (*prefix, f"stage{s + 1}_block{b + 1}")
            entries += [
                _conv_bn(f"{official}/conv{i}", (*target, f"conv{i}"), eps) for i in (1, 2, 3)
            ]
            if b == 0:  # the channel-changing unit projects; strided last units subsample
                entries.append(_conv_bn(f"{official}/shortcut", (*target, "shortcut"), eps))
    return entries


def _image_pooling_last(features: int):
    """Input-row order of `concat_projection`: official [pool, 1x1, atrous...] -> ours."""

    def order(channels: int) -> np.ndarray:
        rows = np.arange(channels)
        return np.concatenate([rows[features:], rows[:features]])

    return order


def _head_entries(arch: DeepLabArch) -> list[Entry]:
    eps, depth = arch.head_epsilon, 256
    entries = [
        _conv_bn("image_pooling", ("aspp", "image_pooling"), eps),
        _conv_bn("aspp0", ("aspp", "conv1x1"), eps),
    ]
    for i in range(1, len(arch.atrous_rates) + 1):
        if arch.separable:
            entries += _separable(f"aspp{i}", ("aspp", f"atrous{i}"), eps)
        else:
            entries.append(_conv_bn(f"aspp{i}", ("aspp", f"atrous{i}"), eps))
    entries.append(
        _conv_bn(
            "concat_projection", ("aspp", "project"), eps, input_order=_image_pooling_last(depth)
        )
    )
    if arch.decoder:
        entries.append(
            _conv_bn("decoder/feature_projection0", ("decoder", "low_level_project"), eps)
        )
        for i in (0, 1):
            if arch.separable:
                entries += _separable(f"decoder/decoder_conv{i}", ("decoder", f"conv{i + 1}"), eps)
            else:  # slim.repeat(2, conv2d, scope='decoder_conv0') -> decoder_conv0_1, _2
                entries.append(
                    _conv_bn(
                        f"decoder/decoder_conv0/decoder_conv0_{i + 1}",
                        ("decoder", f"conv{i + 1}"),
                        eps,
                    )
                )
    entries.append(
        Entry(
            name="logits/semantic",
            keys={"kernel": "logits/semantic/weights", "bias": "logits/semantic/biases"},
            target=("classifier",),
            convert=lambda a: {"params": {"kernel": np.asarray(a["kernel"], np.float32),
                                          "bias": np.asarray(a["bias"], np.float32)}},
        )
    )  # fmt: skip
    return entries


def spec(arch: DeepLabArch, output_stride: int = 16) -> Spec:
    """The conversion spec of `arch` (whole model, or the backbone when `num_classes` is None)."""
    whole = arch.num_classes is not None
    prefix = ("backbone",) if whole else ()
    if arch.backbone.startswith("xception"):
        entries = _xception_entries(arch, prefix)
    elif arch.backbone == "mobilenet_v2":
        entries = _mobilenet_entries(arch, prefix)
    else:
        entries = _resnet_entries(arch, prefix)
    if whole:
        entries += _head_entries(arch)
        ignorable = is_training_only
    else:

        def ignorable(key: str) -> bool:
            return is_training_only(key) or bool(_IMAGENET_HEAD.match(key))

    return Spec(
        name=f"{arch.key()} OS{output_stride}",
        entries=tuple(entries),
        reference=lambda: arch.model(output_stride),
        is_ignorable=ignorable,
        input_mode="tf",
    )


def convert_arrays(
    arrays: Mapping[str, np.ndarray], arch: DeepLabArch, what: str, output_stride: int = 16
) -> ImportedWeights:
    """Maps checkpoint arrays onto `arch.model(output_stride)`; `what` names the source.

    Raises:
      ValueError naming `what`: a foreign checkpoint (no layer found), missing or unexpected
      variables (training-only ones excepted), a shape mismatch, or a model variable that no
      checkpoint variable fills.
    """
    the_spec = spec(arch, output_stride)
    imported = engine.convert(arrays, the_spec, what, strict=True)
    expected = engine._SHAPES_CACHE[the_spec.name]
    filled = {col: set(engine._flatten(tree)) for col, tree in imported.variables.items()}
    unfilled = [
        f"{col}/{'/'.join(path)}"
        for col, shapes in expected.items()
        for path in shapes
        if path not in filled.get(col, set())
    ]
    if unfilled:
        raise ValueError(
            f"{what}: the model's variables {unfilled[:10]}{' ...' if len(unfilled) > 10 else ''}"
            f" are not in the checkpoint (is it a {arch.backbone} DeepLab checkpoint?)"
        )
    return imported


def convert_checkpoint(path: str | Path, arch: DeepLabArch, output_stride: int = 16):
    """Reads the checkpoint at `path` (prefix or folder) and converts it, see `convert_arrays`."""
    prefix = checkpoint_prefix(path)
    return convert_arrays(read_checkpoint(prefix), arch, prefix, output_stride)
