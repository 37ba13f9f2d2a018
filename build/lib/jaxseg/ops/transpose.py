"""Transposed ("up-") convolution and FCN's bilinear upsampling kernel.

Our kernel is HWIO with I = the channels of the (low-resolution) input: each input pixel
`x[i, j]` stamps `x[i, j] @ kernel` onto the output at `(stride * i, stride * j)` (before
padding is cropped). TensorFlow's `tf.nn.conv2d_transpose` filter is `[h, w, out, in]`, i.e.
`ours.transpose(0, 1, 3, 2)`; with that the two agree exactly.

Two equal formulations (`impl`):

- ``"xla"``: one `lax.conv_transpose`, i.e. a conv over the zero-dilated input; XLA's GPU
  backend lowers it to cuDNN's fast backward-data kernel.
- ``"phase"``: output pixel `s*m + p` only ever meets the kernel taps `t = p + c - s*d`, so each
  of the `s*s` output phases is a small undilated conv of x; all phases are one conv to
  `s*s*O` channels, then a depth-to-space. No multiplications by inserted zeros, and its
  kernel gradient is an ordinary conv weight gradient: 3.8x faster than ``"xla"`` for FCN's
  learned k4s2 step (fwd+bwd) on CPU (benchmarks/RESULTS.md).

``"auto"`` (the default) is ``"phase"`` on CPU and ``"xla"`` elsewhere until measured.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxseg.ops._checks import check_floating, check_rank, positive_int, positive_pair

IMPLS = ("auto", "xla", "phase")


def _transpose_pads(size: int, k: int, stride: int, padding: str) -> tuple[int, int]:
    # Padding of the zero-dilated input, as in the textbook form "dilate by stride, pad, conv
    # with the flipped kernel". k - 1 on both sides is the full stamp, (size - 1) * s + k long.
    if padding == "VALID":
        return k - 1, k - 1
    # SAME is the transpose of a forward SAME conv from size * s pixels down to size: that conv
    # pads `before` pixels at the top/left, so the transpose drops them (and keeps size * s).
    before = max(k - stride, 0) // 2
    return k - 1 - before, stride - 1 + before


def conv_transpose2d(
    x: jax.Array,
    kernel: jax.Array,
    stride: int | tuple[int, int],
    padding: Literal["SAME", "VALID"] = "SAME",
    precision: lax.PrecisionLike = None,
    impl: Literal["auto", "xla", "phase"] = "auto",
) -> jax.Array:
    """Transposed convolution, equal to `tf.nn.conv2d_transpose` (see module docstring).

    Args:
      x: `[B, H, W, I]` floating activations.
      kernel: `[kh, kw, I, O]` (HWIO, I = input channels). Cast to `x.dtype`.
      stride: upsampling factor, an int or `(s_h, s_w)`.
      padding: 'SAME' gives `[B, H * s, W * s, O]`; 'VALID' gives the full stamp
        `[B, (H - 1) * s + kh, (W - 1) * s + kw, O]` (FCN: VALID then crop).
      precision: passed to the convolution.
      impl: 'auto', 'xla' or 'phase' (same result; see the module docstring).

    Returns:
      `[B, H_out, W_out, O]` in `x.dtype`.

    When `kh == kw == stride` the stamps do not overlap and `impl="phase"` is exactly a 1x1
    conv to `s * s * O` channels followed by a depth-to-space.
    """
    check_rank(x, 4, "x", "[B, H, W, I]")
    check_rank(kernel, 4, "kernel", "[kh, kw, I, O] (HWIO)")
    check_floating(x, "x")
    check_floating(kernel, "kernel")
    strides = positive_pair(stride, "stride")
    if not isinstance(padding, str) or padding.upper() not in ("SAME", "VALID"):
        raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    if kernel.shape[2] != x.shape[-1]:
        raise ValueError(
            f"kernel input channels ({kernel.shape[2]}) must equal x channels ({x.shape[-1]}); "
            "our kernel is HWIO with I = input channels (TF's conv2d_transpose filter is "
            "[h, w, out, in])"
        )
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "phase" or (impl == "auto" and jax.default_backend() == "cpu"):
        return _phase_conv_transpose(x, kernel.astype(x.dtype), strides, padding.upper(), precision)
    pads = [
        _transpose_pads(n, k, s, padding.upper())
        for n, k, s in zip(x.shape[1:3], kernel.shape[:2], strides, strict=True)
    ]
    # transpose_kernel=True flips the taps and swaps I/O of a TF-layout kernel: the exact
    # "gradient of a forward conv" pattern that XLA's GPU backend lowers to a fast kernel.
    return lax.conv_transpose(
        x,
        jnp.swapaxes(kernel.astype(x.dtype), 2, 3),
        strides=strides,
        padding=pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        transpose_kernel=True,
        precision=precision,
    )


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


def bilinear_kernel(kernel_size: int, channels: int, dtype=jnp.float32) -> jax.Array:
    """FCN's bilinear upsampling initialiser for `conv_transpose2d`.

    `factor = (k + 1) // 2`, `center = factor - 1` (k odd) or `factor - 0.5` (k even),
    `w[i, j] = (1 - |i - center| / factor) * (1 - |j - center| / factor)`, placed on the
    channel diagonal so channel c only feeds channel c. With `k = 2 * s` (k4 s2, k16 s8, ...)
    and stride s it interpolates bilinearly.

    Args:
      kernel_size: k, >= 1.
      channels: C, >= 1.
      dtype: output dtype.

    Returns:
      `[k, k, C, C]` (HWIO).
    """
    k = positive_int(kernel_size, "kernel_size")
    c = positive_int(channels, "channels")
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    taps = 1 - np.abs(np.arange(k) - center) / factor
    weights = np.outer(taps, taps)[:, :, None, None] * np.eye(c)
    return jnp.asarray(weights, dtype=dtype)
