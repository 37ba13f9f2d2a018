"""`conv_transpose2d` in its phase form, faster on CPU (see `jaxseg.ops.cpu`).

Output pixel `s*m + p` only ever meets the kernel taps `t = p + c - s*d`, so each of the `s*s`
output phases is a small undilated conv of x; all phases are one conv to `s*s*O` channels, then
a depth-to-space. No multiplications by inserted zeros, and its kernel gradient is an ordinary
conv weight gradient (XLA CPU's transposed-conv gradients are slow). When `kh == kw == stride`
the stamps do not overlap and it is exactly a 1x1 conv to `s * s * O` channels followed by a
depth-to-space.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxseg.ops.transpose import check_transpose_args


def conv_transpose2d(
    x: jax.Array,
    kernel: jax.Array,
    stride: int | tuple[int, int],
    padding: Literal["SAME", "VALID"] = "SAME",
    precision: lax.PrecisionLike = None,
) -> jax.Array:
    """`jaxseg.ops.conv_transpose2d` computed phase by phase; same arguments, same result.

    Args:
      x: `[B, H, W, I]` floating activations.
      kernel: `[kh, kw, I, O]` (HWIO, I = input channels). Cast to `x.dtype`.
      stride: upsampling factor, an int or `(s_h, s_w)`.
      padding: 'SAME' (`[B, H * s, W * s, O]`) or 'VALID' (the full stamp).
      precision: passed to the convolution.

    Returns:
      `[B, H_out, W_out, O]` in `x.dtype`, as `jaxseg.ops.conv_transpose2d`.
    """
    strides, padding = check_transpose_args(x, kernel, stride, padding)
    return _phase_conv_transpose(x, kernel.astype(x.dtype), strides, padding, precision)


def _phase_taps(size: int, k: int, s: int, padding: str):
    """Static tap table of one spatial axis for the phase form.

    Output pixel `s*m + p` (p < s) of the cropped output is full-stamp position `s*m + p + c`
    (c = `before` of SAME, 0 for VALID) and sums `x[m + d] * kernel[p + c - s*d]` over the
    offsets d with the tap in `[0, k)`.

    Returns:
      taps: `[n, s]` int32, tap of offset `d_lo + u` for phase p (k = none: a zero tap).
      d_lo: the smallest offset.
      num_phases_out: outputs per phase M (the output is M*s long before the final crop).
      out_size: the output length.
    """
    c = max(k - s, 0) // 2 if padding == "SAME" else 0
    out_size = size * s if padding == "SAME" else (size - 1) * s + k
    offsets = [d for d in range(-k - 1, k + c + 1) if any(0 <= p + c - s * d < k for p in range(s))]
    d_lo = min(offsets)
    taps = np.full((max(offsets) - d_lo + 1, s), k, np.int32)
    for u, d in enumerate(range(d_lo, max(offsets) + 1)):
        for p in range(s):
            if 0 <= p + c - s * d < k:
                taps[u, p] = p + c - s * d
    return taps, d_lo, -(-out_size // s), out_size


def _phase_conv_transpose(x, kernel, strides, padding: str, precision) -> jax.Array:
    """`conv_transpose2d` as one undilated VALID conv to s_h*s_w*O channels + depth_to_space."""
    (sh, sw), (kh, kw) = strides, kernel.shape[:2]
    taps_h, lo_h, m_h, out_h = _phase_taps(x.shape[1], kh, sh, padding)
    taps_w, lo_w, m_w, out_w = _phase_taps(x.shape[2], kw, sw, padding)
    # xp[j] = x[j + d_lo]; a VALID conv with n taps then yields the M outputs of each phase.
    # lax.pad takes negative padding (crops) where an offset range starts inside x.
    pads = [
        (-lo, m + len(taps) - 1 - size + lo, 0)
        for lo, m, taps, size in ((lo_h, m_h, taps_h, x.shape[1]), (lo_w, m_w, taps_w, x.shape[2]))
    ]
    xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), *pads, (0, 0, 0)])
    padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))  # index k: the zero tap
    phase = padded[taps_h[:, :, None, None], taps_w[None, None, :, :]]  # [nh, sh, nw, sw, I, O]
    # Output channel (py * sw + px) * O + o is pixel (py, px) of its s_h x s_w block, channel o.
    phase = jnp.transpose(phase, (0, 2, 4, 1, 3, 5)).reshape(
        len(taps_h), len(taps_w), kernel.shape[2], sh * sw * kernel.shape[3]
    )
    y = lax.conv_general_dilated(
        xp, phase, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision
    )
    b, h, w, _ = y.shape  # depth-to-space with separate row and column blocks
    y = y.reshape(b, h, w, sh, sw, -1).transpose(0, 1, 3, 2, 4, 5).reshape(b, h * sh, w * sw, -1)
    return y[:, :out_h, :out_w]
