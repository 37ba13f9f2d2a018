"""Training/eval image transforms as tf.data graph ops, seeded and stateless.

Every random choice comes from ``tf.random.stateless_*`` with a seed derived from
``(run seed, example position)``, so a transform depends only on *which* example of the stream
it is, never on thread timing or how often the pipeline was restarted: that is what makes
``train_stream`` resumable at any step.

Conventions: images are ``uint8`` or ``float32 [H, W, 3]`` RGB in 0..255 until normalised;
labels are ``uint8 [H, W]`` with 255 = ignore. Spatial ops move image and label together.
"""

import tensorflow as tf

from jaxseg.data.normalization import (  # noqa: F401  (re-exported)
    DEFAULT_SCALES,
    NORMALIZATIONS,
    Normalization,
    get_normalization,
)
from jaxseg.labels import IGNORE_LABEL  # noqa: F401  (re-exported)


def normalize(image: tf.Tensor, normalization: str | Normalization) -> tf.Tensor:
    """``[..., H, W, 3]`` RGB 0..255 (any dtype) -> normalised ``float32`` (BGR if Caffe)."""
    norm = get_normalization(normalization)
    image = tf.cast(image, tf.float32)
    shape = tf.shape(image)
    # TF's CPU kernels broadcast a length-3 channel vector slowly (5x a plain pass); viewing
    # the image as rows of W*3 values and tiling the per-channel constants along a row is fast.
    rows = tf.reshape(image, tf.concat([shape[:-2], [-1]], axis=0))
    mean = tf.tile(tf.constant(norm.mean, tf.float32), shape[-2:-1])
    inv_std = tf.tile(tf.constant([1.0 / s for s in norm.std], tf.float32), shape[-2:-1])
    image = tf.reshape((rows - mean) * inv_std, shape)
    return tf.reverse(image, [-1]) if norm.bgr else image


