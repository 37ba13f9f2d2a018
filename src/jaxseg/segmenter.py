"""`Segmenter`: a trained network with its preprocessing, ready to label photographs.

    seg = Segmenter(model, variables, normalize=..., class_names=names, crop_size=513,
                    pad_pixel=(127.5, 127.5, 127.5))
    labels = seg(image)              # uint8 [H, W, 3] numpy or PIL -> int32 [H, W]
    scores = seg.logits(image)       # float32 [H, W, C]

One object serves the model zoo, run folders and the prediction command line, so that a
network is always fed the way it was trained and evaluated:

- images arrive as RGB in 0..255 (PIL images are turned to their displayed orientation first);
- each image is padded bottom/right with `pad_pixel` to the evaluation canvas (`crop_size` when
  the image fits, else the `bucket` rule of `jaxseg.inference.bucket_size`), normalised, run
  through the network on the whole canvas (so global pooling sees the padded map, as DeepLab's
  official evaluation does) and the logits are cropped back to the image;
- test-time scales and flips, sliding windows and the dense CRF go through `jaxseg.inference`.

The network is compiled once per canvas shape, with the variables as an argument rather than
constants baked into the program (which makes compiling large models slow).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxseg import inference
from jaxseg.images import to_rgb

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


class Segmenter:
    """A network plus everything needed to apply it to images; see the module docstring.

    Attributes:
      model, variables: the Flax module and its `{"params", "batch_stats"}`.
      class_names: one name per output channel.
      palette: uint8 `[N, 3]` colours for label maps (N >= number of classes).
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
    ):
        # scales > 0, bucket sizes >= 1, window stride <= window (else pixels between windows
        # stay 0), batch size >= 1
        inference.check_options(
            scales=scales, bucket=bucket, sliding_window=sliding_window, batch_size=batch_size
        )
        if len(tuple(pad_pixel)) != 3:
            raise ValueError(f"pad_pixel must be an RGB triple, got {tuple(pad_pixel)!r}")
        self.model = model
        self.variables = variables
        self.normalize = normalize
        self.class_names = tuple(class_names)
        if palette is None:
            from jaxseg.viz import voc_palette

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
        self._network = jax.jit(lambda v, x: inference.predict_logits(model.apply, v, normalize(x)))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _apply(self, images: jax.Array) -> jax.Array:
        """Raw RGB `[B, h, w, 3]` -> logits `[B, h, w, C]` (normalisation included)."""
        return self._network(self.variables, images)

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

    @classmethod
    def from_run(
        cls,
        workdir: str | os.PathLike,
        checkpoint: str = "best",
        *,
        overrides: Mapping[str, Any] | None = None,
        experiment: Any = None,
        crf: bool | Mapping[str, float] = False,
        **options: Any,
    ) -> Segmenter:
        """The network of a training run folder, fed as it was trained.

        The experiment file and config come from `<workdir>/run.json` (see
        `jaxseg.experiment.runs`), the weights from checkpoint `checkpoint` ("best", "latest"
        or a step, as `--mode=eval` takes it); normalisation, class names, palette and resize
        convention are the run's (class names and palette as training recorded them in
        run.json, so a run trained on `folder:DIR` needs not that folder), images are padded
        with the pixel that normalises to 0 (what the evaluation pipeline pads with).

        Args:
          workdir: the run folder.
          checkpoint: which checkpoint.
          overrides: `{"a.b": value}` config changes; only evaluation settings (e.g.
            `model.output_stride` for DeepLab) may differ from the run's, others are refused.
          experiment: the run's `jaxseg.experiment.Experiment`, when the file recorded in
            run.json has moved (it must be the same experiment); default: imported from there.
          crf: refine with the dense CRF: True for the run's `config.crf_params`, or a dict of
            `jaxseg.crf.dense_crf` keyword arguments.
          **options: other `Segmenter` arguments (scales, flip, sliding_window, batch_size,
            bucket, crop_size).

        Returns:
          The `Segmenter`, with `run_config` (the resolved config) and `step` (the
          checkpoint's) attributes added.

        Raises:
          jaxseg.train.TrainingError: no run there, a contradicting override, no such
            checkpoint, or another model's checkpoint.
        """
        from jaxseg.experiment import crf_kwargs, denormalize, runs

        experiment, config, record = runs.load_run(workdir, overrides, experiment)
        model, variables, step = runs.restore_variables(workdir, experiment, config, checkpoint)
        classes = runs.recorded_classes(record)
        if classes is None:  # a run from before run.json recorded its classes
            info = experiment.dataset(config)
            classes = (info.class_names, info.palette)
        if crf is True:
            crf = crf_kwargs(config)
        segmenter = cls(
            model,
            variables,
            normalize=functools.partial(experiment.normalize, config),
            class_names=classes[0],
            palette=classes[1],
            pad_pixel=tuple(denormalize(config, np.zeros(3, np.float32))),
            align_corners=config.align_corners,
            crf=crf or None,
            **options,
        )
        segmenter.run_config, segmenter.step = config, step
        return segmenter
