"""Turn one (image file, mask file) pair into a checked TFDS example, in parallel threads."""

import concurrent.futures
import os
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from jaxseg.data.builders import readers


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """``uint8 [H, W]`` class mask from a class-index PNG or an SBD ``.mat``."""
    return (
        readers.read_sbd_mat(path)
        if os.fspath(path).endswith(".mat")
        else readers.read_index_png(path)
    )


def make_example(
    image_path,
    mask_path,
    num_classes: int,
    map_mask: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict:
    """``{"image": encoded bytes, "label": PNG bytes of uint8 [H, W], "file_name": str}``.

    ``map_mask`` turns raw mask values into classes/255 (e.g. CamVid's void 11 -> 255) before
    the checks, which run on what will be stored.
    """
    image_bytes, image_hw = readers.read_image(image_path)
    mask = read_mask(mask_path)
    if map_mask is not None:
        mask = map_mask(mask)
    readers.check_mask(mask, image_hw, num_classes, mask_path, image_path)
    return {
        "image": image_bytes,
        "label": readers.encode_png(mask),
        "file_name": os.path.basename(os.fspath(image_path)),
    }


def parallel_map(fn: Callable, items: Iterable, chunk: int = 64) -> Iterator:
    """``map(fn, items)`` on a thread pool, in order, holding at most ``chunk`` results.

    Pillow and zlib release the GIL while decoding, so threads speed up preparing VOC's 12k
    files several times over on a multi-core host without the memory of an unbounded map.
    """
    items = list(items)
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for start in range(0, len(items), chunk):
            yield from pool.map(fn, items[start : start + chunk])
