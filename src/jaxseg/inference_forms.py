"""The forms a trained network runs in for inference, chosen by the backend it runs on.

Networks are built with the reference ops (the same program on every backend). For inference
the choice of faster, exact forms belongs to the inference API (`jaxseg.segmenter.Segmenter`,
and through it `jaxseg.zoo.load` and `jaxseg.predict`), never to `jaxseg.ops`:

    model, variables = fast_forms_for_backend(model, variables)

On a CPU this rebuilds the model with `jaxseg.nn.conv_layers("cpu")` (1x1 convs as GEMMs,
depthwise convs per tap, mostly-padding dilated convs per region of in-bounds taps, transposed
convs by output phase; see `jaxseg.ops.cpu`), whatever conv factories it was built with. The
variables are unchanged, and so are the results up to float32 rounding (tested at 1e-5
relative for every model family). Elsewhere the model is returned as it is.

`compiler_options_for_backend()` gives the XLA options the inference program is compiled with
(`jax.jit(..., compiler_options=...)`). On a CPU it turns off XLA's YNNPACK library fusions
(`xla_cpu_experimental_ynn_fusion_type=""`), so that convolutions and matrix products run on
XLA's own (Eigen) kernels: measured faster for dilated and 1x1 convolutions of the DeepLab
networks (benchmarks/RESULTS.md); results differ by float32 rounding only.

`weights_as_constants()` says whether the inference program should close over its variables,
so that XLA sees them as compile-time constants (on a CPU: yes). A depthwise conv in the CPU
forms is one fused loop over its taps that recomputes the BatchNorm + ReLU feeding it for each
tap; with the weights as arguments that loop also reads the per-tap kernel slices and computes
the BatchNorm's `gamma * rsqrt(var + eps)` product and mean subtraction per element, while with
constants XLA folds them into one multiply-add per channel. Measured on the CPU
(benchmarks/RESULTS.md, `benchmarks/cpu_options.py`): the largest such fusion of Xception-65
(257x257x128) 290 -> 27 ms, the whole DeepLab v3+ at 513x513 1.44x faster, compile +2 s,
identical logits.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseg.nn.backend_forms import with_conv_layers
from jaxseg.nn.layers import conv_layers


def fast_forms_for_backend(
    model: nn.Module, variables: Mapping[str, Any], backend: str | None = None
) -> tuple[nn.Module, Mapping[str, Any]]:
    """`(model, variables)` in the fastest exact inference forms for `backend`.

    Args:
      model: a built Flax segmentation model (any family), unbound.
      variables: its `{"params": ..., "batch_stats": ...}`.
      backend: 'cpu', 'gpu', 'tpu'...; None: `jax.default_backend()`.

    Returns:
      The model to apply (same class, same parameter tree) and the variables to apply it with.
      The model must be applied with `train=False` for the results to be the reference's.
    """
    backend = jax.default_backend() if backend is None else backend
    if backend == "cpu":
        return with_conv_layers(model, conv_layers("cpu")), variables
    return model, variables


# XLA CPU options for inference programs; see the module docstring and benchmarks/RESULTS.md.
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def compiler_options_for_backend(backend: str | None = None) -> dict[str, str]:
    """XLA compile options for inference on `backend` (None: `jax.default_backend()`).

    Returns:
      `CPU_COMPILER_OPTIONS` on a CPU whose XLA knows them (older jaxlib versions lack the
      option: then none), `{}` elsewhere. Pass to `jax.jit(..., compiler_options=...)`.
    """
    backend = jax.default_backend() if backend is None else backend
    if backend != "cpu" or not _cpu_options_supported():
        return {}
    return dict(CPU_COMPILER_OPTIONS)


def weights_as_constants(backend: str | None = None) -> bool:
    """Whether inference programs on `backend` (None: `jax.default_backend()`) should take
    their variables as compile-time constants (closed over by the jitted function) instead of
    arguments. True on a CPU (see the module docstring); elsewhere not measured, so False."""
    backend = jax.default_backend() if backend is None else backend
    return backend == "cpu"


@functools.cache
def _cpu_options_supported() -> bool:
    """Whether this jaxlib's CPU compiler accepts `CPU_COMPILER_OPTIONS` (one tiny compile)."""
    probe = jax.jit(lambda x: x + 1, backend="cpu")
    try:
        probe.lower(jnp.zeros((), jnp.float32)).compile(compiler_options=CPU_COMPILER_OPTIONS)
    except Exception:  # noqa: BLE001 - jaxlib versions raise different types for unknown options
        return False
    return True
