"""Synthetic segmentation scenes: coloured, textured shapes on grey textured backgrounds.

Made to be *learnable in minutes on a CPU* while looking like VOC to the code: each of the 20
object classes has its own saturated colour (every pair at least 128 apart in RGB, all far from
the grey backgrounds), its own silhouette and its own texture, objects span 40-70% of the image
side, and object outlines carry a 2-pixel 255 ("ignore") band like VOC's borders.
"""

import itertools
import math

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from jaxseg.labels import IGNORE_LABEL

IGNORE = IGNORE_LABEL


def _class_colors(count: int) -> np.ndarray:
    # {0,128,255}^3 minus the greys, most saturated first: far from each other and from the
    # (nearly) grey backgrounds, so colour alone already separates the classes.
    levels = (0, 128, 255)
    colors = [c for c in itertools.product(levels, repeat=3) if len(set(c)) > 1]
    colors.sort(key=lambda c: (-np.linalg.norm(np.array(c) - np.mean(c)), c))
    return np.array(colors[:count], dtype=np.float32)


OBJECT_COLORS = _class_colors(20)  # float32 [20, 3], row k = class k + 1


# Unit-circle silhouettes, as polygons (lists of (x, y) in [-1, 1]) or ("ellipse", rx, ry).
def _regular(n: int, phase: float = 0.0, inner: float | None = None) -> list:
    points = []
    for k in range(n * (2 if inner else 1)):
        radius = inner if inner and k % 2 else 1.0
        angle = phase + math.pi * k / (n if inner else n / 2)
        points.append((radius * math.cos(angle), radius * math.sin(angle)))
    return points


SHAPES = [
    ("ellipse", 1.0, 1.0),  # disc
    [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)],  # square
    _regular(3, -math.pi / 2),  # triangle, apex up
    _regular(3, math.pi / 2),  # triangle, apex down
    _regular(4),  # diamond
    [(-1, -0.3), (-0.3, -0.3), (-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3),
     (0.3, 0.3), (0.3, 1), (-0.3, 1), (-0.3, 0.3), (-1, 0.3)],  # plus
    ("ellipse", 1.0, 0.5),  # wide ellipse
    ("ellipse", 0.5, 1.0),  # tall ellipse
    _regular(5, -math.pi / 2, inner=0.45),  # star
    _regular(6),  # hexagon
    _regular(5, -math.pi / 2),  # pentagon
    [(-1, -0.45), (1, -0.45), (1, 0.45), (-1, 0.45)],  # wide bar
    [(-0.45, -1), (0.45, -1), (0.45, 1), (-0.45, 1)],  # tall bar
    [(-0.8, -1), (-0.2, -1), (-0.2, 0.4), (0.8, 0.4), (0.8, 1), (-0.8, 1)],  # L
    [(-1, -1), (1, -1), (1, -0.4), (0.3, -0.4), (0.3, 1), (-0.3, 1), (-0.3, -0.4), (-1, -0.4)],  # T
    [(-1, 1), (-1, 0), (0, -1), (1, 0), (1, 1)],  # house
    _regular(8, math.pi / 8),  # octagon
    [(-1, -0.35), (0.1, -0.35), (0.1, -0.9), (1, 0), (0.1, 0.9), (0.1, 0.35), (-1, 0.35)],  # arrow
    [(-1, 0.5), (1, 0.5), (0.5, -0.6), (-0.5, -0.6)],  # trapezoid
    _regular(4, math.pi / 4, inner=0.35),  # four-point star
]  # fmt: skip

# Texture of class k: (pattern, period in px); amplitude is small next to the colour gaps.
_PATTERNS = ("flat", "hstripe", "vstripe", "diag", "checker", "dots", "antidiag", "grid", "rings")
TEXTURES = [(p, period) for period in (4, 7) for p in (*_PATTERNS, "noise")]


