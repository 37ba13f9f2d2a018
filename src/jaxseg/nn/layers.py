"""Conv factory bundles: which implementation of each convolution a model is built with.

Models take their convolutions as factories (`conv`: a `Conv2D`-like module factory; FCN also
`conv_transpose`: a `jaxseg.ops.conv_transpose2d`-like function). Without them they use the
reference ops, the same on every backend. `conv_layers(form)` names the alternatives:

- "reference": `jaxseg.ops.atrous_conv2d` (one XLA convolution) and `conv_transpose2d`.
- "space_to_batch": dilated convs as TensorFlow's `atrous_conv2d` computes them (fold the
  pixel phases into the batch), for backends where XLA's dilated convs are slow.
- "cpu": the forms of `jaxseg.ops.cpu` (tap, region and phase convolutions), faster on XLA's
  CPU backend (benchmarks/RESULTS.md); same results.

An experiment binds the form it wants once, e.g.
`layers = conv_layers(config.model.layers)` then `DeepLabV3Plus(..., conv=layers.conv)`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax

from jaxseg.nn.conv import Conv2D, ConvFactory
from jaxseg.ops import atrous_conv2d, conv_transpose2d
from jaxseg.ops import cpu as cpu_ops

ConvTransposeFn = Callable[..., jax.Array]


class ConvLayers(NamedTuple):
    """The factories a model takes: `conv` (module factory with `Conv2D`'s fields) and
    `conv_transpose` (function with `jaxseg.ops.conv_transpose2d`'s signature)."""

    conv: ConvFactory
    conv_transpose: ConvTransposeFn


LAYER_FORMS: dict[str, ConvLayers] = {
    "reference": ConvLayers(Conv2D, conv_transpose2d),
    "space_to_batch": ConvLayers(
        functools.partial(Conv2D, op=functools.partial(atrous_conv2d, impl="space_to_batch")),
        conv_transpose2d,
    ),
    "cpu": ConvLayers(
        functools.partial(Conv2D, op=cpu_ops.atrous_conv2d), cpu_ops.conv_transpose2d
    ),
}


def conv_layers(form: str = "reference") -> ConvLayers:
    """The conv factories of `form` ('reference', 'space_to_batch' or 'cpu'; see module doc).

    Raises:
      ValueError naming the value and the choices, e.g. for a mistyped `config.conv_layers`.
    """
    if form not in LAYER_FORMS:
        raise ValueError(
            f"unknown conv layer form {form!r} (e.g. config.conv_layers); choose one of "
            f"{sorted(LAYER_FORMS)}"
        )
    return LAYER_FORMS[form]
