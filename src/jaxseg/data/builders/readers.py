"""Read and check raw dataset files on the host (Pillow, scipy) while a builder prepares them.

Masks are decoded here, not by TFDS: a palette PNG handed to TFDS as a path would be decoded
by TensorFlow to the palette's *grey levels* instead of the class indices, silently wrong.
Each check raises :class:`DataError` naming the file, so a bad file stops preparation at once.
"""

import io
import os

import numpy as np
import scipy.io
from PIL import Image

from jaxseg import images
from jaxseg.data.errors import DataError
from jaxseg.data.label_tables import IGNORE_LABEL


def read_image(path: str | os.PathLike) -> tuple[bytes, tuple[int, int]]:
    """Encoded bytes of an RGB image file and its ``(height, width)``, after a full decode check.

    The bytes are stored unchanged (no JPEG re-encoding loss); decoding them once here catches
    truncated or corrupt files, which TensorFlow's decoder might otherwise half-decode later.
    The exception is an image with an EXIF orientation (a phone photo): TensorFlow ignores the
    tag, so it is rotated to its displayed orientation here (`jaxseg.images.upright`) and
    re-encoded (JPEG quality 95, or PNG), and the size returned is the displayed one.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
        with Image.open(io.BytesIO(data)) as image:
            if images.exif_orientation(image) != 1:
                return _upright_bytes(image)
            size = image.size  # before draft(), which shrinks it
            if image.format == "JPEG":
                # DCT-domain downscaling: still reads every byte of the scan, 10x cheaper.
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(
            f"{path}: cannot decode image ({err}). The file is truncated or corrupt: extract "
            "the dataset archive again (or delete this file and its name from the split list)."
        ) from err
    return data, (size[1], size[0])


def _upright_bytes(image: Image.Image) -> tuple[bytes, tuple[int, int]]:
    """Re-encoded bytes of `image` turned to its displayed orientation, and its (height, width)."""
    image_format = "JPEG" if image.format == "JPEG" else "PNG"
    image.load()
    rotated = images.upright(image).convert("RGB")
    buffer = io.BytesIO()
    rotated.save(buffer, format=image_format, **({"quality": 95} if image_format == "JPEG" else {}))
    return buffer.getvalue(), (rotated.height, rotated.width)


def read_index_png(path: str | os.PathLike) -> np.ndarray:
    """Class-index mask ``uint8 [H, W]`` from a palette ('P') or greyscale ('L') PNG.

    For a palette PNG ``np.asarray`` yields the palette *indices*, which are VOC's classes.
    Colour (RGB) masks are refused: mapping colours back to classes is lossy and dataset specific.
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            mask = np.asarray(image)
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: cannot decode mask PNG ({err}); extract it again.") from err
    if mode not in ("P", "L"):
        raise DataError(
            f"{path}: mask PNG has mode {mode!r}; expected a palette ('P') or greyscale ('L') "
            "PNG whose pixel values are class indices (e.g. VOC SegmentationClass or "
            "SegmentationClassAug). Colour-coded masks are not supported."
        )
    return mask.astype(np.uint8, copy=False)


def read_sbd_mat(path: str | os.PathLike) -> np.ndarray:
    """SBD class mask ``uint8 [H, W]`` from ``benchmark_RELEASE/dataset/cls/<name>.mat``."""
    path = os.fspath(path)
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
        segmentation = mat["GTcls"].Segmentation
    except FileNotFoundError:
        raise
    except (KeyError, AttributeError) as err:
        raise DataError(
            f"{path}: no GTcls.Segmentation in this .mat; is it an SBD cls file?"
        ) from err
    except (OSError, ValueError, TypeError) as err:
        raise DataError(f"{path}: cannot read .mat file ({err}); extract SBD again.") from err
    segmentation = np.asarray(segmentation)
    if segmentation.ndim != 2 or segmentation.min() < 0 or segmentation.max() > 255:
        raise DataError(f"{path}: GTcls.Segmentation is not a 2-D 0..255 class map.")
    return segmentation.astype(np.uint8)


def check_mask(
    mask: np.ndarray,
    image_hw: tuple[int, int],
    num_classes: int,
    mask_path: str | os.PathLike,
    image_path: str | os.PathLike,
) -> None:
    """Raise :class:`DataError` unless ``mask`` matches the image size and holds only
    ``0..num_classes-1`` or the ignore label 255."""
    if tuple(mask.shape[:2]) != tuple(image_hw):
        raise DataError(
            f"{os.fspath(mask_path)}: mask is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image "
            f"{os.fspath(image_path)} is {image_hw[0]}x{image_hw[1]}; the pair does not belong "
            "together. Replace the mask or drop the example from the split list."
        )
    values = np.unique(mask)
    bad = values[(values >= num_classes) & (values != IGNORE_LABEL)]
    if bad.size:
        raise DataError(
            f"{os.fspath(mask_path)}: mask values {bad.tolist()} are neither classes "
            f"0..{num_classes - 1} nor the ignore label {IGNORE_LABEL}; the file is not a class-"
            "index mask of this dataset (a colour-converted or differently labelled mask?)."
        )


def encode_png(mask: np.ndarray) -> bytes:
    """Greyscale PNG bytes of a ``uint8 [H, W]`` mask (TFDS stores it; TF decodes it exactly)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8)).save(
        buffer, format="PNG", compress_level=3
    )
    return buffer.getvalue()
