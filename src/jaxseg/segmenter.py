"""`Segmenter`: a trained network with its preprocessing, ready to label photographs.

    seg = Segmenter(model, variables, normalize=..., class_names=names, crop_size=513,
                    pad_pixel=(127.5, 127.5, 127.5))
    labels = seg(image)              # uint8 [H, W, 3] numpy or PIL -> int32 [H, W]
    scores = seg.logits(image)       # float32 [H, W, C]

One object serves the model zoo, run folders (`jaxseg.experiment.load_segmenter`), evaluation
and the prediction command line, so that a network is always fed the way it was trained and
evaluated:

- images arrive as RGB in 0..255 (PIL images are turned to their displayed orientation first);
- each image is padded bottom/right with `pad_pixel` to the evaluation canvas (`crop_size` when
  the image fits, else the `bucket` rule of `jaxseg.inference.bucket_size`), normalised, run
  through the network on the whole canvas (so global pooling sees the padded map, as DeepLab's
  official evaluation does) and the logits are cropped back to the image;
- test-time scales and flips, sliding windows and the dense CRF go through `jaxseg.inference`
  (`multiscale="deeplab"`: scales and flips by the official TF DeepLab protocol,
  `inference.deeplab_multiscale_logits`, which the TF DeepLab releases use).

The network is compiled once per canvas shape. On a CPU the variables are compiled into the
program as constants (`jaxseg.inference_forms.weights_as_constants`: XLA then folds the
BatchNorms' per-channel arithmetic at compile time; each compiled canvas shape holds its own
copy of the weights). Elsewhere they are passed as an argument.

`runtime` chooses what runs that network call (everything else, padding, cropping, scales,
flips, windows and the CRF, is the same code):

- "jax" (the default): XLA, with the fastest exact conv forms of the backend;
- "onnxruntime" (`pip install 'jaxseg[onnx]'`) or "litert" (`pip install 'jaxseg[tflite]'`):
  the network (normalisation included, reference conv forms) is exported for each canvas
  shape on its first use, float32 in and logits out, kept in memory and run by that runtime
  on CPU (`jaxseg.runtimes.ExportedNetwork`); the DeepLab protocol exports the network at its
  own resolution likewise. Logits equal JAX's within 1e-4 of the largest |logit| (tested).

First use costs more than JAX's compilation, once per canvas shape (each test-time scale is
another shape; `replace` keeps what was exported). Measured on a shared 2-core AMD EPYC
(benchmarks/RESULTS.md, "Segmenter runtimes"), first call on a 513 canvas, JAX's (compile and
run) vs onnxruntime's / litert's export and load (litert: 3 s of it importing TensorFlow):
MobileNetV2 DeepLab v3 release 5-6 s vs 5-8 s / 17-20 s; DeepLab v3 ResNet-50 15-16 s vs
18-19 s / 38-40 s. After that, LiteRT ran the MobileNetV2 release 2.7-2.8x faster than JAX
(onnxruntime 1.0-1.1x); on ResNet-50 the three were within 10% of each other.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxseg import inference, runtimes
from jaxseg.images import to_rgb
from jaxseg.inference_forms import (
    compiler_options_for_backend,
    fast_forms_for_backend,
    weights_as_constants,
)
from jaxseg.viz import voc_palette

Normalize = Callable[[jax.Array], jax.Array]


def as_rgb_array(image: Any) -> np.ndarray:
    """One image as a real-valued `[H, W, 3]` array in 0..255 units.

    PIL images are rotated to their displayed orientation (EXIF) and converted to RGB
    (`jaxseg.images.to_rgb`); arrays must already be `[H, W, 3]` RGB.
    """
    if isinstance(image, Image.Image):
        return to_rgb(image)
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(
            f"an image must be an RGB array [H, W, 3] or a PIL image, got an array of shape "
            f"{array.shape} and dtype {array.dtype}"
        )
    return array


def _pair_or_none(size: int | Sequence[int] | None, name: str) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{name} must be a positive int or (height, width), got {size!r}")
    return pair


def _compiled(
    network: Callable[[Any, jax.Array], jax.Array], variables: Mapping[str, Any]
) -> Callable[[jax.Array], jax.Array]:
    """`images -> network(variables, images)`, jitted with the backend's compile options and
    the variables as constants where `weights_as_constants()` says so, else as an argument."""
    options = compiler_options_for_backend()
    if weights_as_constants():
        return jax.jit(lambda x: network(variables, x), compiler_options=options)
    jitted = jax.jit(network, compiler_options=options)
    return lambda x: jitted(variables, x)


class Segmenter:
    """A network plus everything needed to apply it to images; see the module docstring.

    Attributes:
      model, variables: the Flax module and its `{"params", "batch_stats"}`.
      class_names: one name per output channel.
      palette: uint8 `[N, 3]` colours for label maps (N >= number of classes).
      runtime: what runs the network: "jax", "onnxruntime" or "litert" (module docstring).
    """

    def __init__(
        self,
        model: nn.Module,
        variables: Mapping[str, Any],
        *,
        normalize: Normalize,
        class_names: Sequence[str],
        palette: np.ndarray | None = None,
        crop_size: int | Sequence[int] | None = None,
        pad_pixel: Sequence[float] = (0.0, 0.0, 0.0),
        bucket: inference.Bucket = 32,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        sliding_window: tuple | None = None,
        batch_size: int = 4,
        align_corners: bool = False,
        crf: Mapping[str, float] | None = None,
        multiscale: Literal["resize", "deeplab"] = "resize",
        runtime: str = "jax",
    ):
        # scales > 0, bucket sizes >= 1, window stride <= window (else pixels between windows
        # stay 0), batch size >= 1
        inference.check_options(
            scales=scales, bucket=bucket, sliding_window=sliding_window, batch_size=batch_size
        )
        if multiscale not in ("resize", "deeplab"):
            raise ValueError(f"multiscale must be 'resize' or 'deeplab', got {multiscale!r}")
        if multiscale == "deeplab" and "upsample_logits" not in model.__dataclass_fields__:
            raise ValueError(
                f"multiscale='deeplab' needs a DeepLab v3/v3+ model (upsample_logits), "
                f"got {type(model).__name__}"
            )
        # a known runtime whose packages are installed (before any work is done)
        runtimes.check_runtime(runtime)
        if len(tuple(pad_pixel)) != 3:
            raise ValueError(f"pad_pixel must be an RGB triple, got {tuple(pad_pixel)!r}")
        # The fastest exact forms for this backend (on a CPU: jaxseg.ops.cpu's convolutions).
        model, variables = fast_forms_for_backend(model, variables)
        self.model = model
        self.variables = variables
        self.normalize = normalize
        self.class_names = tuple(class_names)
        if palette is None:
            palette = voc_palette(256)
        self.palette = np.asarray(palette, np.uint8)
        self.crop_size = _pair_or_none(crop_size, "crop_size")
        self.pad_pixel = tuple(float(v) for v in pad_pixel)
        self.bucket = bucket
        self.scales = tuple(float(s) for s in scales)
        self.flip = bool(flip)
        self.sliding_window = sliding_window
        self.batch_size = int(batch_size)
        self.align_corners = bool(align_corners)
        self.crf = dict(crf) if crf is not None else None
        self.multiscale = multiscale
        self.runtime = runtime
        self._network = _compiled(
            lambda v, x: inference.predict_logits(model.apply, v, normalize(x)), variables
        )
        self._options = dict(
            normalize=normalize, class_names=self.class_names, palette=self.palette,
            crop_size=crop_size, pad_pixel=self.pad_pixel, bucket=bucket, scales=self.scales,
            flip=self.flip, sliding_window=sliding_window, batch_size=self.batch_size,
            align_corners=self.align_corners, crf=self.crf, multiscale=multiscale,
            runtime=runtime,
        )  # fmt: skip

    def replace(self, **changes: Any) -> Segmenter:
        """The same network and weights with other `Segmenter` options (scales, flip, crf, ...).

        With the same `runtime` and `normalize` the network compiled or exported so far is
        shared, not built again.

        Raises:
          TypeError naming an unknown option; ValueError as the constructor does.
        """
        unknown = sorted(set(changes) - set(self._options))
        if unknown:
            raise TypeError(
                f"unknown Segmenter option(s) {unknown}; known: {sorted(self._options)}"
            )
        new = type(self)(self.model, self.variables, **{**self._options, **changes})
        if new.runtime == self.runtime and new.normalize is self.normalize:
            # The same network call: keep what was compiled or exported for it.
            new._network = self._network
            for name in ("_exported", "_network_resolution"):
                if name in self.__dict__:
                    new.__dict__[name] = self.__dict__[name]
        return new

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _apply(self, images: jax.Array) -> jax.Array:
        """Raw RGB `[B, h, w, 3]` -> logits `[B, h, w, C]` (normalisation included)."""
        if self.runtime != "jax":
            return self._exported(images)
        return self._network(images)

    def _export_network(self, model: nn.Module) -> runtimes.ExportedNetwork:
        """`model`'s network call (reference conv forms) in the exported `self.runtime`."""
        model, normalize = runtimes.with_reference_convs(model), self.normalize
        return runtimes.ExportedNetwork(
            lambda v, x: inference.predict_logits(model.apply, v, normalize(x)),
            self.variables,
            self.runtime,
            name=type(model).__name__,
        )

    @functools.cached_property
    def _exported(self) -> runtimes.ExportedNetwork:
        """`_apply`'s network in an exported runtime, converted per canvas shape."""
        return self._export_network(self.model)

    def _canvas(self, height: int, width: int) -> tuple[int, int]:
        crop = self.crop_size
        if crop is not None and height <= crop[0] and width <= crop[1]:
            return crop
        return (
            inference.bucket_size(height, self.bucket),
            inference.bucket_size(width, self.bucket),
        )

    def _plain(self, images: np.ndarray) -> np.ndarray:
        """`[B, H, W, 3]` -> `[B, H, W, C]`: one network call on the padded canvas."""
        height, width = images.shape[1:3]
        canvas = np.empty((len(images), *self._canvas(height, width), 3), np.float32)
        canvas[:] = np.asarray(self.pad_pixel, np.float32)
        canvas[:, :height, :width] = images
        logits = self._apply(jnp.asarray(canvas))
        return np.asarray(logits, np.float32)[:, :height, :width]

    def _augmented(self, image: np.ndarray) -> np.ndarray:
        """`[H, W, 3]` -> `[H, W, C]` through test-time scales/flips or sliding windows."""
        if self.multiscale == "deeplab":
            return self._deeplab_protocol(image)
        return inference.multiscale_flip_logits(
            self._apply,
            image,
            self.scales,
            self.flip,
            bucket=self.bucket,
            sliding_window=self.sliding_window,
            batch_size=self.batch_size,
            align_corners=self.align_corners,
            pad_value=self.pad_pixel,
        )

    def _deeplab_protocol(self, image: np.ndarray) -> np.ndarray:
        """`[H, W, 3]` -> `[H, W, C]` by `inference.deeplab_multiscale_logits` on the canvas."""
        if self.sliding_window is not None:
            raise ValueError("multiscale='deeplab' evaluates whole canvases: drop sliding_window")
        height, width = image.shape[:2]
        canvas = np.empty((*self._canvas(height, width), 3), np.float32)
        canvas[:] = np.asarray(self.pad_pixel, np.float32)
        canvas[:height, :width] = image
        logits = inference.deeplab_multiscale_logits(
            self._network_resolution,
            canvas,
            self.scales,
            self.flip,
        )
        return logits[:height, :width]

    @functools.cached_property
    def _network_resolution(self) -> Callable[[jax.Array], jax.Array]:
        """`raw RGB [1, h, w, 3] -> logits at the network's own resolution`."""
        model, normalize = self.model.clone(upsample_logits=False), self.normalize
        if self.runtime != "jax":  # the runtime's copy holds `self.variables`
            return self._export_network(model)
        return _compiled(lambda v, x: model.apply(v, normalize(x), train=False), self.variables)

    def _logits_same_size(self, images: np.ndarray) -> np.ndarray:
        """`[B, H, W, 3]` (0..255) -> `[B, H, W, C]`, CRF-refined when configured."""
        images = np.asarray(images, np.float32)
        plain = self.scales == (1.0,) and not self.flip and self.sliding_window is None
        if plain:
            logits = self._plain(images)
        else:
            logits = np.stack([self._augmented(image) for image in images])
        if self.crf is not None:
            pairs = zip(logits, images, strict=True)
            logits = np.stack([inference.crf_refine(lg, im, **self.crf) for lg, im in pairs])
        return logits

    def logits(self, images: Any) -> np.ndarray | list[np.ndarray]:
        """Class scores at each image's own size.

        Args:
          images: one image (uint8 `[H, W, 3]` array or PIL image), a batch `[B, H, W, 3]`,
            or a list of images of any sizes.

        Returns:
          float32 `[H, W, C]` for one image, `[B, H, W, C]` for a batch array, a list of
          `[H_i, W_i, C]` for a list.
        """
        if isinstance(images, list | tuple):
            return [self._logits_same_size(as_rgb_array(im)[None])[0] for im in images]
        if not isinstance(images, Image.Image) and np.ndim(images) == 4:
            batch = np.asarray(images)
            if batch.shape[-1] != 3:
                raise ValueError(f"a batch must be [B, H, W, 3] RGB, got {batch.shape}")
            return self._logits_same_size(batch)
        return self._logits_same_size(as_rgb_array(images)[None])[0]

    def __call__(self, images: Any) -> np.ndarray | list[np.ndarray]:
        """Label maps: int32 `[H, W]`, `[B, H, W]` or a list, following `logits`' batching."""
        scores = self.logits(images)
        if isinstance(scores, list):
            return [np.argmax(s, axis=-1).astype(np.int32) for s in scores]
        return np.argmax(scores, axis=-1).astype(np.int32)
