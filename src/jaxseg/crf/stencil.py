"""The smoothness kernel's normalised lattice filter as an exact spatially varying stencil.

The position-only lattice (`grid.grid_lattice`) depends only on the image size, so the
normalised filter Q -> D^{-1/2} K D^{-1/2} Q, with K = slice . blur . splat, is a fixed linear
operator on the pixel grid. For narrow kernels each output pixel depends on a few nearby
pixels only (41 offsets within +-3 pixels for theta_gamma = 1), so the filter is the stencil

    out[y, x, :] = sum over offsets (dy, dx) of weights[(dy, dx)][y, x] * Q[y + dy, x + dx, :]

with Q zero outside the image. Applied as a sum of shifted slices of a zero-padded Q (no
gathers or scatters), XLA fuses it into one loop: at 375x500 with 21 classes and theta = 1 a
mean-field iteration spends about half the lattice filter's time on it (benchmarks/RESULTS.md).

The weights are read off the lattice itself, so the stencil is the lattice's operator up to
float rounding, not another approximation of the Gaussian:
- `support_radius` bounds how far a pixel's output reaches by pushing pixel bounding boxes
  through splat, blur and slice; it follows every index the filter reads, so it is an upper
  bound, and entries beyond it are exactly zero;
- `stencil_from_lattice` filters periodic one-hot "probe" channels through the lattice once;
  within the window of radius R around a pixel each probe is 1 at exactly one pixel, so the
  filtered probe is the kernel entry between the two.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.crf.lattice import Lattice, lattice_filter


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: it holds an array
class Stencil:
    """A spatially varying stencil on an H x W pixel grid (a pytree; offsets are static).

    Attributes:
      weights: [H, W, K] float32, weights[y, x, k] multiplies the value at pixel
        (y + dy_k, x + dx_k); zero where that pixel lies outside the image. Offsets are
        minor: per pixel the K weights are contiguous (faster than [K, H, W] on CPU).
      offsets: K static (dy, dx) pairs.
      own_kernel: static; run the stencil as a kernel of its own that XLA cannot fuse into its
        consumer (faster on XLA's CPU backend, see `_own_kernel`); same values. Chosen by the
        caller (`dense_crf(..., stencil_form="cpu")`), never by the backend.
    """

    weights: jax.Array
    offsets: tuple[tuple[int, int], ...]
    own_kernel: bool = False

    def __call__(self, values: jax.Array) -> jax.Array:
        """Applies the stencil to values [H*W, C] (row-major pixels) -> [H*W, C] float32."""
        return self._own_kernel(values) if self.own_kernel else self._apply(values)

    def _apply(self, values: jax.Array) -> jax.Array:
        height, width, _ = self.weights.shape
        num_channels = values.shape[-1]
        ry = max(abs(dy) for dy, _ in self.offsets)
        rx = max(abs(dx) for _, dx in self.offsets)
        # Channels stay minor ([H, W, C], the mean field's layout): a [C, H, W] stencil needs
        # two transposes per call and measured slower even without them.
        padded = jnp.pad(
            values.astype(jnp.float32).reshape(height, width, num_channels),
            ((ry, ry), (rx, rx), (0, 0)),
        )
        out = sum(
            self.weights[:, :, k, None]
            * padded[ry + dy : ry + dy + height, rx + dx : rx + dx + width]
            for k, (dy, dx) in enumerate(self.offsets)
        )
        return out.reshape(height * width, num_channels)

    def _own_kernel(self, values: jax.Array) -> jax.Array:
        """`_apply` as a kernel of its own. XLA's CPU backend would otherwise fuse the stencil
        into its consumer, in the mean field the sum of messages that also gathers the other
        kernel's lattice values; that loop does not vectorise and runs the stencil slower.
        A conditional's branch is never fused into its surroundings; the predicate (are the
        weights finite?) is one XLA cannot fold, and the other branch gives the NaNs that
        non-finite weights would. (optimization_barrier is removed before fusion on CPU.)"""
        finite = jnp.isfinite(self.weights[0, 0, 0])
        nan = lambda values: jnp.full(values.shape, jnp.nan, jnp.float32)  # noqa: E731
        return jax.lax.cond(finite, self._apply, nan, values)


jax.tree_util.register_dataclass(
    Stencil, data_fields=["weights"], meta_fields=["offsets", "own_kernel"]
)


def support_radius(lattice: Lattice, height: int, width: int) -> tuple[int, int]:
    """(Ry, Rx): K[p, q] = 0 unless |q_y - p_y| <= Ry and |q_x - p_x| <= Rx.

    For a lattice over the H*W pixels in row-major order. Each vertex gets the bounding box of
    the pixels that splat to it; every blur step (in the filter's order) widens a vertex's
    box by its two neighbours' boxes, as the step adds their values; a pixel's output reads
    its d+1 vertices. Boxes over-approximate sets, so the bound is safe (and tight in
    practice: +-3 for theta = 1, the measured support).
    """
    vertices = np.asarray(lattice.vertices)  # [N, d+1]
    neighbours = np.asarray(lattice.neighbours)  # [d+1, 2, L+1]; row L: missing (stays empty)
    rows = neighbours.shape[-1]
    ys, xs = np.divmod(np.arange(height * width), width)
    # Box per vertex row as (-min y, max y, -min x, max x): a union is an elementwise max.
    box = np.full((rows, 4), -np.iinfo(np.int32).max, np.int64)
    pixel_box = np.stack([-ys, ys, -xs, xs], axis=1)
    for k in range(vertices.shape[1]):
        np.maximum.at(box, vertices[:, k], pixel_box)
    for forward, backward in neighbours:
        box = np.maximum(box, np.maximum(box[forward], box[backward]))
    reach = box[vertices].max(axis=1) - pixel_box  # [N, 4]: how far each side extends
    return int(reach[:, :2].max()), int(reach[:, 2:].max())


def stencil_from_lattice(
    lattice: Lattice, norm: jax.Array, height: int, width: int, radius: tuple[int, int]
) -> Stencil:
    """The stencil of Q -> norm * lattice_filter(lattice, norm * Q), norm [H*W, 1] = D^{-1/2}.

    `radius` must bound the support (`support_radius`). Probe channel (a, b) is 1 at the
    pixels with y % Py == a and x % Px == b (P = 2R + 1); in the window of radius R around
    p it has exactly one such pixel q, and pixels outside the window do not reach p, so the
    filtered probe at p is K[p, q]. Costs one lattice filter of Py * Px channels (host
    memory H*W*Py*Px floats); offsets whose weights are all zero are dropped.
    """
    ry, rx = radius
    period_y, period_x = 2 * ry + 1, 2 * rx + 1
    ys, xs = np.mgrid[:height, :width]
    probes = np.zeros((height, width, period_y, period_x), np.float32)
    probes[ys, xs, ys % period_y, xs % period_x] = 1.0
    probes = probes.reshape(height * width, period_y * period_x)
    entries = jax.jit(lattice_filter)(lattice, jnp.asarray(probes))
    entries = np.asarray(entries).reshape(height, width, period_y, period_x)

    norm = np.asarray(norm, np.float32).reshape(height, width)
    padded_norm = np.pad(norm, ((ry, ry), (rx, rx)))  # zero outside the image
    offsets, weights = [], []
    for dy in range(-ry, ry + 1):
        for dx in range(-rx, rx + 1):
            kernel = entries[ys, xs, (ys + dy) % period_y, (xs + dx) % period_x]
            other = padded_norm[ry + dy : ry + dy + height, rx + dx : rx + dx + width]
            weight = norm * kernel * other
            if np.any(weight != 0):
                offsets.append((dy, dx))
                weights.append(weight)
    return Stencil(jnp.asarray(np.stack(weights, axis=-1)), tuple(offsets))
