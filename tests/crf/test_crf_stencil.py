"""The smoothness kernel's stencil is the lattice's normalised filter, exactly.

Two independent references: the lattice filter itself (`NormalizedFilter`, what the stencil
replaces) on random values, and the kernel matrix S^T B_d ... B_0 S assembled with scipy from
the lattice's tables, which checks the support bound and every stencil weight.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.crf.grid import grid_lattice, smoothness_filter
from jaxseg.crf.lattice import NormalizedFilter
from jaxseg.crf.stencil import Stencil, stencil_from_lattice, support_radius

_apply = jax.jit(lambda operator, values: operator(values))


@pytest.mark.parametrize(
    "height, width, theta",
    [(1, 5, 1.0), (19, 26, 0.3), (19, 26, 1.0), (40, 31, 1.15), (9, 11, 2.0)],
)
def test_stencil_equals_lattice_filter(height, width, theta):
    lattice, norm = grid_lattice(height, width, theta)
    stencil = stencil_from_lattice(
        lattice, norm, height, width, support_radius(lattice, height, width)
    )
    values = jnp.asarray(np.random.default_rng(0).random((height * width, 3)), jnp.float32)
    expected = np.asarray(_apply(NormalizedFilter(lattice, norm), values))
    np.testing.assert_allclose(np.asarray(_apply(stencil, values)), expected, rtol=1e-5, atol=1e-6)
    if theta == 1.0:  # the non-CPU path, without the conditional that keeps the kernel apart
        np.testing.assert_allclose(
            np.asarray(jax.jit(stencil._apply)(values)), expected, rtol=1e-5, atol=1e-6
        )


def _kernel_matrix(lattice, num_pixels: int) -> np.ndarray:
    """Dense K = S^T B_d ... B_0 S [N, N] float64 from the lattice's tables (scipy)."""
    sparse = pytest.importorskip("scipy.sparse")
    vertices, weights = np.asarray(lattice.vertices), np.asarray(lattice.weights)
    neighbours = np.asarray(lattice.neighbours)  # [d+1, 2, L+1]; row L is the zero row
    rows = neighbours.shape[-1]
    pixels = np.repeat(np.arange(num_pixels), vertices.shape[1])
    splat = sparse.csr_matrix(
        (weights.ravel().astype(np.float64), (vertices.ravel(), pixels)), (rows, num_pixels)
    )
    grid = splat
    for forward, backward in neighbours:
        half = np.full(rows, 0.5)
        step = sparse.identity(rows, format="csr")
        step = step + sparse.csr_matrix((half, (np.arange(rows), forward)), (rows, rows))
        step = step + sparse.csr_matrix((half, (np.arange(rows), backward)), (rows, rows))
        grid = step @ grid
    return (splat.T @ grid).toarray()


def test_stencil_weights_match_the_assembled_kernel():
    height, width = 14, 17
    lattice, norm = grid_lattice(height, width, 1.0)
    kernel = _kernel_matrix(lattice, height * width)
    ys, xs = np.divmod(np.arange(height * width), width)
    row, col = np.nonzero(kernel)
    radius = support_radius(lattice, height, width)
    assert radius == (np.abs(ys[col] - ys[row]).max(), np.abs(xs[col] - xs[row]).max())

    stencil = stencil_from_lattice(lattice, norm, height, width, radius)
    n = 1 / np.sqrt(kernel.sum(1))
    expected = n[:, None] * kernel * n[None, :]
    dense = np.zeros_like(expected)
    weights = np.asarray(stencil.weights).reshape(height * width, -1)
    for k, (dy, dx) in enumerate(stencil.offsets):
        inside = (ys + dy >= 0) & (ys + dy < height) & (xs + dx >= 0) & (xs + dx < width)
        dense[np.nonzero(inside)[0], ((ys + dy) * width + xs + dx)[inside]] = weights[inside, k]
        assert np.all(weights[~inside, k] == 0)
    np.testing.assert_allclose(dense, expected, rtol=1e-5, atol=1e-7)


def test_narrow_kernels_use_the_stencil_wide_ones_the_lattice():
    assert isinstance(smoothness_filter(19, 26, 1.0), Stencil)
    assert len(smoothness_filter(19, 26, 1.0).offsets) == 41
    assert isinstance(smoothness_filter(19, 26, 3.0), NormalizedFilter)


def test_cpu_stencil_form_is_chosen_explicitly_and_gives_the_same_values():
    reference = smoothness_filter(19, 26, 1.0)
    cpu = smoothness_filter(19, 26, 1.0, own_kernel=True)
    assert not reference.own_kernel and cpu.own_kernel
    values = np.random.default_rng(0).random((19 * 26, 3), np.float32)
    np.testing.assert_allclose(cpu(values), reference(values), rtol=1e-6, atol=1e-7)
    # The CPU form is a conditional XLA never fuses into its consumer; the reference is not.
    prims = lambda f: {e.primitive.name for e in jax.make_jaxpr(f)(values).jaxpr.eqns}  # noqa: E731
    assert "cond" in prims(cpu) and "cond" not in prims(reference)


def test_dense_crf_stencil_forms_agree_and_unknown_form_is_named():
    from jaxseg.crf import dense_crf

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(12, 15, 3)).astype(np.float32)
    image = rng.integers(0, 256, (12, 15, 3), dtype=np.uint8)
    kw = dict(w_bilateral=0.0, num_iterations=3)
    np.testing.assert_allclose(
        dense_crf(logits, image, stencil_form="cpu", **kw),
        dense_crf(logits, image, **kw),
        rtol=1e-6,
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="stencil_form.*'gpu'"):
        dense_crf(logits, image, stencil_form="gpu")
