"""Locating points in the permutohedral lattice A*_d (Adams, Baek, Davis 2010).

A point with features f in R^d is embedded in the hyperplane {x in R^{d+1}: sum(x) = 0}. The
lattice points there are the integer vectors whose coordinates are all congruent mod d+1
("remainder-k" points, k = 0..d); they tile the hyperplane with congruent simplices. The
enclosing simplex of a point has one vertex of each remainder k, all found from the nearest
remainder-0 point and the ordering of the point's residuals, and barycentric weights that are
consecutive differences of the sorted residuals.
"""

import jax
import jax.numpy as jnp
import numpy as np


def _scale_factors(d: int) -> np.ndarray:
    """[d] float32 factors that scale features before the embedding.

    sqrt(2/3) (d+1) matches the lattice blur to a unit Gaussian (Adams et al. 2010);
    1/sqrt((i+1)(i+2)) normalises the i-th basis vector of the embedding. Rounding the first
    factor to float32 before the product reproduces the reference implementation bit for bit,
    which matters where points fall exactly on simplex faces (integer pixel coordinates do).
    """
    inv_std = np.float64(np.float32(np.sqrt(2.0 / 3.0) * (d + 1)))
    i = np.arange(d, dtype=np.float64)
    return (inv_std / np.sqrt((i + 1) * (i + 2))).astype(np.float32)


def _rounded_products(matrix, factors: np.ndarray, xp):
    """matrix [N, d] * factors [d], each product rounded to float32 before any later add.

    XLA's CPU backend contracts a multiply feeding an add into one FMA (a single rounding),
    which differs from the reference in the last bit; a product by a diagonal matrix is a
    separate operation whose results are rounded.
    """
    diagonal = np.diag(factors).astype(np.float32)
    if xp is np:
        return matrix @ diagonal
    return jnp.matmul(matrix, diagonal, precision=jax.lax.Precision.HIGHEST)


def enclosing_simplex(features, xp=jnp):
    """Locates each point in the lattice.

    Args:
      features: [N, d] float32, already divided by the kernel widths.
      xp: the array namespace, `jax.numpy` (default) or `numpy`; both give bit-identical
        results (float32 throughout, same operation order).

    Returns:
      vertex_keys: [N, d+1, d] int32, the first d coordinates of each simplex vertex (the last
        follows from sum = 0); every coordinate of vertex k is congruent to k mod d+1.
      weights: [N, d+1] float32, barycentric weights of the point in its simplex.
    """
    n, d = features.shape
    dp1 = d + 1
    scaled = _rounded_products(features.astype(np.float32), _scale_factors(d), xp)
    scaled_times_i = _rounded_products(scaled, np.arange(1, dp1, dtype=np.float32), xp)

    # Embed into sum(x) = 0 with the orthogonal basis (1,..,1,-i,0,..)/sqrt(i(i+1)); summing
    # from the last coordinate keeps float32 rounding identical to the reference.
    elevated = [None] * dp1
    running = xp.zeros((n,), np.float32)
    for i in range(d, 0, -1):
        elevated[i] = running - scaled_times_i[:, i - 1]
        running = running + scaled[:, i - 1]
    elevated[0] = running
    elevated = xp.stack(elevated, axis=1)  # [N, d+1]

    # Nearest remainder-0 point: round every coordinate to a multiple of d+1 ...
    down_factor = np.float32(1.0 / dp1)
    v = elevated * down_factor
    up = xp.ceil(v) * np.float32(dp1)
    down = xp.floor(v) * np.float32(dp1)
    rem0 = xp.where(up - elevated < elevated - down, up, down)
    # ... rank the residuals (0 = largest; ties go to the lower index) ...
    residual = elevated - rem0
    mine, other = residual[:, :, None], residual[:, None, :]
    other_is_lower_index = np.arange(dp1)[None, :] < np.arange(dp1)[:, None]
    rank = xp.sum((other > mine) | ((other == mine) & other_is_lower_index), axis=2)
    rank = rank.astype(np.int32)
    # ... and move the point back onto sum(x) = 0 by shifting the coordinates with the largest
    # (sum < 0) or smallest (sum > 0) residuals by d+1, which rotates the ranks.
    rem0_int = rem0.astype(np.int32)
    rank = rank + xp.sum(rem0_int, axis=1, keepdims=True) // dp1
    shift = (rank < 0).astype(np.int32) - (rank > d).astype(np.int32)
    rem0_int = rem0_int + dp1 * shift
    rank = rank + dp1 * shift

    # Barycentric weights: consecutive differences of the residuals sorted in rank order,
    # b[p] = s[d-p] - s[d+1-p] with s[m] the residual of rank m, and b[0] = s[d] + (1 - s[0])
    # (the reference's b[0] += 1 + b[d+1]; same float operations).
    residual = (elevated - rem0_int.astype(np.float32)) * down_factor
    ranks = np.arange(dp1)[None, :]
    by_rank = sum(
        xp.where(rank[:, i : i + 1] == ranks, residual[:, i : i + 1], np.float32(0))
        for i in range(dp1)
    )
    first = by_rank[:, d:] + (np.float32(1) - by_rank[:, :1])
    rest = by_rank[:, :d][:, ::-1] - by_rank[:, 1:][:, ::-1]
    weights = xp.concatenate([first, rest], axis=1)

    # Vertex k of the simplex: rem0 + k on coordinates ranked <= d-k, rem0 + k - (d+1) else.
    k = np.arange(dp1, dtype=np.int32)[None, :, None]
    offset = xp.where(rank[:, None, :d] <= d - k, k, k - dp1).astype(np.int32)
    return rem0_int[:, None, :d] + offset, weights.astype(np.float32)
