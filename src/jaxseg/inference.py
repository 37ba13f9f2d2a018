"""Prediction at native resolution: whole image, sliding window, multi-scale + flip, dense CRF.

All functions take an `apply_fn(images [B, h, w, 3] float32) -> logits [B, h, w, C]`, usually
`jax.jit(lambda x: model.apply(variables, x, train=False))` built once by the caller, and call
it only on a few fixed shapes, so that the network compiles once per *bucket*, not per image:

- whole image (`whole_image_logits`): the image is padded (bottom/right) to a bucket, a
  multiple of 32 or the next size from a list such as `(513,)` (`bucket_size`), and the
  logits are cropped back;
- sliding window: every window has the crop shape and windows go through in fixed-size batches
  (the last batch is filled with blank windows whose logits are dropped);
- test-time scales and flips: bilinear resizing and mirroring are matrix products with
  interpolation matrices built in NumPy for each image and zero-padded to bucket shapes, so the
  device computations around the network (resize, flip, pad, softmax, averaging) also compile
  once per bucket. Only the final crop to each image's own size happens on the host, which is
  why results come back as NumPy arrays.

Images pass through with their values unchanged (as float32): normalise inside `apply_fn`, or
before calling and set `pad_value` to what the network sees as neutral (0 after mean/std
normalisation; DeepLab pads raw images with the mean pixel).

Test-time averaging follows DeepLab's reference and mmsegmentation: the softmax probabilities
of every scale and flip, each resized to the native size, are averaged (`average="probs"`),
and their log is returned, so that argmax, softmax and the CRF's unary term all treat it like
logits. `average="logits"` averages raw logits instead.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxseg.crf import dense_crf
from jaxseg.ops import bilinear_resize_matrix, resize_bilinear

ApplyFn = Callable[[jax.Array], jax.Array]
Bucket = int | Sequence[int] | None
SizePair = int | Sequence[int]

# DeepLab v3/v3+ evaluation scales (used with left-right flips) on PASCAL VOC.
DEEPLAB_EVAL_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
_HIGHEST = lax.Precision.HIGHEST


def bucket_size(size: int, bucket: Bucket) -> int:
    """Padded length of one spatial side.

    `bucket=None`: no padding. An int `m`: round up to a multiple of `m`. A list of sizes: the
    smallest one that fits; longer sides round up to a multiple of the largest size, so the set
    of compiled shapes stays small even for outsized images.
    """
    if bucket is None:
        return size
    if isinstance(bucket, int):
        return math.ceil(size / bucket) * bucket
    sizes = sorted(bucket)
    for candidate in sizes:
        if candidate >= size:
            return candidate
    return math.ceil(size / sizes[-1]) * sizes[-1]


def check_options(
    *,
    scales: Sequence[float] | None = None,
    bucket: Bucket = None,
    sliding_window: tuple[SizePair, SizePair | None] | None = None,
    batch_size: int | None = None,
) -> None:
    """Raises `ValueError` naming the option and its accepted range for a value that would run
    but give a wrong answer (an all-background mask, pixels no window covers) or fail per image.

    Accepted: every scale > 0; `bucket` None, an int >= 1 or sizes >= 1; window sides >= 1 and
    strides 1..window (a larger stride would leave pixels between windows uncovered);
    `batch_size` >= 1. Arguments left at None are not checked.
    """
    if scales is not None:
        scales = list(scales)
        if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
            raise ValueError(f"scales must be finite numbers > 0 (at least one), got {scales}")
    if bucket is not None:
        sizes = [bucket] if isinstance(bucket, int) else list(bucket)
        if not sizes or not all(isinstance(b, int | np.integer) and b >= 1 for b in sizes):
            raise ValueError(f"bucket must be None, an int >= 1 or sizes >= 1, got {bucket!r}")
    if sliding_window is not None:
        crop_size, stride = sliding_window
        crop = _pair(crop_size)
        if min(crop) < 1:
            raise ValueError(f"sliding window size must be >= 1, got {crop_size!r}")
        if stride is not None:
            steps = _pair(stride)
            if min(steps) < 1 or steps[0] > crop[0] or steps[1] > crop[1]:
                raise ValueError(
                    f"sliding window stride must be between 1 and the window size {crop} "
                    f"(larger strides leave pixels between windows uncovered), got {stride!r}"
                )
    if batch_size is not None and (not isinstance(batch_size, int | np.integer) or batch_size < 1):
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")


def _pair(value: SizePair) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    height, width = value
    return int(height), int(width)


def _pad_bottom_right(
    image: np.ndarray, padded: tuple[int, int], pad_value: float | Sequence[float]
) -> np.ndarray:
    """[..., h, w, 3] -> [..., *padded, 3] float32, the new pixels set to `pad_value` ([3])."""
    canvas = np.empty((*image.shape[:-3], *padded, 3), np.float32)
    canvas[:] = np.asarray(pad_value, np.float32)
    canvas[..., : image.shape[-3], : image.shape[-2], :] = image
    return canvas


def predict_logits(
    apply_fn: Callable[..., jax.Array],
    variables: Mapping,
    images: jax.Array,
    size: tuple[int, int] | None = None,
    *,
    align_corners: bool = False,
) -> jax.Array:
    """The network's eval-mode logits at label resolution (jit-able; the one path used by the
    eval step, test-time augmentation, prediction and export).

    Args:
      apply_fn: the module's `apply`, called as `apply_fn(variables, images, train=False)`.
      variables: `{"params": ..., "batch_stats": ...}`.
      images: `[B, H, W, 3]` network input (already normalised).
      size: the labels' `(H', W')`; logits of another size are resized bilinearly to it (labels
        are never resized: evaluation is at native label resolution). None: as the network
        returns them.
      align_corners: resize convention (True for TF1 DeepLab's 513 = 32k + 1 sizes).

    Returns:
      float32 `[B, H', W', C]` logits.
    """
    logits = apply_fn(variables, images, train=False).astype(jnp.float32)
    if size is not None and logits.shape[1:3] != tuple(size):
        logits = resize_bilinear(logits, size, align_corners=align_corners)
    return logits


def whole_image_logits(
    apply_fn: ApplyFn,
    images: np.ndarray | jax.Array,
    *,
    bucket: Bucket = 32,
    pad_value: float | Sequence[float] = 0.0,
) -> np.ndarray:
    """Whole-image prediction: pad to a bucket, run the network, crop back.

    Args:
      apply_fn: `[B, h, w, 3] float32 -> [B, h, w, C]` logits.
      images: `[B, H, W, 3]`, any real dtype (cast to float32, values unchanged).
      bucket: padding rule of `bucket_size` for both sides (32, `(513,)`, or None).
      pad_value: scalar or per-channel `[3]` value of the padded pixels.

    Returns:
      `[B, H, W, C]` float32 logits at the input resolution (NumPy).
    """
    check_options(bucket=bucket)
    images = np.asarray(images, np.float32)
    height, width = images.shape[1:3]
    padded = (bucket_size(height, bucket), bucket_size(width, bucket))
    logits = apply_fn(jnp.asarray(_pad_bottom_right(images, padded, pad_value)))
    return np.asarray(logits, np.float32)[:, :height, :width]


# --------------------------------------------------------------------------- sliding window


def _window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Start offsets covering `[0, size)` with windows of `crop` (size >= crop), last flush."""
    count = math.ceil(max(size - crop, 0) / stride) + 1
    return [min(i * stride, size - crop) for i in range(count)]


@jax.jit
def _add_windows(total, logits, tops, lefts, weights):
    """total [H, W, C] += weights[i] * logits[i] placed at (tops[i], lefts[i]) for each window."""
    crop_h, crop_w, channels = logits.shape[1:]

    def add_one(i, acc):
        start = (tops[i], lefts[i], 0)
        window = lax.dynamic_slice(acc, start, (crop_h, crop_w, channels))
        return lax.dynamic_update_slice(acc, window + weights[i] * logits[i], start)

    return lax.fori_loop(0, logits.shape[0], add_one, total)


def _sliding_window_on_canvas(
    apply_fn: ApplyFn,
    canvas: np.ndarray,
    covered: tuple[int, int],
    crop: tuple[int, int],
    stride: tuple[int, int],
    batch_size: int,
) -> jax.Array:
    """Window-averaged logits of `canvas [Hc, Wc, 3]` over its top-left `covered` region
    (at least the crop): `[Hc, Wc, C]`, zero outside that region."""
    offsets = [
        (top, left)
        for top in _window_starts(covered[0], crop[0], stride[0])
        for left in _window_starts(covered[1], crop[1], stride[1])
    ]
    coverage = np.zeros((*canvas.shape[:2], 1), np.float32)
    for top, left in offsets:
        coverage[top : top + crop[0], left : left + crop[1]] += 1.0

    total = None
    for first in range(0, len(offsets), batch_size):
        chunk = offsets[first : first + batch_size]
        weights = np.zeros(batch_size, np.float32)
        weights[: len(chunk)] = 1.0
        chunk = chunk + [(0, 0)] * (batch_size - len(chunk))
        windows = np.stack([canvas[t : t + crop[0], s : s + crop[1]] for t, s in chunk])
        logits = apply_fn(jnp.asarray(windows)).astype(jnp.float32)
        if total is None:
            total = jnp.zeros((*canvas.shape[:2], logits.shape[-1]), jnp.float32)
        tops, lefts = (np.asarray(v, np.int32) for v in zip(*chunk, strict=True))
        total = _add_windows(total, logits, tops, lefts, weights)
    return total / np.maximum(coverage, 1.0)


def _stride_or_default(crop: tuple[int, int], stride: SizePair | None) -> tuple[int, int]:
    stride = _pair(stride) if stride is not None else (crop[0] * 2 // 3, crop[1] * 2 // 3)
    if min(stride) < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    return stride


def sliding_window_logits(
    apply_fn: ApplyFn,
    image: np.ndarray | jax.Array,
    crop_size: SizePair,
    stride: SizePair | None = None,
    *,
    batch_size: int = 4,
    pad_value: float | Sequence[float] = 0.0,
    bucket: Bucket = 32,
) -> np.ndarray:
    """Sliding-window prediction with overlap averaging (large images, e.g. Cityscapes).

    Windows of `crop_size` start every `stride` pixels, the last one flush with the bottom/right
    edge; each pixel's logits are the mean over the windows that cover it. Images smaller than
    the crop are padded (bottom/right, `pad_value`) to it. Every network call sees
    `[batch_size, crop_h, crop_w, 3]`, so the network compiles once; the accumulation buffer is
    padded to a `bucket` so that it, too, compiles once per bucket.

    Args:
      apply_fn: `[B, crop_h, crop_w, 3] float32 -> [B, crop_h, crop_w, C]` logits.
      image: `[H, W, 3]`, any real dtype.
      crop_size: window `(crop_h, crop_w)`, or an int for squares.
      stride: step between windows; default two thirds of the crop (1/3 overlap).
      batch_size: windows per network call.
      pad_value: scalar or per-channel `[3]` value for images smaller than the crop.
      bucket: padding rule of `bucket_size` for the accumulation buffer.

    Returns:
      `[H, W, C]` float32 logits (NumPy).
    """
    check_options(bucket=bucket, sliding_window=(crop_size, stride), batch_size=batch_size)
    crop = _pair(crop_size)
    stride = _stride_or_default(crop, stride)
    image = np.asarray(image, np.float32)
    height, width = image.shape[:2]
    covered = (max(height, crop[0]), max(width, crop[1]))
    canvas = _pad_bottom_right(
        image, (bucket_size(covered[0], bucket), bucket_size(covered[1], bucket)), pad_value
    )
    logits = _sliding_window_on_canvas(apply_fn, canvas, covered, crop, stride, batch_size)
    return np.asarray(logits)[:height, :width]


# --------------------------------------------------------------------------- scales and flips


def _embed(matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Top-left placement of `matrix` in zeros of `shape`: resizing between padded canvases."""
    out = np.zeros(shape, np.float32)
    out[: matrix.shape[0], : matrix.shape[1]] = matrix
    return out


@jax.jit
def _warp(canvas, rows, cols, valid, pad_value):
    """Resized (and mirrored) views of an image on a padded canvas.

    canvas [Hn, Wn, 3]; rows [Hs, Hn]; cols [V, Ws, Wn] (one per view, mirrored by reversing
    rows); valid [Hs, Ws] bool; pad_value [3] -> [V, Hs, Ws, 3].
    """
    views = jnp.einsum("sh,hwc,vtw->vstc", rows, canvas, cols, precision=_HIGHEST)
    return jnp.where(valid[None, :, :, None], views, pad_value)


@functools.partial(jax.jit, static_argnames=("in_probs",))
def _unwarp(logits, rows, cols, in_probs):
    """Views' logits back on the native canvas, combined.

    logits [V, Hs, Ws, C]; rows [Hn, Hs]; cols [V, Wn, Ws] -> [Hn, Wn, C]: the sum over views
    of the logits, or (`in_probs`) the log of the sum of their softmax probabilities.
    """
    native = jnp.einsum("nh,vhwc,vmw->vnmc", rows, logits, cols, precision=_HIGHEST)
    if in_probs:
        return jax.nn.logsumexp(jax.nn.log_softmax(native, axis=-1), axis=0)
    return jnp.sum(native, axis=0)


def multiscale_flip_logits(
    apply_fn: ApplyFn,
    image: np.ndarray | jax.Array,
    scales: Sequence[float] = DEEPLAB_EVAL_SCALES,
    flip: bool = True,
    *,
    average: Literal["probs", "logits"] = "probs",
    bucket: Bucket = 32,
    sliding_window: tuple[SizePair, SizePair | None] | None = None,
    batch_size: int = 4,
    align_corners: bool = False,
    pad_value: float | Sequence[float] = 0.0,
    crf: bool | Mapping[str, float] = False,
) -> np.ndarray:
    """Test-time augmentation: several scales and optionally left-right flips, averaged.

    For each scale `s` the image is resized bilinearly to `round(s * H) x round(s * W)`,
    predicted whole (padded to `bucket`) or with `sliding_window=(crop_size, stride)`, and,
    with `flip`, predicted mirrored too (the mirrored logits are mirrored back). Every
    prediction is resized bilinearly to `H x W` and averaged as softmax probabilities
    (`average="probs"`, DeepLab's rule; their log is returned) or as raw logits
    (`average="logits"`). Scale 1 without flip is plain prediction.

    With `crf` (True for the dense CRF's defaults, or a dict of its keyword arguments) the
    average is refined by `crf_refine` against `image`, which must then be RGB in 0..255.

    Args:
      apply_fn: `[B, h, w, 3] float32 -> [B, h, w, C]` logits.
      image: `[H, W, 3]`, any real dtype.
      scales: resize factors; DeepLab evaluates at 0.5 ... 1.75.
      flip: also predict the mirrored image.
      average: "probs" or "logits", see above.
      bucket: padding rule (`bucket_size`) for native and scaled images.
      sliding_window: `(crop_size, stride or None)` to predict each view by windows.
      batch_size: windows per network call (sliding window only).
      align_corners: resize convention (True for TF1 DeepLab checkpoints).
      pad_value: scalar or per-channel `[3]` value of padded pixels.
      crf: dense-CRF refinement of the result.

    Returns:
      `[H, W, C]` float32 (NumPy): log of the averaged probabilities, or averaged logits.
    """
    if average not in ("probs", "logits"):
        raise ValueError(f"average must be 'probs' or 'logits', got {average!r}")
    check_options(
        scales=scales, bucket=bucket, sliding_window=sliding_window, batch_size=batch_size
    )
    image = np.asarray(image, np.float32)
    height, width = image.shape[:2]
    native = (bucket_size(height, bucket), bucket_size(width, bucket))
    canvas = jnp.asarray(_pad_bottom_right(image, native, 0.0))
    pad = jnp.broadcast_to(jnp.asarray(pad_value, jnp.float32), (3,))
    in_probs = average == "probs"

    accumulated = None
    for scale in scales:
        size = (max(1, round(scale * height)), max(1, round(scale * width)))
        if sliding_window is None:
            covered = size
        else:
            crop = _pair(sliding_window[0])
            stride = _stride_or_default(crop, sliding_window[1])
            covered = (max(size[0], crop[0]), max(size[1], crop[1]))
        scaled = (bucket_size(covered[0], bucket), bucket_size(covered[1], bucket))
        rows_in = bilinear_resize_matrix(height, size[0], align_corners)
        rows_out = bilinear_resize_matrix(size[0], height, align_corners)
        cols_in = [bilinear_resize_matrix(width, size[1], align_corners)]
        cols_out = [bilinear_resize_matrix(size[1], width, align_corners)]
        if flip:
            # Mirroring the scaled image reverses its columns; mirroring back, the logits'.
            cols_in.append(cols_in[0][::-1])
            cols_out.append(cols_out[0][:, ::-1])
        valid = np.zeros(scaled, bool)
        valid[: size[0], : size[1]] = True
        views = _warp(
            canvas,
            _embed(rows_in, (scaled[0], native[0])),
            np.stack([_embed(c, (scaled[1], native[1])) for c in cols_in]),
            valid,
            pad,
        )
        if sliding_window is None:
            logits = apply_fn(views).astype(jnp.float32)
        else:
            logits = jnp.stack(
                [
                    _sliding_window_on_canvas(apply_fn, v, covered, crop, stride, batch_size)
                    for v in np.asarray(views)
                ]
            )
        combined = _unwarp(
            logits,
            _embed(rows_out, (native[0], scaled[0])),
            np.stack([_embed(c, (native[1], scaled[1])) for c in cols_out]),
            in_probs,
        )
        if accumulated is None:
            accumulated = combined
        elif in_probs:
            accumulated = jnp.logaddexp(accumulated, combined)
        else:
            accumulated = accumulated + combined
    count = len(scales) * (2 if flip else 1)
    result = accumulated - np.log(count) if in_probs else accumulated / count
    result = np.asarray(result, np.float32)[:height, :width]
    if crf:
        result = crf_refine(result, image, **(crf if isinstance(crf, Mapping) else {}))
    return result


# --------------------------------------------------------------------------- DeepLab's protocol


def scale_dimension(dim: int, scale: float) -> int:
    """DeepLab's size of a side `dim` at `scale`: `int((dim - 1) * scale + 1)` (513 -> 257)."""
    return int((float(dim) - 1.0) * scale + 1.0)


def deeplab_multiscale_logits(
    apply_fn: ApplyFn,
    canvas: np.ndarray | jax.Array,
    scales: Sequence[float] = DEEPLAB_EVAL_SCALES,
    flip: bool = True,
) -> np.ndarray:
    """Test-time scales and flips exactly as the official TF DeepLab evaluation computes them.

    For a canvas `(Hc, Wc)` (the image already padded to the evaluation crop) and each scale
    `s`, and with `flip` its mirror image as well:

        input  = canvas resized (bilinear, align_corners) to scale_dimension((Hc, Wc), s)
        logits = the network at its own resolution (its output stride, 4 with the v3+
                 decoder), resized to scale_dimension((Hc, Wc), max(1, s) / stride),
                 mirrored back, then resized to (Hc, Wc)
        total += softmax(logits)

    The two successive resizes are part of the protocol (they differ from one resize). This
    is not `multiscale_flip_logits`, which resizes the image itself and maps each prediction
    back in one step.

    Args:
      apply_fn: `[1, h, w, 3] float32 -> [1, h', w', C]` logits at the network's own
        resolution (a DeepLab model with `upsample_logits=False`); its stride is read off
        each output, `(h - 1) / (h' - 1)` rounded.
      canvas: `[Hc, Wc, 3]` image padded to the evaluation canvas (sides 32k + 1).
      scales, flip: the passes.

    Returns:
      `[Hc, Wc, C]` float32 (NumPy): log of the mean of the passes' probabilities.
    """
    check_options(scales=scales)
    canvas = jnp.asarray(canvas, jnp.float32)[None]
    canvas_hw = canvas.shape[1:3]
    total, passes = 0.0, 0
    for scale in scales:
        size = tuple(scale_dimension(d, scale) for d in canvas_hw)
        scaled = resize_bilinear(canvas, size, align_corners=True)
        for mirrored in (False, True) if flip else (False,):
            view = scaled[:, :, ::-1] if mirrored else scaled
            logits = apply_fn(view).astype(jnp.float32)
            # The network's stride, read off its output: (h - 1) / (h' - 1) for 32k + 1 sides.
            stride = max(1, round((size[0] - 1) / max(1, logits.shape[1] - 1)))
            logits_size = tuple(scale_dimension(d, max(1.0, scale) / stride) for d in canvas_hw)
            logits = resize_bilinear(logits, logits_size, True)
            if mirrored:
                logits = logits[:, :, ::-1]
            logits = resize_bilinear(logits, canvas_hw, align_corners=True)
            total = total + jax.nn.softmax(logits, axis=-1)
            passes += 1
    probabilities = np.asarray(total / passes, np.float32)[0]
    return np.log(np.maximum(probabilities, np.finfo(np.float32).tiny))


def crf_refine(
    logits: np.ndarray | jax.Array, image: np.ndarray | jax.Array, **crf_params
) -> np.ndarray:
    """Dense-CRF refinement: logits `[H, W, C]`, RGB image `[H, W, 3]` -> log-marginals.

    The image is rounded and clipped to uint8 (the CRF's bilateral kernel measures colour
    distances in 0..255 units). `crf_params` go to `jaxseg.crf.dense_crf` unchanged.

    Returns:
      `[H, W, C]` float32 (NumPy): log of the CRF's marginal probabilities.
    """
    image_u8 = np.clip(np.round(np.asarray(image, np.float32)), 0, 255).astype(np.uint8)
    probs = np.asarray(dense_crf(jnp.asarray(logits), image_u8, **crf_params), np.float32)
    return np.log(np.maximum(probs, np.finfo(np.float32).tiny))
