"""Rebuild a constructed model with other conv forms (`jaxseg.nn.conv_layers`), same weights.

Models take their convolutions as factories: a `conv` field (a `Conv2D`-like module factory)
that they pass down to their backbone, heads and units, and, for FCN, `conv_transpose`. A
network that was built with the reference forms (the default: zoo models, run folders) can
run the faster CPU forms without being rebuilt by hand:

    fast = with_conv_layers(model, conv_layers("cpu"))
    fast.apply(variables, images, train=False)   # same variables, same results

The parameter tree is unchanged: only the function each `Conv2D` calls (its `op`) and the
transposed-conv function differ.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn

from jaxseg.nn.conv import Conv2D
from jaxseg.nn.layers import LAYER_FORMS, ConvLayers
from jaxseg.ops import conv_transpose2d as reference_conv_transpose2d

# Fields Flax adds to every module; they are not configuration.
_FLAX_FIELDS = ("parent", "name")


def with_conv_layers(module: nn.Module, layers: ConvLayers) -> nn.Module:
    """`module` (unbound) with its conv factories replaced by those of `layers`, recursively.

    Walks the module's dataclass fields, and inside them submodule instances, tuples and
    `functools.partial` factories (e.g. a `backbone=functools.partial(ResNet, ...)`):

    - a field or keyword `conv` holding `Conv2D` (or a subclass, or a partial of one) becomes
      a `Conv2D` of the same class and keywords calling `layers.conv`'s `op`;
    - a field or keyword `conv_transpose` holding `jaxseg.ops.conv_transpose2d`, or another
      form's transposed conv, becomes `layers.conv_transpose`;
    - a partial of a module class with a `conv` field gets `conv=` bound, so the backbone a
      model builds from it uses the new forms whether or not the model passes its own `conv`.

    Conv factories that are not `Conv2D`-based (a user's own module) are left as they are.

    Args:
      module: a Flax module, e.g. `DeepLabV3(backbone="resnet50")`.
      layers: the forms, e.g. `jaxseg.nn.conv_layers("cpu")`.

    Returns:
      A module of the same class and parameter tree (`module` itself if nothing changed).
    """
    return _convert_module(module, layers)


def conv_op_of(layers: ConvLayers):
    """The atrous-conv function `layers.conv` binds as `Conv2D.op` (the reference op if none)."""
    factory = layers.conv
    while isinstance(factory, functools.partial):  # the outermost binding wins
        if "op" in factory.keywords:
            return factory.keywords["op"]
        factory = factory.func
    return Conv2D.op


def _convert_module(module: nn.Module, layers: ConvLayers) -> nn.Module:
    changes = {}
    for field in dataclasses.fields(module):
        if field.name in _FLAX_FIELDS or not field.init:
            continue
        value = getattr(module, field.name)
        new = _convert(field.name, value, layers)
        if new is not value:
            changes[field.name] = new
    return module.clone(**changes) if changes else module


def _convert(name: str, value: Any, layers: ConvLayers) -> Any:
    if name == "conv" and _conv2d_class(value) is not None:
        return _with_op(value, conv_op_of(layers))
    if name == "conv_transpose" and _is_conv_transpose(value, layers):
        return layers.conv_transpose
    if isinstance(value, nn.Module):
        return _convert_module(value, layers)
    if isinstance(value, tuple) and not hasattr(value, "_fields"):  # not a NamedTuple
        items = tuple(_convert("", item, layers) for item in value)
        changed = any(a is not b for a, b in zip(items, value, strict=True))
        return items if changed else value
    if isinstance(value, functools.partial):
        return _convert_partial(value, layers)
    return value


def _convert_partial(factory: functools.partial, layers: ConvLayers) -> functools.partial:
    keywords = {key: _convert(key, item, layers) for key, item in factory.keywords.items()}
    func = factory.func
    if (
        isinstance(func, type)
        and issubclass(func, nn.Module)
        and "conv" not in keywords
        and "conv" in {f.name for f in dataclasses.fields(func)}
        and _conv2d_class(_field_default(func, "conv")) is not None
    ):
        default = _field_default(func, "conv")
        converted = _with_op(default, conv_op_of(layers))
        if converted is not default:
            keywords["conv"] = converted
    changed = keywords.keys() != factory.keywords.keys() or any(
        keywords[k] is not factory.keywords[k] for k in factory.keywords
    )
    return functools.partial(func, *factory.args, **keywords) if changed else factory


def _field_default(cls: type, name: str) -> Any:
    for field in dataclasses.fields(cls):
        if field.name == name:
            return field.default
    return None


def _conv2d_class(factory: Any) -> type | None:
    """The `Conv2D` (sub)class `factory` builds, or None if it is not a `Conv2D` factory."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    if isinstance(factory, type) and issubclass(factory, Conv2D):
        return factory
    return None


def _with_op(factory: Any, op) -> Any:
    """`factory` (a `Conv2D` class or partial of one) calling `op`, its other keywords kept
    (`factory` itself when it calls `op` already)."""
    if conv_op_of(ConvLayers(factory, reference_conv_transpose2d)) is op:
        return factory
    keywords: dict[str, Any] = {}
    args: tuple = ()
    while isinstance(factory, functools.partial):
        keywords = {**factory.keywords, **keywords}
        args = factory.args + args
        factory = factory.func
    return functools.partial(factory, *args, **{**keywords, "op": op})


def _is_conv_transpose(value: Any, layers: ConvLayers) -> bool:
    """Whether `value` is a transposed-conv function of one of the known forms."""
    known = {reference_conv_transpose2d, *(form.conv_transpose for form in LAYER_FORMS.values())}
    return value in known or value is layers.conv_transpose