def scaled_size(
    height: tf.Tensor, width: tf.Tensor, scale: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """``round(height * scale)``, ``round(width * scale)`` (halves up), at least 1."""

    def one(dim):
        return tf.maximum(tf.cast(tf.floor(tf.cast(dim, tf.float32) * scale + 0.5), tf.int32), 1)

    return one(height), one(width)


def nearest_source_index(start, stop, in_size, out_size) -> tf.Tensor:
    """Source index of output pixels ``start..stop-1`` when resizing ``in_size`` -> ``out_size``
    by nearest neighbour with half-pixel centres: ``min(floor((i + 0.5) * in / out), in - 1)``
    in float32, the rule of ``tf.image.resize(..., "nearest")``. Returns ``int32 [stop - start]``.
    """
    step = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
    position = (tf.cast(tf.range(start, stop), tf.float32) + 0.5) * step
    return tf.minimum(tf.cast(tf.floor(position), tf.int32), in_size - 1)


def scale_image_and_label(
    image: tf.Tensor, label: tf.Tensor, scale: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Resize by ``scale``: image bilinear (half-pixel centres, no antialias) -> ``float32``,
    label nearest neighbour (class ids must not be interpolated) -> ``uint8``.

    Args:
      image: ``[H, W, 3]``; label: ``uint8 [H, W]``; scale: float scalar.
    Returns:
      image ``float32 [h, w, 3]``, label ``uint8 [h, w]`` with ``h, w = scaled_size(H, W, scale)``.
    """
    shape = tf.shape(label)
    size = tf.stack(scaled_size(shape[0], shape[1], scale))
    image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")
    label = tf.image.resize(label[..., None], size, method="nearest")[..., 0]
    return image, label


def pad_to_size(
    image: tf.Tensor,
    label: tf.Tensor,
    height: int,
    width: int,
    image_fill=(0.0, 0.0, 0.0),
    label_fill: int = IGNORE_LABEL,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Pad bottom/right to at least ``height x width``; image with ``image_fill`` (per channel,
    e.g. the dataset mean so padding is 0 after normalising), label with ``label_fill``."""
    shape = tf.shape(label)
    pad_h, pad_w = tf.maximum(height - shape[0], 0), tf.maximum(width - shape[1], 0)
    paddings = [[0, pad_h], [0, pad_w]]
    if any(image_fill):
        fill = tf.constant(image_fill, image.dtype)
        image = tf.pad(image - fill, paddings + [[0, 0]]) + fill
    else:  # the common case (normalised images): skip two full passes
        image = tf.pad(image, paddings + [[0, 0]])
    label = tf.pad(label, paddings, constant_values=tf.cast(label_fill, label.dtype))
    return image, label


def sample_crop_params(
    seed: tf.Tensor,
    height: tf.Tensor,
    width: tf.Tensor,
    crop_size: tuple[int, int],
    scales=DEFAULT_SCALES,
) -> dict[str, tf.Tensor]:
    """The random choices of :func:`train_transform` for one example.

    Returns ``int32`` scalars ``scaled_height``, ``scaled_width`` (image size after the random
    scale), ``top``, ``left`` (crop offset in the scaled image padded to at least the crop size)
    and a ``bool`` ``flip``.
    """
    # One draw for all four choices: each stateless op costs ~0.1 ms of per-op overhead in
    # tf.data, as much as resizing a small image.
    u = tf.random.stateless_uniform([4], tf.cast(seed, tf.int64))
    scales = tf.constant(scales, tf.float32)
    scale = tf.gather(
        scales, tf.minimum(tf.cast(u[0] * scales.shape[0], tf.int32), scales.shape[0] - 1)
    )
    scaled_height, scaled_width = scaled_size(height, width, scale)

    def offset(u_k, scaled, crop):
        choices = tf.maximum(scaled, crop) - crop + 1  # offsets into the padded scaled image
        return tf.minimum(tf.cast(u_k * tf.cast(choices, tf.float32), tf.int32), choices - 1)

    return {
        "scaled_height": scaled_height,
        "scaled_width": scaled_width,
        "top": offset(u[1], scaled_height, crop_size[0]),
        "left": offset(u[2], scaled_width, crop_size[1]),
        "flip": u[3] < 0.5,
    }


def scale_crop_flip(
    image: tf.Tensor,
    label: tf.Tensor,
    params: dict[str, tf.Tensor],
    crop_size: tuple[int, int],
    normalization: str | Normalization = "imagenet",
) -> tuple[tf.Tensor, tf.Tensor]:
    """Mirror if ``flip``, resize to the scaled size, pad to the crop size (bottom/right; image:
    the mean, label: 255), crop at ``(top, left)``, normalise.

    Equals mirroring -> :func:`scale_image_and_label` -> :func:`pad_to_size` -> crop ->
    :func:`normalize` with ``params``' choices, in fewer passes: mirroring the small
    ``uint8`` source costs less than mirroring the float crop, only the crop window is
    normalised, and only the part of the window outside the image is padded.

    Args:
      image: ``uint8 [H, W, 3]``; label: ``uint8 [H, W]``; params: :func:`sample_crop_params`.
    Returns:
      image ``float32 [crop_h, crop_w, 3]`` normalised, label ``uint8 [crop_h, crop_w]``.
    """
    crop_h, crop_w = crop_size
    # tf.reverse, not x[:, ::-1]: TF's negative-stride slice is ~20x slower on CPU.
    image, label = tf.cond(
        params["flip"],
        lambda: (tf.reverse(image, [1]), tf.reverse(label, [1])),
        lambda: (image, label),
    )
    scaled_height, scaled_width = params["scaled_height"], params["scaled_width"]
    top, left = params["top"], params["left"]
    # tf.image.resize beats crop_and_resize / scale_and_translate on CPU, so the image is
    # resized whole and sliced, even at 2x. Its nearest-neighbour kernel is slow, though, so
    # the label gathers just the window's source rows/columns with the same rule.
    image = tf.image.resize(image, tf.stack([scaled_height, scaled_width]), method="bilinear")
    image = normalize(image[top : top + crop_h, left : left + crop_w], normalization)
    shape = tf.shape(label)
    rows = nearest_source_index(
        top, tf.minimum(top + crop_h, scaled_height), shape[0], scaled_height
    )
    cols = nearest_source_index(
        left, tf.minimum(left + crop_w, scaled_width), shape[1], scaled_width
    )
    label = tf.gather(tf.gather(label, rows), cols, axis=1)
    image, label = pad_to_size(image, label, crop_h, crop_w)  # 0 = the mean after normalising
    image.set_shape([crop_h, crop_w, 3])
    label.set_shape([crop_h, crop_w])
    return image, label


def train_transform(
    image: tf.Tensor,
    label: tf.Tensor,
    seed: tf.Tensor,
    crop_size: tuple[int, int],
    normalization: str | Normalization = "imagenet",
    scales=DEFAULT_SCALES,
    flip: bool = True,
) -> tuple[tf.Tensor, tf.Tensor]:
    """DeepLab training augmentation: random horizontal flip, random scale (bilinear image,
    nearest label), pad with the mean / 255 to the crop size, random crop, normalise.

    Args:
      image: ``uint8 [H, W, 3]``; label: ``uint8 [H, W]``; seed: ``int64 [2]`` (stateless).
      crop_size: ``(height, width)`` of the output.
      scales: scale choices, drawn uniformly; flip: allow mirroring.
    Returns:
      image ``float32 [crop_h, crop_w, 3]`` normalised, label ``uint8 [crop_h, crop_w]``.
    """
    shape = tf.shape(label)
    params = sample_crop_params(seed, shape[0], shape[1], crop_size, scales)
    if not flip:
        params["flip"] = tf.constant(False)
    return scale_crop_flip(image, label, params, crop_size, normalization)


def eval_transform(
    image: tf.Tensor,
    label: tf.Tensor,
    bucket: tuple[int, int],
    normalization: str | Normalization = "imagenet",
) -> tuple[tf.Tensor, tf.Tensor]:
    """Normalise and pad (bottom/right) to the ``bucket`` size; labels keep their native
    resolution, the padding is 255 so it is never counted.

    Returns image ``float32 [bucket_h, bucket_w, 3]`` (padding = 0 = the mean), label
    ``uint8 [bucket_h, bucket_w]``.
    """
    image, label = pad_to_size(normalize(image, normalization), label, *bucket)
    image.set_shape([bucket[0], bucket[1], 3])
    label.set_shape([bucket[0], bucket[1]])
    return image, label
