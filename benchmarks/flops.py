"""Analytic FLOP count of a JAX function from its jaxpr: convolutions and matmuls only.

    python benchmarks/flops.py --model DeepLabV3Plus --backbone resnet50 --resolution 513

Counts `2 * MACs` of every `conv_general_dilated` and `dot_general` the traced function
executes (elementwise ops, BatchNorm, softmax are left out: they are memory-bound and a few
percent of the FLOPs). This is the "model FLOPs" that utilisation (MFU) is quoted against,
independent of how XLA rewrites the graph. Convolutions count every tap of the kernel,
including taps that fall on SAME padding; transposed convolutions (`lhs_dilation > 1`) count
only the taps that meet real input pixels (the inserted zeros are not model work).

Training FLOPs are taken as 3x forward (the backward pass costs two forward-sized
contractions: input gradient and weight gradient), the usual MFU convention.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import jax
from jax.extend import core as jex_core

TRAIN_FLOPS_PER_FORWARD = 3


def _conv_flops(eqn) -> float:
    lhs, rhs = (v.aval for v in eqn.invars)
    out = eqn.outvars[0].aval
    dn = eqn.params["dimension_numbers"]
    # rhs_spec = (out feature dim, in feature dim, spatial dims...) whatever the layout string.
    rhs_spec = dn.rhs_spec
    in_per_group = rhs.shape[rhs_spec[1]]
    taps = math.prod(rhs.shape[d] for d in rhs_spec[2:])
    flops = 2.0 * math.prod(out.shape) * in_per_group * taps
    lhs_dilation = eqn.params.get("lhs_dilation") or ()
    return flops / math.prod(lhs_dilation) if lhs_dilation else flops


def _dot_flops(eqn) -> float:
    lhs = eqn.invars[0].aval
    out = eqn.outvars[0].aval
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    return 2.0 * math.prod(out.shape) * math.prod(lhs.shape[d] for d in lhs_contract)


def _sub_jaxprs(eqn):
    """(jaxpr, multiplier) for every sub-computation an equation runs."""
    for name, value in eqn.params.items():
        values = value if isinstance(value, (list, tuple)) else (value,)
        for v in values:
            inner = getattr(v, "jaxpr", v)  # ClosedJaxpr -> Jaxpr
            if isinstance(inner, jex_core.Jaxpr):
                # scan runs its body `length` times; cond runs one branch (count the largest
                # via max below); everything else (pjit, remat, custom_jvp/vjp) runs once.
                times = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
                yield name, inner, times


def jaxpr_flops(jaxpr) -> dict[str, float]:
    """`{'conv': flops, 'dot': flops}` of a (closed) jaxpr, sub-jaxprs included."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    totals = {"conv": 0.0, "dot": 0.0}
    for eqn in jaxpr.eqns:
        prim = eqn.primitive.name
        if prim == "conv_general_dilated":
            totals["conv"] += _conv_flops(eqn)
        elif prim == "dot_general":
            totals["dot"] += _dot_flops(eqn)
        subs = list(_sub_jaxprs(eqn))
        if prim == "cond" and subs:
            branch = max((jaxpr_flops(j) for _, j, _ in subs), key=lambda t: sum(t.values()))
            for k in totals:
                totals[k] += branch[k]
            continue
        for _, sub, times in subs:
            for k, v in jaxpr_flops(sub).items():
                totals[k] += times * v
    return totals


def count_flops(fn, *args, **kwargs) -> dict[str, float]:
    """Conv and matmul FLOPs of one call of `fn(*args, **kwargs)` (traced, not run)."""
    counts = jaxpr_flops(jax.make_jaxpr(lambda *a: fn(*a, **kwargs))(*args))
    counts["total"] = counts["conv"] + counts["dot"]
    return counts


def main(argv=None):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _step  # noqa: PLC0415 - keep `import flops` light for library use

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    _step.add_model_args(p)
    p.add_argument("--resolution", type=int, nargs="+", default=[513])
    args = p.parse_args(argv)
    print("| model | resolution | fwd GFLOP/img (conv) | (matmul) | train GFLOP/img (3x fwd) |")
    print("|---|---|---|---|---|")
    for res in args.resolution:
        model = _step.build_model(args, "float32")
        fwd = _step.forward_flops_per_image(model, res)
        print(
            f"| {_step.model_label(args)} | {res} | {fwd['conv'] / 1e9:.1f} | "
            f"{fwd['dot'] / 1e9:.2f} | {TRAIN_FLOPS_PER_FORWARD * fwd['total'] / 1e9:.1f} |"
        )


if __name__ == "__main__":
    main()