def _pattern(kind: str, period: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Texture in [-1, 1], ``float32 [h, w]``."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = 2 * np.pi / period
    if kind == "flat":
        return np.zeros((h, w), np.float32)
    if kind == "hstripe":
        return np.sign(np.sin(y * phase))
    if kind == "vstripe":
        return np.sign(np.sin(x * phase))
    if kind == "diag":
        return np.sign(np.sin((x + y) * phase / 1.4))
    if kind == "antidiag":
        return np.sign(np.sin((x - y) * phase / 1.4))
    if kind == "checker":
        return np.sign(np.sin(x * phase) * np.sin(y * phase))
    if kind == "dots":
        return (np.sin(x * phase) * np.sin(y * phase) > 0.6).astype(np.float32) * 2 - 1
    if kind == "grid":
        return ((np.abs(np.sin(x * phase)) < 0.3) | (np.abs(np.sin(y * phase)) < 0.3)) * 2.0 - 1
    if kind == "rings":
        return np.sign(np.sin(np.hypot(x - w / 2, y - h / 2) * phase))
    return rng.uniform(-1, 1, (h, w)).astype(np.float32)


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Grey, slightly tinted, textured background ``float32 [h, w, 3]``."""
    level = rng.uniform(50, 205)
    tint = rng.uniform(-12, 12, size=3)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.integers(4)
    if kind == 0:  # linear gradient
        angle = rng.uniform(0, 2 * np.pi)
        field = (np.cos(angle) * x / w + np.sin(angle) * y / h) * 50
    elif kind == 1:  # blotchy low-frequency noise
        coarse = rng.uniform(-35, 35, (4, 5))
        field = ndimage.zoom(coarse, (h / 4, w / 5), order=1)[:h, :w]
        field = np.pad(field, ((0, h - field.shape[0]), (0, w - field.shape[1])), mode="edge")
    elif kind == 2:  # wide stripes, like walls or floors
        angle = rng.uniform(0, np.pi)
        field = 18 * np.sign(np.sin((np.cos(angle) * x + np.sin(angle) * y) / rng.uniform(3, 9)))
    else:  # horizon: two tones
        field = np.where(y > rng.uniform(0.3, 0.7) * h, 30.0, -30.0)
    grey = level + field + rng.normal(0, 5, (h, w))
    return grey[..., None] + tint


def _silhouette(shape, h: int, w: int, cy: float, cx: float, radius: float, angle: float):
    """Boolean mask ``[h, w]`` of one shape centred at (cy, cx) with the given radius."""
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    if shape[0] == "ellipse":
        _, rx, ry = shape
        draw.ellipse(
            [cx - rx * radius, cy - ry * radius, cx + rx * radius, cy + ry * radius], fill=1
        )
    else:
        cos, sin = math.cos(angle), math.sin(angle)
        points = [
            (cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos)) for x, y in shape
        ]
        draw.polygon(points, fill=1)
    return np.asarray(canvas, dtype=bool)


def draw_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    classes: list[int],
    *,
    colors: np.ndarray = OBJECT_COLORS,
    border: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``image uint8 [H, W, 3]`` and ``label uint8 [H, W]`` (0 = background,
    ``c`` = object of class ``c`` (1-based), 255 = 2-pixel band on outlines when ``border``).

    Args:
      classes: class of each object, drawn in order (later objects occlude earlier ones).
      colors: ``float32 [C, 3]``, colour of class ``c`` at row ``c - 1``.
    """
    image = _background(height, width, rng)
    label = np.zeros((height, width), np.uint8)
    side = min(height, width)
    for cls in classes:
        radius = rng.uniform(0.2, 0.34) * side
        cy = rng.uniform(0.55 * radius, height - 0.55 * radius)
        cx = rng.uniform(0.55 * radius, width - 0.55 * radius)
        shape = SHAPES[(cls - 1) % len(SHAPES)]
        mask = _silhouette(shape, height, width, cy, cx, radius, rng.uniform(-0.15, 0.15))
        kind, period = TEXTURES[(cls - 1) % len(TEXTURES)]
        texture = _pattern(kind, period, height, width, rng)
        shade = rng.uniform(-10, 10)
        color = colors[cls - 1] + shade + 28 * texture[..., None]
        image[mask] = color[mask]
        label[mask] = cls
    if border:
        # Outline band like VOC's: pixels whose 3x3 neighbourhood holds two different labels.
        edge = ndimage.maximum_filter(label, size=3) != ndimage.minimum_filter(label, size=3)
        label[edge] = IGNORE
    return np.clip(image, 0, 255).round().astype(np.uint8), label
