"""Checks and backbone resolution shared by the segmentation models."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.backbones import BACKBONES

BackboneLike = str | Callable[..., nn.Module]


def check_images(images: jax.Array, min_size: int | tuple[int, int], who: str) -> None:
    """Raises a ValueError naming `who` unless `images` is `[B, H, W, 3]` with H, W >= min_size."""
    if jnp.ndim(images) != 4:
        raise ValueError(f"{who}: images must be [B, H, W, 3], got shape {jnp.shape(images)}")
    if images.shape[-1] != 3:
        raise ValueError(
            f"{who}: images must have 3 (RGB) channels, got {images.shape[-1]} "
            f"(shape {images.shape}); the first conv and any imported weights expect 3"
        )
    min_h, min_w = (min_size, min_size) if isinstance(min_size, int) else min_size
    height, width = images.shape[1:3]
    if height < min_h or width < min_w:
        raise ValueError(
            f"{who}: input {height}x{width} is smaller than the minimum {min_h}x{min_w}"
        )


def resolve_backbone(backbone: BackboneLike) -> Callable[..., nn.Module]:
    """A backbone factory from a name ('resnet101', ...) or a class / functools.partial."""
    if isinstance(backbone, str):
        key = backbone.lower().replace("-", "").replace("_", "")
        if key not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose from {sorted(BACKBONES)}")
        return BACKBONES[key]
    if not callable(backbone):
        raise ValueError(f"backbone must be a name or a module factory, got {backbone!r}")
    return backbone


def build_backbone(
    backbone: BackboneLike, multi_grid: Sequence[int] | None, **kwargs: Any
) -> nn.Module:
    """Instantiates `backbone` as the submodule named "backbone".

    `multi_grid` is passed when not None (None: the backbone's own, all ones; MobileNetV2 has
    none and rejects a value); the models set the paper's value as their default.
    """
    factory = resolve_backbone(backbone)
    if multi_grid is not None:
        kwargs["multi_grid"] = tuple(multi_grid)
    return factory(name="backbone", **kwargs)


def scaled_rates(rates: tuple[int, ...], reference_stride: int, output_stride: int):
    """Atrous rates given at `reference_stride`, rescaled so their field of view in pixels stays."""
    return tuple(max(1, r * reference_stride // output_stride) for r in rates)


def to_float32_logits(logits: jax.Array) -> jax.Array:
    """Logits leave every model in float32, whatever the compute dtype (loss precision)."""
    return jnp.asarray(logits, jnp.float32)
