"""TensorFlow SavedModel: the StableHLO computation wrapped by `jax2tf`, for TF Serving.

The variables become non-trainable `tf.Variable`s (TF Serving loads them as weights); the
computation is the model's StableHLO in an `XlaCallModule` op (`jax2tf`, native
serialisation; `jaxseg.runtimes.tf_module`). The `serving_default` signature names its inputs
and outputs.
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

from jaxseg import files, tf_quiet
from jaxseg.export.errors import ExportFileError
from jaxseg.export.graph import INPUT_NAME, OUTPUT_NAMES, ServingGraph
from jaxseg.inference import predict_logits
from jaxseg.runtimes.tf_module import jax_module, save_module


def serving_module(
    graph: ServingGraph, batch: int | None, platforms: Sequence[str] | None = None
) -> Any:
    """The serving graph as a `tf.Module`: `images` uint8 `[batch, H, W, 3]` ->
    `{"logits", "labels"}`; `batch` None for any batch size."""
    tf = tf_quiet.tensorflow()

    shape = [batch, graph.height, graph.width, 3]
    spec = tf.TensorSpec(shape, tf.uint8, name=INPUT_NAME)
    poly = None if batch is not None else f"(b, {graph.height}, {graph.width}, 3)"
    return jax_module(graph.apply, graph.variables, spec, OUTPUT_NAMES, poly, platforms)


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
    module = jax_module(fn, variables, spec, ("logits",), poly, platforms)
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
