"""Enclosing simplices of the permutohedral lattice: textbook properties, NumPy == JAX."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.crf.simplex import enclosing_simplex


def _features(n, d, seed, scale=7.0):
    rng = np.random.default_rng(seed)
    features = rng.uniform(-scale, scale, (n, d)).astype(np.float32)
    # Integer and half-integer coordinates put points on simplex faces (ties in the ranks).
    features[: n // 4] = np.round(features[: n // 4] * 2) / 2
    return features


def _elevate(features):
    """Independent float64 embedding: sqrt(2/3)(d+1) times the orthonormal basis of sum(x)=0
    with vectors (1, .., 1, -i, 0, ..) / sqrt(i (i+1)), i = 1..d (Adams et al. 2010)."""
    d = features.shape[1]
    basis = np.zeros((d + 1, d))
    for i in range(1, d + 1):
        basis[:i, i - 1] = 1.0
        basis[i, i - 1] = -i
        basis[:, i - 1] /= np.sqrt(i * (i + 1))
    return np.sqrt(2.0 / 3.0) * (d + 1) * features.astype(np.float64) @ basis.T


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_barycentric_weights_reconstruct_the_point(d):
    features = _features(2000, d, seed=d)
    keys, weights = jax.jit(enclosing_simplex)(jnp.asarray(features))
    keys, weights = np.asarray(keys, np.float64), np.asarray(weights, np.float64)
    full = np.concatenate([keys, -keys.sum(-1, keepdims=True)], axis=-1)  # [N, d+1, d+1]

    assert weights.min() >= -1e-5
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    elevated = _elevate(features)
    reconstructed = np.einsum("nk,nkc->nc", weights, full)
    np.testing.assert_allclose(reconstructed, elevated, atol=2e-3 * (1 + np.abs(elevated).max()))


@pytest.mark.parametrize("d", [2, 5])
def test_vertices_are_lattice_points_of_each_remainder(d):
    keys, _ = jax.jit(enclosing_simplex)(jnp.asarray(_features(500, d, seed=10 + d)))
    keys = np.asarray(keys)
    for k in range(d + 1):
        assert np.all(np.mod(keys[:, k], d + 1) == k)
    # The implicit last coordinate (minus the sum) obeys the same congruence.
    last = -keys.sum(-1)
    assert np.all(np.mod(last, d + 1) == np.arange(d + 1) % (d + 1))
    # Consecutive vertices differ by one lattice step: +1 everywhere except one coordinate.
    step = np.diff(np.concatenate([keys, last[..., None]], -1), axis=1)
    assert np.all(np.sort(step, axis=-1)[..., 1:] == 1)
    assert np.all(np.sort(step, axis=-1)[..., 0] == -d)


@pytest.mark.parametrize("d", [2, 5])
def test_numpy_and_jax_agree_bit_for_bit(d):
    features = _features(3000, d, seed=20 + d)
    keys_jax, weights_jax = jax.jit(enclosing_simplex)(jnp.asarray(features))
    keys_np, weights_np = enclosing_simplex(features, xp=np)
    np.testing.assert_array_equal(np.asarray(keys_jax), keys_np)
    np.testing.assert_array_equal(np.asarray(weights_jax), weights_np)
