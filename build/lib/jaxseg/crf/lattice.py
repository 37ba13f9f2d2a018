"""Permutohedral lattice (Adams, Baek, Davis, Eurographics 2010) for Gaussian filtering in JAX.

Filtering `values` [N, C] with the Gaussian kernel exp(-|f_i - f_j|^2 / 2) over features
`f` [N, d] is approximated in three steps:

1. **splat**: each point spreads its value over the d+1 vertices of its enclosing lattice
   simplex with barycentric weights (`simplex.enclosing_simplex`);
2. **blur**: along each of the d+1 lattice directions the vertex values are convolved with
   [1/2, 1, 1/2] (missing neighbours count as zero);
3. **slice**: each point reads back the barycentric-weighted sum of its vertices.

The lattice (which vertices exist, their neighbours, every point's vertices and weights)
depends only on the features, so `build_lattice` runs once per image and `lattice_filter`
reuses it for all channels and all mean-field iterations: filtering is d+1 scatter-adds,
d+1 gather steps and d+1 gathers over precomputed indices.

Shapes are static. A lattice over N points has M <= N*(d+1) vertices; its `capacity` L >= M
fixes the size of the vertex arrays, and the blur costs O(L). `locate_vertices` finds M
without fixing L, so callers can pick a tight capacity (see `dense_crf`).

The raw output approximates the Gaussian sum up to a factor that depends on d and on how the
points are spread; dense CRFs normalise the kernel (`normalization_factors`), cancelling it.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.crf import hashing
from jaxseg.crf.simplex import enclosing_simplex


class Vertices(NamedTuple):
    """Deduplicated simplex vertices of N points (independent of the lattice capacity).

    Attributes:
      keys: [N*(d+1), d] int32, vertex keys, entry i*(d+1)+k is vertex k of point i.
      hash_set: the keys' hash set (finds neighbours).
      index_of_entry: [N*(d+1)] int32, vertex index (0..M-1) of each entry.
      weights: [N, d+1] float32, barycentric weights; NaN if hashing failed.
      num_vertices: [] int32, M.
    """

    keys: jax.Array
    hash_set: hashing.HashSet
    index_of_entry: jax.Array
    weights: jax.Array
    num_vertices: jax.Array


class Lattice(NamedTuple):
    """A permutohedral lattice with capacity L (static: `neighbours.shape[-1] - 1`).

    Vertex value arrays have L + 1 rows; row L stays zero and stands for missing neighbours.

    Attributes:
      vertices: [N, d+1] int32, vertex index of each corner of a point's simplex.
      weights: [N, d+1] float32, barycentric weights (sum to 1); NaN if the build failed or
        M > L (so results are NaN, never silently wrong).
      neighbours: [d+1, 2, L+1] int32, per direction the vertex one step forward / backward
        (L where it does not exist).
      num_vertices: [] int32, M, vertices that exist (rows 0..M-1).
    """

    vertices: jax.Array
    weights: jax.Array
    neighbours: jax.Array
    num_vertices: jax.Array

    @property
    def capacity(self) -> int:
        return self.neighbours.shape[-1] - 1


def locate_vertices(features: jax.Array) -> Vertices:
    """Finds and deduplicates the simplex vertices of features [N, d] (divided by widths)."""
    n, d = features.shape
    vertex_keys, weights = enclosing_simplex(features)
    keys = vertex_keys.reshape(n * (d + 1), d)
    # A no-op update makes XLA materialise the keys once; otherwise it fuses their
    # computation into every consumer (hashing, equality checks) and recomputes it there.
    keys = jax.lax.dynamic_update_slice(keys, keys[:1], (0, 0))
    hash_set = hashing.insert(keys)
    # The first entry of each key (its representative) numbers the vertices in scan order.
    is_first = hash_set.representative == jnp.arange(keys.shape[0], dtype=jnp.int32)
    index_of_first = jnp.cumsum(is_first, dtype=jnp.int32) - 1
    index_of_entry = index_of_first[jnp.maximum(hash_set.representative, 0)]
    weights = jnp.where(jnp.all(hash_set.representative >= 0), weights, jnp.nan)
    return Vertices(keys, hash_set, index_of_entry, weights, index_of_first[-1] + 1)


def _direction_steps(d: int) -> np.ndarray:
    """[d+1, d] int32: stored coordinates of the lattice step along each direction.

    Direction j moves by (d+1) e_j - (1, ..., 1); for j = d only the implicit last coordinate
    gains d+1.
    """
    steps = -np.ones((d + 1, d), np.int32)
    steps[np.arange(d), np.arange(d)] += d + 1
    return steps


def _locality_order(vertex_keys: jax.Array, num_vertices: jax.Array) -> jax.Array:
    """[L] permutation (new -> old) that sorts vertices by their first three coordinates.

    The blur gathers each vertex's neighbours; sorted keys put most of them in nearby rows,
    which makes the blur ~25% faster than first-appearance order. Coordinates are offset,
    divided by d+1 (they are congruent mod d+1) and clipped to 10 bits, so the code fits one
    int32 key; wider ranges only coarsen the order. Missing rows (>= M) go last.
    """
    capacity, d = vertex_keys.shape
    valid = jnp.arange(capacity) < num_vertices
    code = jnp.zeros((capacity,), jnp.int32)
    for i in range(min(d, 3)):
        coord = vertex_keys[:, i]
        lowest = jnp.min(jnp.where(valid, coord, np.iinfo(np.int32).max))
        code = code * 1024 + jnp.clip((coord - lowest) // (d + 1), 0, 1023)
    code = jnp.where(valid, code, np.iinfo(np.int32).max)
    _, order = jax.lax.sort((code, jnp.arange(capacity, dtype=jnp.int32)), num_keys=1)
    return order


def connect(vertices: Vertices, capacity: int) -> Lattice:
    """Indexes the vertices into arrays of `capacity` rows and finds their neighbours."""
    num_entries, d = vertices.keys.shape
    n = num_entries // (d + 1)
    entry = jnp.arange(num_entries, dtype=jnp.int32)
    is_first = vertices.hash_set.representative == entry
    first_entry = jnp.zeros((capacity,), jnp.int32)
    first_entry = first_entry.at[jnp.where(is_first, vertices.index_of_entry, capacity)].set(
        entry, mode="drop"
    )
    fits = vertices.num_vertices <= capacity  # else indices could leave the arrays
    order = _locality_order(vertices.keys[first_entry], vertices.num_vertices)
    first_entry = first_entry[order]
    rank = jnp.zeros((capacity,), jnp.int32).at[order].set(jnp.arange(capacity, dtype=jnp.int32))
    vertex_of_entry = jnp.where(fits, rank[jnp.minimum(vertices.index_of_entry, capacity - 1)], 0)
    vertex_keys = vertices.keys[first_entry]  # [L, d]; rows >= M are junk, masked below
    is_vertex = (jnp.arange(capacity) < vertices.num_vertices) & fits
    steps = jnp.asarray(_direction_steps(d))
    rows = jnp.arange(capacity + 1, dtype=jnp.int32)

    def link(j, neighbours):
        # Forward neighbour p + step_j by lookup; q = p + step  <=>  p = q - step, so the
        # backward neighbours follow by inverting the forward ones.
        found = hashing.lookup(vertices.hash_set, vertices.keys, vertex_keys + steps[j])
        exists = is_vertex & (found >= 0)
        forward = jnp.where(exists, vertex_of_entry[jnp.maximum(found, 0)], capacity)
        forward = jnp.pad(forward, (0, 1), constant_values=capacity)  # [L+1]
        target = jnp.where(forward < capacity, forward, capacity + 1)
        backward = jnp.full((capacity + 1,), capacity, jnp.int32).at[target].set(rows, mode="drop")
        return neighbours.at[j].set(jnp.stack([forward, backward]))

    neighbours = jnp.zeros((d + 1, 2, capacity + 1), jnp.int32)
    return Lattice(
        vertices=vertex_of_entry.reshape(n, d + 1),
        weights=jnp.where(fits, vertices.weights, jnp.nan),
        neighbours=jax.lax.fori_loop(0, d + 1, link, neighbours),
        num_vertices=vertices.num_vertices,
    )


def build_lattice(features: jax.Array, capacity: int | None = None) -> Lattice:
    """Builds the lattice of features [N, d] (divided by the kernel widths).

    `capacity` defaults to the worst case N*(d+1). Outside jit, pass
    `int(locate_vertices(features).num_vertices)` for the tightest lattice.
    """
    n, d = features.shape
    return connect(locate_vertices(features), capacity or n * (d + 1))


def lattice_filter(lattice: Lattice, values: jax.Array) -> jax.Array:
    """Approximate Gaussian filtering of values [N, C] -> [N, C] (see the module docstring)."""
    d_plus_1 = lattice.vertices.shape[1]
    values = values.astype(jnp.float32)
    vertices, weights = lattice.vertices, lattice.weights  # [N, d+1]

    # The splat is a loop: unrolled, XLA materialises all d+1 weighted copies of the values at
    # once (memory) and runs ~2x slower. Its columns are read in place: transposed tables
    # would be copied on every call, i.e. every mean-field iteration.
    def splat(k, grid):
        corner = lambda table: jax.lax.dynamic_index_in_dim(table, k, 1, keepdims=False)  # noqa: E731
        update = corner(weights)[:, None] * values
        return grid.at[corner(vertices)].add(update, mode="promise_in_bounds")

    grid = jnp.zeros((lattice.capacity + 1, values.shape[1]), jnp.float32)
    grid = jax.lax.fori_loop(0, d_plus_1, splat, grid)
    # The blur is unrolled, each step one fusion that writes a fresh array; a loop would copy
    # the carried grid every step. Left alone, XLA fuses consecutive steps and recomputes each
    # step's rows three times per later step; `optimization_barrier` does not stop that on
    # the CPU (it is removed before fusion), a no-op in-place update of one row does.
    for j in range(d_plus_1):
        forward, backward = lattice.neighbours[j, 0], lattice.neighbours[j, 1]
        gather = lambda index, grid=grid: grid.at[index].get(mode="promise_in_bounds")  # noqa: E731
        grid = grid + 0.5 * (gather(forward) + gather(backward))
        grid = jax.lax.dynamic_update_slice(grid, grid[:1], (0, 0))
    return sum(
        weights[:, k, None] * grid.at[vertices[:, k]].get(mode="promise_in_bounds")
        for k in range(d_plus_1)
    )


def normalization_factors(lattice: Lattice) -> jax.Array:
    """[N] float32 D^{-1/2}, D = the filtered all-ones vector, for symmetric normalisation.

    A dense CRF then applies D^{-1/2} K D^{-1/2} (the default NORMALIZE_SYMMETRIC of
    Kraehenbuehl's reference code), which also cancels the lattice's overall scale.
    """
    ones = jnp.ones((lattice.vertices.shape[0], 1), jnp.float32)
    return 1.0 / jnp.sqrt(lattice_filter(lattice, ones)[:, 0] + 1e-20)


class NormalizedFilter(NamedTuple):
    """Q [N, C] -> D^{-1/2} K D^{-1/2} Q through a lattice: a dense CRF kernel (callable).

    Attributes:
      lattice: the kernel's lattice over N points.
      norm: [N, 1] float32 D^{-1/2} (`normalization_factors`).
    """

    lattice: Lattice
    norm: jax.Array

    def __call__(self, values: jax.Array) -> jax.Array:
        return self.norm * lattice_filter(self.lattice, self.norm * values)
