"""Turning a network's strides into atrous rates so it stops downsampling at `output_stride`."""

from __future__ import annotations

from collections.abc import Sequence


def check_output_stride(output_stride: int, allowed: Sequence[int], who: str) -> int:
    """Raises a ValueError naming `who` unless `output_stride` is one of `allowed`."""
    if isinstance(output_stride, bool) or output_stride not in tuple(allowed):
        raise ValueError(
            f"{who}: output_stride must be one of {tuple(allowed)}, got {output_stride!r}"
        )
    return output_stride


def atrous_schedule(
    strides: Sequence[int], output_stride: int, initial_stride: int = 1
) -> list[tuple[int, int]]:
    """TF-slim's rule (`stack_blocks_dense`, MobileNet's `output_stride`) as `(stride, rate)`s.

    Once the running stride equals `output_stride`, a unit's stride `s` is replaced by 1; that
    unit still runs at the rate reached so far and every later unit at `rate * s`, which keeps
    each later kernel's receptive field what it was with the stride.

    Args:
      strides: the stride of each unit, in order.
      output_stride: the stride at which to stop downsampling.
      initial_stride: the stride of the input to the first unit (e.g. 2 after a strided stem).

    Returns:
      `[(stride, rate)]` per unit.
    """
    current, rate, plan = initial_stride, 1, []
    for stride in strides:
        if current == output_stride and stride > 1:
            plan.append((1, rate))
            rate *= stride
        else:
            plan.append((stride, rate))
            current *= stride
    if current != output_stride:
        raise ValueError(
            f"output_stride={output_stride} is not reachable: the network's strides "
            f"{tuple(strides)} after an input stride of {initial_stride} reach only {current}"
        )
    return plan
