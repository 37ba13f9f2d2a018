"""TensorFlow SavedModel: the StableHLO computation wrapped by `jax2tf`, for TF Serving.

The variables become non-trainable `tf.Variable`s (TF Serving loads them as weights); the
computation is the model's StableHLO in an `XlaCallModule` op (`jax2tf`, native
serialisation). The `serving_default` signature names its inputs and outputs.
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

from jaxseg import files, tf_quiet
from jaxseg.export.errors import ExportFileError
from jaxseg.export.graph import INPUT_NAME, OUTPUT_NAMES, ServingGraph
from jaxseg.inference import predict_logits


def _module(
    fn: Callable,
    variables: Any,
    input_spec,
    outputs: Sequence[str],
    polymorphic: str | None,
    platforms: Sequence[str] | None = None,
):
    """A `tf.Module` whose `serve(images)` returns `{name: output}` of `fn(variables, images)`.

    Args:
      fn: `(variables, images) -> output or tuple of outputs`, jit-able.
      variables: held as non-trainable `tf.Variable`s (the module keeps them alive).
      input_spec: the `tf.TensorSpec` of `images`.
      outputs: the names of `fn`'s outputs, in order.
      polymorphic: `jax2tf`'s shape of `images`, e.g. "(b, 65, 65, 3)" (None: fixed).
      platforms: e.g. `("cpu", "cuda")`; default: the platform JAX runs on now.
    """
    tf = tf_quiet.tensorflow()  # only here: `import jaxseg.export` stays light
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
    """`tf.saved_model.save` of a `_module` with its `serving_default` signature."""
    tf = tf_quiet.tensorflow()

    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})


def serving_module(
    graph: ServingGraph, batch: int | None, platforms: Sequence[str] | None = None
) -> Any:
    """The serving graph as a `tf.Module`: `images` uint8 `[batch, H, W, 3]` ->
    `{"logits", "labels"}`; `batch` None for any batch size."""
    tf = tf_quiet.tensorflow()

    shape = [batch, graph.height, graph.width, 3]
    spec = tf.TensorSpec(shape, tf.uint8, name=INPUT_NAME)
    poly = None if batch is not None else f"(b, {graph.height}, {graph.width}, 3)"
    return _module(graph.apply, graph.variables, spec, OUTPUT_NAMES, poly, platforms)


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

    Signature `serving_default`: `images` float32 `[None, height, width, 3]`, already
    normalised (as `Segmenter.normalize` returns them) -> `{"logits": [None, height, width,
    C]}` (any batch size). `jaxseg-export --format savedmodel` writes the uint8-in,
    logits-and-labels-out graph of `jaxseg.export.graph` instead. `platforms`: e.g. `("cpu",
    "cuda")`; default: the platform JAX runs on now. The directory appears only when complete.
    """
    tf = tf_quiet.tensorflow()

    fn = functools.partial(predict_logits, model.apply)
    spec = tf.TensorSpec([None, height, width, 3], tf.float32, name="images")
    poly = f"(b, {height}, {width}, 3)"
    module = _module(fn, variables, spec, ("logits",), poly, platforms)
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "the output folder does not exist", str(path.parent))
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp.chmod(files.default_dir_mode())  # mkdtemp makes it 0700 whatever the umask
        save_module(module, tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_saved_model(path: str | os.PathLike) -> Callable[[Any], Any]:
    """Reload `export_saved_model`'s directory: `images [b, H, W, 3]` -> logits `tf.Tensor`."""
    tf = tf_quiet.tensorflow()

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
