"""Write an example ``folder:DIR`` dataset of synthetic scenes, the way a user would lay it out.

    python -m jaxseg.data.demo.folder DIR [--masks colour|index] [--count 100] [--size 96x128]

``colour`` (default) writes RGB colour masks and a ``classes.csv`` (background, circle, square,
triangle; object outlines in white, listed as ``ignore``); ``index`` writes palette PNGs whose
values are the classes (255 on outlines) and a ``classes.txt``. Images are JPEGs in two nested
folders (``site_a/``, ``site_b/``), as photos from two cameras might be. No split files: the
folder is split by stem hash (:mod:`jaxseg.data.builders.folder_layout`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image

from jaxseg.data.demo import scenes as demo_scenes

CLASS_NAMES = ("background", "circle", "square", "triangle")
# Colour of each class in the colour masks (and the palette of the index masks).
CLASS_COLOURS = np.array([[0, 0, 0], [220, 20, 60], [0, 128, 255], [255, 200, 0]], np.uint8)
OUTLINE_COLOUR = (255, 255, 255)
# demo_scenes draws its class k with SHAPES[k - 1]: 1 a disc, 2 a square, 3 a triangle.


def write_folder(
    root: str | os.PathLike,
    count: int = 100,
    *,
    masks: str = "colour",
    image_size: tuple[int, int] = (96, 128),
    seed: int = 0,
) -> Path:
    """Writes ``root/{images,masks}/site_{a,b}/scene_NNN.*`` plus the class file; returns root.

    Args:
      count: number of image/mask pairs.
      masks: ``"colour"`` (RGB masks + classes.csv) or ``"index"`` (palette PNGs + classes.txt).
      image_size: ``(height, width)`` of every image.
    """
    if masks not in ("colour", "index"):
        raise ValueError(f"masks={masks!r}; choose colour or index")
    root = Path(root)
    rng = np.random.default_rng(seed)
    colours = demo_scenes.OBJECT_COLORS[: len(CLASS_NAMES) - 1]
    for i in range(count):
        sub = f"site_{'ab'[i % 2]}"
        (root / "images" / sub).mkdir(parents=True, exist_ok=True)
        (root / "masks" / sub).mkdir(parents=True, exist_ok=True)
        ours = rng.integers(1, len(CLASS_NAMES), size=rng.integers(1, 3)).tolist()
        # label: 0 background, 1..3 the shapes, 255 a 2-pixel band on outlines
        image, label = demo_scenes.draw_scene(rng, *image_size, ours, colors=colours)
        Image.fromarray(image).save(root / "images" / sub / f"scene_{i:03d}.jpg", quality=92)
        path = root / "masks" / sub / f"scene_{i:03d}.png"
        if masks == "colour":
            rgb = np.zeros((*label.shape, 3), np.uint8)
            rgb[label == 255] = OUTLINE_COLOUR
            for c, colour in enumerate(CLASS_COLOURS):
                rgb[label == c] = colour
            Image.fromarray(rgb).save(path)
        else:
            png = Image.fromarray(label, mode="L").convert("P")
            png.putpalette(CLASS_COLOURS.reshape(-1).tolist() + [255, 255, 255] * 252)
            png.save(path)
    if masks == "colour":
        lines = ["name,r,g,b"] + [
            f"{n},{r},{g},{b}" for n, (r, g, b) in zip(CLASS_NAMES, CLASS_COLOURS, strict=True)
        ]
        lines.append("ignore,{},{},{}".format(*OUTLINE_COLOUR))
        (root / "classes.csv").write_text("\n".join(lines) + "\n")
    else:
        (root / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="folder to write (must not exist yet)")
    parser.add_argument("--masks", choices=("colour", "index"), default="colour")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", default="96x128", help="HEIGHTxWIDTH")
    args = parser.parse_args(argv)
    if Path(args.root).exists():
        parser.error(f"{args.root} exists; choose a new folder (nothing is overwritten)")
    height, width = (int(v) for v in args.size.lower().split("x"))
    write_folder(args.root, args.count, masks=args.masks, image_size=(height, width))
    print(f"Wrote {args.count} images and {args.masks} masks to {args.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
