"""Helpers shared by the benchmark scripts: timing, device facts, FLOPs, memory, reporting.

Benchmarks print numbers; they never assert on them. Everything here is plain functions so a
reader can lift one (say `time_call`) into a notebook.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata

# Dense (no sparsity) peak throughput per chip in TFLOP/s, from the vendors' data sheets.
# "float32" on NVIDIA is the TF32 tensor-core rate: XLA's default matmul/conv precision on
# Ampere and later uses TF32 for float32 inputs. Matched against `device.device_kind` by
# case-insensitive substring, first match wins, so more specific names come first.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("h200", {"bfloat16": 989.4, "float16": 989.4, "float32": 494.7}),
    ("h100 pcie", {"bfloat16": 756.0, "float16": 756.0, "float32": 378.0}),
    ("h100", {"bfloat16": 989.4, "float16": 989.4, "float32": 494.7}),  # SXM
    ("gh200", {"bfloat16": 989.4, "float16": 989.4, "float32": 494.7}),
    ("b200", {"bfloat16": 2250.0, "float16": 2250.0, "float32": 1100.0}),
    ("a100", {"bfloat16": 312.0, "float16": 312.0, "float32": 156.0}),
    ("l40s", {"bfloat16": 362.0, "float16": 362.0, "float32": 183.0}),
    ("l4", {"bfloat16": 121.0, "float16": 121.0, "float32": 60.0}),
    ("a10", {"bfloat16": 125.0, "float16": 125.0, "float32": 62.5}),
    ("v100", {"float16": 125.0, "float32": 15.7}),
    # TPUs: per chip; float32 matmuls run as multi-pass bf16, so only bf16 is listed.
    ("tpu v6", {"bfloat16": 918.0}),  # Trillium ("TPU v6 lite")
    ("tpu v5p", {"bfloat16": 459.0}),
    ("tpu v5 lite", {"bfloat16": 197.0}),  # v5e
    ("tpu v5e", {"bfloat16": 197.0}),
    ("tpu v5", {"bfloat16": 459.0}),
    ("tpu v4", {"bfloat16": 275.0}),
    ("tpu v3", {"bfloat16": 123.0}),
)


def peak_tflops(device_kind: str, dtype: str) -> float | None:
    """Peak dense TFLOP/s of one chip for `dtype`, or None when unknown (e.g. CPU)."""
    kind = device_kind.lower()
    for key, table in PEAK_TFLOPS:
        if key in kind:
            return table.get(dtype)
    return None


def time_call(fn: Callable[[], object], warmup: int, iters: int) -> list[float]:
    """Wall seconds of `iters` calls of `fn` after `warmup` untimed ones.

    `fn` must block until its result is ready (e.g. end with `jax.block_until_ready`);
    asynchronous dispatch would otherwise time only the enqueue.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_ms(times: Sequence[float]) -> float:
    return 1e3 * statistics.median(times)


def spread_ms(times: Sequence[float]) -> str:
    """min-max in ms, to show how noisy a shared machine was during the measurement."""
    return f"{1e3 * min(times):.1f}-{1e3 * max(times):.1f}"


def load_average() -> str:
    """1/5/15-minute load, recorded with every measurement on a shared machine."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f}/{five:.2f}/{fifteen:.2f}"


def host_peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_peak_mib(device) -> float | None:
    """Peak bytes the allocator has handed out on `device`, None where not tracked (CPU)."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20


def compiled_flops(compiled) -> float | None:
    """FLOPs of one call from XLA's cost analysis of a compiled executable, None if absent."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return None
    # Older jax returned a list with one dict per computation.
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def compiled_memory_mib(compiled) -> float | None:
    """XLA's compile-time estimate of the step's footprint: arguments + outputs + temporaries.

    Works on every backend (CPU included), unlike the allocator's peak; donated arguments that
    alias outputs are counted once.
    """
    try:
        mem = compiled.memory_analysis()
    except Exception:  # noqa: BLE001
        return None
    if mem is None:
        return None
    total = (
        mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        + mem.temp_size_in_bytes
        - mem.alias_size_in_bytes
    )
    return total / 2**20


def hlo_op_counts(hlo_text: str, names: Sequence[str]) -> dict[str, int]:
    """How often each HLO opcode / custom-call target appears in compiled HLO text."""
    return {name: hlo_text.count(name) for name in names}


def package_versions(names: Sequence[str]) -> str:
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(parts)


def device_description() -> str:
    """e.g. 'cpu: AMD EPYC x2 cores' or 'gpu: NVIDIA H100 80GB HBM3 x1'."""
    import jax

    devices = jax.devices()
    dev = devices[0]
    if dev.platform == "cpu":
        return f"cpu: {cpu_model()} x{os.cpu_count()} cores"
    return f"{dev.platform}: {dev.device_kind} x{len(devices)}"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])


def today() -> str:
    return datetime.date.today().isoformat()


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Print and return a Markdown table (pasteable into RESULTS.md as is)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def print_context(extra_packages: Sequence[str] = ()) -> str:
    """The lines every RESULTS.md entry carries: date, device, versions, command, load."""
    versions = package_versions(["jax", "jaxlib", "flax", "optax", *extra_packages])
    text = "\n".join(
        [
            f"date: {today()}",
            f"device: {device_description()}",
            f"versions: python {platform.python_version()}, {versions}",
            f"command: {command_line()}",
            f"load average at start (1/5/15 min): {load_average()}",
        ]
    )
    print(text, flush=True)
    return text


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)
