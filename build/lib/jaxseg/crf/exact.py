"""Exact O(N^2) Gaussian filtering and dense CRF, the references for small images.

The permutohedral lattice approximates sum_j exp(-|f_i - f_j|^2 / 2) v_j; here the sum is
computed directly from the full N x N kernel matrix, so it only suits small N (a few
thousand points). Tests use it to bound the lattice's error, and `exact_dense_crf` shows what
the approximation changes in the CRF itself.
"""

import jax
import jax.numpy as jnp

from jaxseg.crf.mean_field import Pairwise, mean_field
from jaxseg.crf.params import CRFParams, check_inputs
from jaxseg.crf.postprocess import pixel_features

MAX_POINTS = 8192  # the kernel matrix is N^2 float32: 256 MiB here


def gaussian_kernel_matrix(features: jax.Array) -> jax.Array:
    """[N, N] float32 exp(-|f_i - f_j|^2 / 2) for features [N, d] (divided by the widths).

    Squared distances are summed per dimension from differences, not expanded as
    |a|^2 + |b|^2 - 2ab, which would lose precision for large coordinates.
    """
    if features.shape[0] > MAX_POINTS:
        raise ValueError(f"exact filtering is O(N^2); N={features.shape[0]} > {MAX_POINTS}")
    features = features.astype(jnp.float32)
    squared = sum(
        (features[:, None, i] - features[None, :, i]) ** 2 for i in range(features.shape[1])
    )
    return jnp.exp(-0.5 * squared)


def exact_filter(features: jax.Array, values: jax.Array, *, normalize: bool = False) -> jax.Array:
    """Gaussian filtering of values [N, C] over features [N, d] -> [N, C], self included.

    With `normalize`, applies D^{-1/2} K D^{-1/2} with D = K 1 (what the dense CRF uses).
    """
    kernel = gaussian_kernel_matrix(features)
    matmul = lambda a, b: jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)  # noqa: E731
    if not normalize:
        return matmul(kernel, values.astype(jnp.float32))
    norm = 1.0 / jnp.sqrt(jnp.sum(kernel, axis=1, keepdims=True))
    return norm * matmul(kernel, norm * values.astype(jnp.float32))


def exact_dense_crf(
    logits: jax.Array,
    image: jax.Array,
    *,
    w_bilateral: float = 4.0,
    theta_alpha: float = 67.0,
    theta_beta: float = 3.0,
    w_gaussian: float = 3.0,
    theta_gamma: float = 1.0,
    num_iterations: int = 10,
) -> jax.Array:
    """`dense_crf` with exact kernels: logits [H, W, C], image [H, W, 3] -> [H, W, C].

    Same energy and normalisation (symmetric, self included) as `dense_crf` and pydensecrf;
    only the Gaussian filtering is exact. H * W must not exceed MAX_POINTS.
    """
    params = CRFParams(
        w_bilateral, theta_alpha, theta_beta, w_gaussian, theta_gamma, num_iterations
    )
    check_inputs(logits, image, batched=False)
    height, width, num_classes = logits.shape
    unary = -jax.nn.log_softmax(jnp.reshape(logits, (-1, num_classes)).astype(jnp.float32))
    terms = []
    if params.w_gaussian > 0:
        features = pixel_features(height, width, None, params.theta_gamma)
        terms.append(Pairwise(params.w_gaussian, _exact_term(features)))
    if params.w_bilateral > 0:
        features = pixel_features(
            height, width, jnp.asarray(image), params.theta_alpha, params.theta_beta
        )
        terms.append(Pairwise(params.w_bilateral, _exact_term(features)))
    q = mean_field(unary, terms, params.num_iterations)
    return q.reshape(height, width, num_classes)


def _exact_term(features: jax.Array):
    kernel = gaussian_kernel_matrix(features)
    norm = 1.0 / jnp.sqrt(jnp.sum(kernel, axis=1, keepdims=True))
    scaled = norm * kernel * norm.T  # D^{-1/2} K D^{-1/2}, formed once for all iterations
    return lambda q: jnp.matmul(scaled, q, precision=jax.lax.Precision.HIGHEST)
