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

Export `platforms=("cpu", "cuda")` to serve one artifact on both. A training run exports as it
was trained: `seg = jaxseg.experiment.load_segmenter(workdir)` rebuilds the model from the run's
`run.json` and checkpoint, then `export_stablehlo(seg.model, seg.variables, ...)`; the exported
function takes network inputs, normalised as `seg.normalize` does.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg import files
from jaxseg.inference import predict_logits


class ExportFileError(ValueError):
    """An export file or folder cannot be read back: the message names it and what to do."""


def _logits_fn(model: nn.Module) -> Callable[[Any, jax.Array], jax.Array]:
    return functools.partial(predict_logits, model.apply)


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
    with files.atomic_write(path) as f:
        f.write(exported.serialize())
    return exported


def load_stablehlo(path: str | os.PathLike) -> Callable[[jax.Array], jax.Array]:
    """Reload `export_stablehlo`'s file: a jitted `images [b, H, W, 3] -> logits [b, H, W, C]`.

    The underlying `jax.export.Exported` (input shapes, platforms) is the `.exported` attribute.

    Raises:
      ExportFileError: the file is missing, unreadable, truncated or not an export.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ExportFileError(f"cannot read the StableHLO export {path}: {e.strerror}") from e
    try:
        exported = jax.export.deserialize(bytearray(data))
    except Exception as e:  # flatbuffers/struct/ValueError for truncated or foreign bytes
        raise ExportFileError(
            f"{path} ({len(data)} bytes) is not a complete StableHLO export written by "
            f"jaxseg.export.export_stablehlo ({type(e).__name__}): it may be truncated or another "
            "kind of file; export the model again."
        ) from e
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
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "the output folder does not exist", str(path.parent))
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp.chmod(files.default_dir_mode())  # mkdtemp makes it 0700 whatever the umask
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

    try:
        loaded = tf.saved_model.load(str(path))
    except (OSError, ValueError, tf.errors.OpError) as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ExportFileError(
            f"{path} is not a complete SavedModel written by jaxseg.export.export_saved_model "
            f"({first}); export the model again."
        ) from e
    signature = loaded.signatures["serving_default"]

    def logits(images):
        return signature(images=tf.convert_to_tensor(images, tf.float32))["logits"]

    # The signature holds only weak references to the variables: keep their owner alive.
    logits.saved_model = loaded
    return logits
