"""The position-only (smoothness) kernel, built once per image size on the host.

Its features (x, y) / theta depend only on the image size, so the lattice is a constant: we
build it with NumPy (sorting does the deduplication and neighbour search; no compilation),
with exactly as many vertex rows as vertices, ordered lexicographically for locality. The
simplex geometry is the same code as on the device (`enclosing_simplex` with `xp=numpy`), so
the result is bit-identical to `lattice.build_lattice` on the same features.

`smoothness_filter` then picks how to apply the normalised kernel and caches the result:
for narrow kernels (theta <= 1.15 pixels) as the lattice's exact spatial stencil
(`stencil.Stencil`, faster at theta = 1: benchmarks/RESULTS.md), else through the lattice.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.crf.lattice import Lattice, NormalizedFilter, _direction_steps, normalization_factors
from jaxseg.crf.simplex import enclosing_simplex
from jaxseg.crf.stencil import Stencil, stencil_from_lattice, support_radius

# Measured per mean-field iteration at 375x500, 21 classes (2 CPU cores): the stencil wins
# 2.2x at theta = 1 (41 offsets) and 1.5x at theta = 1.15 (51), ties at theta = 1.2 (65
# offsets; more CPU time) and loses beyond, as the lattice shrinks with theta.
MAX_STENCIL_OFFSETS = 56


def grid_features(height: int, width: int, theta: float) -> np.ndarray:
    """[H*W, 2] float32 (x, y) / theta in row-major pixel order (float32 division, as the
    reference computes it: pixels exactly on lattice faces make the last bit matter)."""
    ys, xs = np.mgrid[:height, :width]
    xy = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    return xy / np.float32(theta)


def _pack(keys: np.ndarray, lowest: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Order-preserving int64 code of integer keys [..., d] within [lowest, lowest + span)."""
    code = np.zeros(keys.shape[:-1], np.int64)
    inside = np.ones(keys.shape[:-1], bool)
    for i in range(keys.shape[-1]):
        offset = keys[..., i].astype(np.int64) - lowest[i]
        inside &= (offset >= 0) & (offset < span[i])
        code = code * span[i] + np.clip(offset, 0, span[i] - 1)
    return np.where(inside, code, -1)


def lattice_from_features(features: np.ndarray) -> Lattice:
    """Lattice of features [N, d] float32 (divided by widths), built with NumPy.

    Vertices are numbered in lexicographic key order; capacity = number of vertices.
    """
    n, d = features.shape
    vertex_keys, weights = enclosing_simplex(features, xp=np)
    lowest = vertex_keys.reshape(-1, d).min(0).astype(np.int64) - (d + 1)
    span = vertex_keys.reshape(-1, d).max(0).astype(np.int64) - lowest + d + 2
    if np.log2(span.astype(np.float64)).sum() > 62:
        raise ValueError("lattice coordinates too wide to pack into int64 keys")
    codes, vertex_of_entry = np.unique(_pack(vertex_keys, lowest, span), return_inverse=True)
    num_vertices = len(codes)
    unique_keys = vertex_keys.reshape(-1, d)[
        np.unique(vertex_of_entry.ravel(), return_index=True)[1]
    ]

    neighbours = np.full((d + 1, 2, num_vertices + 1), num_vertices, np.int32)
    for j, step in enumerate(_direction_steps(d)):
        target = _pack(unique_keys + step, lowest, span)
        found = np.minimum(np.searchsorted(codes, target), num_vertices - 1)
        exists = (target >= 0) & (codes[found] == target)
        source = np.nonzero(exists)[0]
        neighbours[j, 0, source] = found[exists]
        neighbours[j, 1, found[exists]] = source
    return Lattice(
        vertices=jnp.asarray(vertex_of_entry.reshape(n, d + 1).astype(np.int32)),
        weights=jnp.asarray(weights),
        neighbours=jnp.asarray(neighbours),
        num_vertices=jnp.asarray(num_vertices, jnp.int32),
    )


def grid_lattice(height: int, width: int, theta: float) -> tuple[Lattice, jax.Array]:
    """The smoothness kernel's lattice and D^{-1/2} [H*W, 1] for an image size."""
    with jax.ensure_compile_time_eval():
        lattice = lattice_from_features(grid_features(height, width, theta))
        norm = jax.jit(normalization_factors)(lattice)[:, None]
    return lattice, norm


# Up to 8 sizes: a stencil holds (offsets) x H x W floats, ~30 MB at 375x500 and theta = 1.
@functools.lru_cache(maxsize=8)
def smoothness_filter(
    height: int, width: int, theta: float, own_kernel: bool = False
) -> Stencil | NormalizedFilter:
    """The normalised smoothness kernel Q [H*W, C] -> D^{-1/2} K D^{-1/2} Q (cached).

    A `Stencil` when it has at most MAX_STENCIL_OFFSETS offsets (with `own_kernel`, see
    `Stencil`), else the lattice filter.
    Both are pytrees, so they can be passed to jitted functions (a stencil's offsets are
    static: each set of offsets compiles once).
    """
    lattice, norm = grid_lattice(height, width, theta)
    radius_y, radius_x = support_radius(lattice, height, width)
    # The offsets lie in the (2R+1)^2 box, most of it nonzero (41 of 49 at theta = 1): skip
    # probing boxes that cannot be small enough.
    if (2 * radius_y + 1) * (2 * radius_x + 1) <= 2 * MAX_STENCIL_OFFSETS:
        with jax.ensure_compile_time_eval():
            stencil = stencil_from_lattice(lattice, norm, height, width, (radius_y, radius_x))
        if len(stencil.offsets) <= MAX_STENCIL_OFFSETS:
            return dataclasses.replace(stencil, own_kernel=own_kernel)
    return NormalizedFilter(lattice, norm)
