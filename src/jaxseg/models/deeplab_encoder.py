"""The encoder DeepLab v2, v3 and v3+ share: an atrous backbone, then an atrous pyramid.

Called from inside a model's `nn.compact` `__call__`, so the submodules they create belong to
that model and keep its parameter names (`backbone`, `aspp`, `classifier`).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from jaxseg.backbones import check_output_stride
from jaxseg.models._common import build_backbone, check_images
from jaxseg.nn import ASPP


def check_inputs(model: nn.Module, images: jax.Array, output_strides: tuple[int, ...]) -> None:
    """Raises a ValueError naming the model unless `images` is `[B, H, W, 3]` with H, W >=
    `model.min_input_size` and `model.output_stride` is one of `output_strides`."""
    who = type(model).__name__
    check_images(images, model.min_input_size, who)
    check_output_stride(model.output_stride, output_strides, who)


def backbone_module(model: nn.Module, multi_grid: Sequence[int] | None = None) -> nn.Module:
    """The model's backbone as its submodule "backbone"; called on `[B, H, W, 3]` images it
    returns the backbone's feature dict (`out`, `stride4`, ...).

    Reads the model's `backbone`, `output_stride`, `norm`, `backbone_norm` (if it has one;
    None: `norm`), `conv`, `dtype` and `param_dtype`.
    """
    backbone_norm = getattr(model, "backbone_norm", None)
    return build_backbone(
        model.backbone,
        multi_grid=multi_grid,
        output_stride=model.output_stride,
        norm=model.norm if backbone_norm is None else backbone_norm,
        conv=model.conv,
        dtype=model.dtype,
        param_dtype=model.param_dtype,
    )


def aspp(
    model: nn.Module, x: jax.Array, rates: Sequence[int], separable: bool, train: bool
) -> jax.Array:
    """DeepLab v3's ASPP (submodule "aspp") with the model's `aspp_features`, `dropout_rate`,
    `norm`, `conv` and dtypes: `[B, h, w, C]` -> `[B, h, w, aspp_features]`."""
    return ASPP(
        model.aspp_features,
        atrous_rates=tuple(rates),
        separable=separable,
        dropout_rate=model.dropout_rate,
        norm=model.norm,
        conv=model.conv,
        dtype=model.dtype,
        param_dtype=model.param_dtype,
        name="aspp",
    )(x, train)


def classify(model: nn.Module, x: jax.Array) -> jax.Array:
    """The 1x1 `classifier` conv: `[B, h, w, C]` -> `[B, h, w, num_classes]`."""
    return model.conv(
        model.num_classes,
        kernel_size=1,
        dtype=model.dtype,
        param_dtype=model.param_dtype,
        name="classifier",
    )(x)
