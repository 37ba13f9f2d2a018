"""Trace-time argument checks shared by the ops.

Every check reads only static information (shapes, dtypes, Python ints), so a bad call fails
with a `ValueError` naming the argument when the function is traced, not deep inside XLA.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

Padding = str | Sequence[tuple[int, int]]


def check_rank(x, rank: int | tuple[int, ...], name: str, layout: str = "") -> None:
    ranks = (rank,) if isinstance(rank, int) else rank
    if jnp.ndim(x) not in ranks:
        want = " or ".join(str(r) for r in ranks)
        hint = f" {layout}" if layout else ""
        raise ValueError(f"{name} must have rank {want}{hint}, got shape {jnp.shape(x)}")


def check_floating(x, name: str) -> None:
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise ValueError(f"{name} must be a floating-point array, got dtype {jnp.result_type(x)}")


def positive_int(value, name: str) -> int:
    # bool is an int subclass; True as a rate is almost certainly a bug.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def positive_pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of ints, each >= 1, as `(along H, along W)`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return positive_int(value, name), positive_int(value, name)
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        return positive_int(value[0], name), positive_int(value[1], name)
    raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")


def size_pair(size, name: str = "size") -> tuple[int, int]:
    """A spatial size `(height, width)` of positive ints."""
    if isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2:
        return positive_int(size[0], name), positive_int(size[1], name)
    raise ValueError(f"{name} must be a pair (height, width) of positive ints, got {size!r}")


def padding_arg(padding: Padding, name: str = "padding") -> str | tuple[tuple[int, int], ...]:
    """'SAME', 'VALID' (any case) or explicit `((top, bottom), (left, right))`."""
    if isinstance(padding, str):
        upper = padding.upper()
        if upper not in ("SAME", "VALID"):
            raise ValueError(
                f"{name} must be 'SAME', 'VALID' or two (lo, hi) pairs, got {padding!r}"
            )
        return upper
    try:
        pairs = tuple((int(lo), int(hi)) for lo, hi in padding)
    except (TypeError, ValueError):
        pairs = ()
    if len(pairs) != 2 or any(p < 0 for pair in pairs for p in pair):
        raise ValueError(
            f"{name} must be 'SAME', 'VALID' or ((top, bottom), (left, right)) of ints >= 0, "
            f"got {padding!r}"
        )
    return pairs


def same_pads(size: int, k_eff: int, stride: int) -> tuple[int, int]:
    # TensorFlow/XLA SAME: output ceil(size / stride), the odd pixel of padding goes after.
    out = -(-size // stride)
    total = max((out - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2
