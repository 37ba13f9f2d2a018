"""Ship a trained model: serialised StableHLO (`jax.export`) and a TensorFlow SavedModel.

Both exports compute `images [b, height, width, 3] float32 -> logits [b, height, width, C]
float32`, the model's `apply(variables, images, train=False)`, for any batch size `b` (a
symbolic dimension) at a fixed image size: resizing inside the networks builds interpolation
matrices from static sizes, so height and width are fixed at export time. Feed other image sizes
through `jaxseg.inference` (bucket padding or sliding windows) around the reloaded function.

- StableHLO: the variables are embedded as constants, so one `.bin` file is the whole model;
  reload it with `load_stablehlo` in any JAX of a compatible serialisation version, no Flax or
  jaxseg model code needed.
- SavedModel: the variables become `tf.Variable`s, the computation is the same StableHLO wrapped
  by `jax2tf` in an `XlaCallModule` op; the `serving_default` signature takes `images` and
  returns `logits`, ready for TF Serving.

Export `platforms=("cpu", "cuda")` to serve one artifact on both.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def _logits_fn(model: nn.Module) -> Callable[[Any, jax.Array], jax.Array]:
    def logits(variables, images):
        return model.apply(variables, images, train=False).astype(jnp.float32)

    return logits


def _input_spec(height: int, width: int, batch: str | int) -> jax.ShapeDtypeStruct:
    """`[batch, height, width, 3]` float32, `batch` symbolic when it is a name."""
    if isinstance(batch, str):
        shape = jax.export.symbolic_shape(f"{batch}, {height}, {width}, 3")
    else:
        shape = (batch, height, width, 3)
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def export_stablehlo(
    model: nn.Module,
    variables: Any,
    path: str | os.PathLike,
    *,
    height: int,
    width: int,
    batch: str | int = "b",
    platforms: Sequence[str] | None = None,
) -> jax.export.Exported:
    """Serialise `images [batch, height, width, 3] -> logits` to a StableHLO file at `path`.

    Args:
      model: Flax module with `apply(variables, images, train=False) -> [B, H, W, C]`.
      variables: its variables (`params`, `batch_stats`, ...), embedded as constants.
      path: output file (written atomically).
      height, width: fixed image size of the export.
      batch: a name (e.g. "b") for any batch size, or an int for a fixed one.
      platforms: e.g. `("cpu", "cuda")`; default: the platform JAX runs on now.

    Returns:
      The `jax.export.Exported` that was written.
    """
    logits = _logits_fn(model)
    exported = jax.export.export(
        jax.jit(lambda images: logits(variables, images)), platforms=platforms
    )(_input_spec(height, width, batch))
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(exported.serialize())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return exported


def load_stablehlo(path: str | os.PathLike) -> Callable[[jax.Array], jax.Array]:
    """Reload `export_stablehlo`'s file: a jitted `images [b, H, W, 3] -> logits [b, H, W, C]`.

    The underlying `jax.export.Exported` (input shapes, platforms) is the `.exported` attribute.
    """
    exported = jax.export.deserialize(bytearray(Path(path).read_bytes()))
    call = jax.jit(exported.call)
    call.exported = exported
    return call


def export_saved_model(
    model: nn.Module,
    variables: Any,
    path: str | os.PathLike,
    *,
    height: int,
    width: int,
    platforms: Sequence[str] | None = None,
) -> None:
    """Write a TensorFlow SavedModel directory at `path` (replacing it) for TF Serving.

    Signature `serving_default`: `images` float32 `[None, height, width, 3]` -> `{"logits":
    [None, height, width, C]}` (any batch size). The variables are saved as non-trainable
    `tf.Variable`s; the computation is the model's StableHLO (`jax2tf`, native serialisation)
    for `platforms` (e.g. `("cpu", "cuda")`; default: the platform JAX runs on now). The
    directory appears only when complete.
    """
    import tensorflow as tf  # TF is only needed here: keep `import jaxseg.export` light
    from jax.experimental import jax2tf

    converted = jax2tf.convert(
        _logits_fn(model),
        polymorphic_shapes=[None, f"(b, {height}, {width}, 3)"],
        with_gradient=False,
        native_serialization_platforms=tuple(platforms) if platforms else None,
    )
    module = tf.Module()
    # Variables (not constants) keep the graph small and let TF Serving load weights normally.
    module.variables_tree = tf.nest.map_structure(
        lambda a: tf.Variable(a, trainable=False), jax.device_get(variables)
    )

    @tf.function(
        autograph=False,
        input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name="images")],
    )
    def serve(images):
        return {"logits": converted(module.variables_tree, images)}

    module.serve = serve
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": serve})
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_saved_model(path: str | os.PathLike) -> Callable[[Any], Any]:
    """Reload `export_saved_model`'s directory: `images [b, H, W, 3]` -> logits `tf.Tensor`."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]

    def logits(images):
        return signature(images=tf.convert_to_tensor(images, tf.float32))["logits"]

    # The signature holds only weak references to the variables: keep their owner alive.
    logits.saved_model = loaded
    return logits
