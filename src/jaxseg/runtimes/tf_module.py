"""A JAX function as a TensorFlow module (`jax2tf`), the step before a SavedModel or TFLite.

The variables become non-trainable `tf.Variable`s (TF Serving loads them as weights); the
computation is the function's StableHLO in an `XlaCallModule` op (`jax2tf`, native
serialisation). The module's `serve` is the `serving_default` signature when saved.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import jax

from jaxseg import tf_quiet


def jax_module(
    fn: Callable,
    variables: Any,
    input_spec: Any,
    outputs: Sequence[str],
    polymorphic: str | None,
    platforms: Sequence[str] | None = None,
) -> Any:
    """A `tf.Module` whose `serve(images)` returns `{name: output}` of `fn(variables, images)`.

    Args:
      fn: `(variables, images) -> output or tuple of outputs`, jit-able.
      variables: held as non-trainable `tf.Variable`s (the module keeps them alive).
      input_spec: the `tf.TensorSpec` of `images`.
      outputs: the names of `fn`'s outputs, in order.
      polymorphic: `jax2tf`'s shape of `images`, e.g. "(b, 65, 65, 3)" (None: fixed).
      platforms: e.g. `("cpu", "cuda")`; default: the platform JAX runs on now.
    """
    tf = tf_quiet.tensorflow()  # only here: importing jaxseg stays light
    from jax.experimental import jax2tf

    converted = jax2tf.convert(
        fn,
        polymorphic_shapes=[None, polymorphic],
        with_gradient=False,
        native_serialization_platforms=tuple(platforms) if platforms else None,
    )
    module = tf.Module()
    # Variables (not constants) keep the graph small and let TF Serving load weights normally.
    module.variables_tree = tf.nest.map_structure(
        lambda a: tf.Variable(a, trainable=False), jax.device_get(variables)
    )

    @tf.function(autograph=False, input_signature=[input_spec])
    def serve(images):
        result = converted(module.variables_tree, images)
        result = result if isinstance(result, tuple | list) else (result,)
        return dict(zip(outputs, result, strict=True))

    module.serve = serve
    return module


def save_module(module: Any, folder: str | os.PathLike) -> None:
    """`tf.saved_model.save` of a `jax_module` with its `serving_default` signature."""
    tf = tf_quiet.tensorflow()

    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
