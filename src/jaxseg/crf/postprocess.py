"""Dense CRF post-processing of segmentation logits, matched to pydensecrf.

    probs = dense_crf(logits, image)                      # [H, W, C] -> [H, W, C]
    probs = dense_crf_batch(logits, images, **dataclasses.asdict(DEEPLAB_V1_LARGEFOV))

Semantics are those of pydensecrf (Kraehenbuehl's reference code, version 2) called as

    d.setUnaryEnergy(-log softmax(logits))
    d.addPairwiseGaussian(sxy=theta_gamma, compat=w_gaussian)
    d.addPairwiseBilateral(sxy=theta_alpha, srgb=theta_beta, rgbim=image, compat=w_bilateral)
    Q = d.inference(num_iterations)

i.e. Potts compatibility, symmetric kernel normalisation D^{-1/2} K D^{-1/2}, and both kernels
being the permutohedral lattice's approximation in float32 (the smoothness kernel may be applied
as that lattice operator's exact stencil; tests/crf measure the agreement).

How it runs: the smoothness kernel depends only on the image size; it is built once per size
on the host and cached (`grid.smoothness_filter`): for narrow kernels (the DeepLab v2 setting
theta_gamma = 1) as the lattice's exact spatial stencil, a sum of shifted slices, else as a
lattice. The appearance kernel's lattice is built on the device per image; its vertex count
M is data-dependent while array shapes must be static, so
- called eagerly, `dense_crf` locates the vertices, reads M, and runs the mean field with
  the smallest capacity tier >= M (each tier compiles once per image size);
- under an outer `jax.jit` it cannot read M, and switches at run time between capacity N
  (enough for photographs) and the worst case N*(d+1).
Weights, widths and the iteration count are traced, so changing them does not recompile.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.crf import lattice as lat
from jaxseg.crf.grid import smoothness_filter
from jaxseg.crf.mean_field import Pairwise, mean_field
from jaxseg.crf.params import CRFParams, check_inputs

_APPEARANCE_DIMS = 5  # x, y, r, g, b


def pixel_features(
    height: int, width: int, image: jax.Array | None, theta_xy, theta_rgb=1.0
) -> jax.Array:
    """Kernel features [H*W, 2] (x, y)/theta_xy, or [H*W, 5] with (r, g, b)/theta_rgb.

    Row-major pixel order, float32 divisions as in the reference: pixels exactly on lattice
    faces make the lattice sensitive to the last bit.
    """
    ys, xs = np.mgrid[:height, :width]
    xy = jnp.asarray(np.stack([xs.ravel(), ys.ravel()], axis=1), jnp.float32)
    features = xy / jnp.asarray(theta_xy, jnp.float32)
    if image is None:
        return features
    rgb = image.reshape(height * width, 3).astype(jnp.float32)
    return jnp.concatenate([features, rgb / jnp.asarray(theta_rgb, jnp.float32)], axis=1)


def capacity_tiers(num_pixels: int) -> list[int]:
    """Static appearance-lattice capacities, smallest first; the blur costs O(capacity).

    Photographs need 0.1-1 vertices per pixel (0.6-0.95 at 500x375 with theta_alpha=67,
    theta_beta=3; 0.15-0.35 with DeepLab v1's 121/5), the worst case is 6 per pixel.
    """
    fractions = (1 / 8, 1 / 4, 1 / 2, 1, 2, _APPEARANCE_DIMS + 1)
    return sorted({max(1, math.ceil(num_pixels * f)) for f in fractions})


def _locate(image: jax.Array, theta_alpha: jax.Array, theta_beta: jax.Array) -> lat.Vertices:
    height, width, _ = image.shape
    return lat.locate_vertices(pixel_features(height, width, image, theta_alpha, theta_beta))


def _refine(logits, vertices, grid, weights, num_iterations, capacity: int) -> jax.Array:
    """Mean field on logits [H, W, C]; `vertices` / `grid` are None for an absent kernel.

    `grid` is the smoothness kernel (`grid.smoothness_filter`), `vertices` the appearance
    kernel's located vertices, connected here into a lattice of `capacity` rows.
    """
    num_classes = logits.shape[-1]
    unary = -jax.nn.log_softmax(logits.reshape(-1, num_classes).astype(jnp.float32), axis=-1)
    terms = []
    if grid is not None:
        terms.append(Pairwise(weights[0], grid))
    if vertices is not None:
        lattice = lat.connect(vertices, capacity)
        norm = lat.normalization_factors(lattice)[:, None]
        terms.append(Pairwise(weights[1], lat.NormalizedFilter(lattice, norm)))
    return mean_field(unary, terms, num_iterations).reshape(logits.shape)


_locate_jit = jax.jit(_locate)
_locate_batch_jit = jax.jit(jax.vmap(_locate, in_axes=(0, None, None)))
_refine_jit = jax.jit(_refine, static_argnames=("capacity",))


@functools.partial(jax.jit, static_argnames=("capacity",))
def _refine_batch_jit(logits, vertices, grid, weights, num_iterations, capacity):
    def one(logits, vertices):
        return _refine(logits, vertices, grid, weights, num_iterations, capacity)

    if vertices is None:
        return jax.vmap(lambda x: one(x, None))(logits)
    return jax.vmap(one)(logits, vertices)


def _refine_any_capacity(logits, image, grid, weights, thetas, num_iterations, appearance):
    """Single-program form for use under jit: picks the capacity tier at run time."""
    if not appearance:
        return _refine(logits, None, grid, weights, num_iterations, 0)
    vertices = _locate(image, *thetas)
    num_pixels = logits.shape[0] * logits.shape[1]
    tiers = [num_pixels, num_pixels * (_APPEARANCE_DIMS + 1)]
    branches = [
        functools.partial(_refine, logits, vertices, grid, weights, num_iterations, capacity)
        for capacity in tiers
    ]
    return jax.lax.switch((vertices.num_vertices > tiers[0]).astype(jnp.int32), branches)


@functools.partial(jax.jit, static_argnames=("appearance",))
def _dense_crf_traced(logits, image, grid, weights, thetas, num_iterations, appearance):
    return _refine_any_capacity(logits, image, grid, weights, thetas, num_iterations, appearance)


@functools.partial(jax.jit, static_argnames=("appearance",))
def _dense_crf_batch_traced(logits, image, grid, weights, thetas, num_iterations, appearance):
    def one(args):
        return _refine_any_capacity(*args, grid, weights, thetas, num_iterations, appearance)

    return jax.lax.map(one, (logits, image))


STENCIL_FORMS = ("reference", "cpu")


def _prepare(params: CRFParams, logits, image, batched: bool, stencil_form: str):
    if stencil_form not in STENCIL_FORMS:
        raise ValueError(f"stencil_form must be one of {STENCIL_FORMS}, got {stencil_form!r}")
    check_inputs(logits, image, batched=batched)
    height, width = np.shape(logits)[-3:-1]
    grid = None
    if params.w_gaussian > 0:
        grid = smoothness_filter(
            int(height), int(width), float(params.theta_gamma), stencil_form == "cpu"
        )
    weights = jnp.asarray([params.w_gaussian, params.w_bilateral], jnp.float32)
    thetas = (
        jnp.asarray(params.theta_alpha, jnp.float32),
        jnp.asarray(params.theta_beta, jnp.float32),
    )
    iterations = jnp.asarray(params.num_iterations, jnp.int32)
    # Inside jit even a new constant (iterations) is a tracer: the lattice size is unreadable.
    traced = any(isinstance(x, jax.core.Tracer) for x in (logits, image, iterations))
    return jnp.asarray(logits), jnp.asarray(image), grid, weights, thetas, iterations, traced


def dense_crf(
    logits: jax.Array,
    image: jax.Array,
    *,
    w_bilateral: float = 4.0,
    theta_alpha: float = 67.0,
    theta_beta: float = 3.0,
    w_gaussian: float = 3.0,
    theta_gamma: float = 1.0,
    num_iterations: int = 10,
    stencil_form: str = "reference",
) -> jax.Array:
    """Refines per-pixel class scores with a fully connected CRF (mean-field inference).

    Args:
      logits: [H, W, C] float class scores at image resolution; unary = -log softmax(logits).
      image: [H, W, 3] uint8, or float with values in [0, 255], RGB.
      w_bilateral, theta_alpha, theta_beta: weight, position width (pixels) and colour width
        of the appearance kernel.
      w_gaussian, theta_gamma: weight and position width (pixels) of the smoothness kernel.
      num_iterations: mean-field iterations (0 returns softmax(logits)).
      stencil_form: how a narrow smoothness kernel's stencil runs: 'reference' (fused by XLA
        like any expression) or 'cpu' (a kernel of its own, faster on XLA's CPU backend;
        `jaxseg.crf.stencil.Stencil`). Same values.

    Returns:
      [H, W, C] float32 probabilities (each pixel sums to 1).

    Parameters are Python numbers, validated on the host (ValueError naming the argument).
    Works under jit; NaN logits raise for concrete arrays only (under jit they give NaN).
    """
    params = CRFParams(
        w_bilateral, theta_alpha, theta_beta, w_gaussian, theta_gamma, num_iterations
    )
    logits, image, grid, weights, thetas, iterations, traced = _prepare(
        params, logits, image, batched=False, stencil_form=stencil_form
    )
    appearance = params.w_bilateral > 0
    if traced:
        return _dense_crf_traced(logits, image, grid, weights, thetas, iterations, appearance)
    vertices, capacity = None, 0
    if appearance:
        vertices = _locate_jit(image, *thetas)
        capacity = _tier(int(vertices.num_vertices), logits.shape[0] * logits.shape[1])
    return _refine_jit(logits, vertices, grid, weights, iterations, capacity=capacity)


def dense_crf_batch(
    logits: jax.Array, image: jax.Array, stencil_form: str = "reference", **params
) -> jax.Array:
    """`dense_crf` over a batch: logits [B, H, W, C], image [B, H, W, 3] -> [B, H, W, C].

    Keyword arguments (and `stencil_form`) as for `dense_crf`. Called eagerly, the batch is
    vectorised with `jax.vmap` at the capacity tier of its largest lattice; under jit, images
    run one after another (`jax.lax.map`), each switching capacity at run time.
    """
    params = CRFParams(**params)
    logits, image, grid, weights, thetas, iterations, traced = _prepare(
        params, logits, image, batched=True, stencil_form=stencil_form
    )
    appearance = params.w_bilateral > 0
    if traced:
        return _dense_crf_batch_traced(logits, image, grid, weights, thetas, iterations, appearance)
    vertices, capacity = None, 0
    if appearance:
        vertices = _locate_batch_jit(image, *thetas)
        most = int(jnp.max(vertices.num_vertices))
        capacity = _tier(most, logits.shape[1] * logits.shape[2])
    return _refine_batch_jit(logits, vertices, grid, weights, iterations, capacity=capacity)


def _tier(num_vertices: int, num_pixels: int) -> int:
    return next(c for c in capacity_tiers(num_pixels) if num_vertices <= c)
