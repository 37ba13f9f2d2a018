"""Read user images the way they display: EXIF orientation applied, converted to RGB.

A phone stores a portrait photo as landscape pixels plus an EXIF "Orientation" tag that
viewers honour. Segmenting the stored pixels gives a mask rotated against the photo as people
see it, with the stored size, so every place jaxseg reads a user's image goes through
`upright` (PIL's `ImageOps.exif_transpose`): prediction, the dataset builders and
`read_rgb` for the inference API.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

EXIF_ORIENTATION = 0x0112  # the tag's number in the EXIF standard; 1 = stored as displayed


class NotAnImageError(Exception):
    """The file is not an image PIL can read."""


def exif_orientation(image: Image.Image) -> int:
    """The image's EXIF orientation, 1..8 (1, the default, when there is no tag)."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError):  # a broken EXIF block: show the stored pixels
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(image: Image.Image) -> Image.Image:
    """`image` rotated/flipped to its displayed orientation (itself when it needs nothing)."""
    if exif_orientation(image) == 1:
        return image
    return ImageOps.exif_transpose(image)


def to_rgb(image: Image.Image) -> np.ndarray:
    """A PIL image as uint8 RGB `[H, W, 3]` in its displayed orientation (see `read_rgb`)."""
    image = upright(image)
    if image.mode in ("I;16", "I;16B", "I", "F"):
        # PIL's RGB conversion would clip these to 255 instead of scaling them.
        values = np.asarray(image, np.float64)
        span = max(float(values.max()), 1.0)
        image = Image.fromarray(np.round(values / span * 255).astype(np.uint8))
    return np.asarray(image.convert("RGB"))


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 RGB `[H, W, 3]` in its displayed orientation.

    Grey, palette, RGBA and CMYK images are converted (alpha dropped); 16-bit and float greys
    are rescaled by their maximum. `H, W` are the displayed size (swapped against the stored
    size for EXIF orientations 5-8).

    Raises:
      NotAnImageError: PIL does not recognise the file as an image. A recognised but broken
        image (e.g. truncated) raises PIL's own error.
    """
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image)
    except Image.UnidentifiedImageError as e:
        raise NotAnImageError(f"{path} is not an image PIL can read") from e
