"""Data parallelism with `jax.jit` + `jax.sharding`: one `data` mesh axis over all devices.

The global batch is sharded along its leading axis, the train state is replicated, and the step
is one jit-compiled program over the global arrays. Because that program computes BatchNorm's
batch mean over the *global* batch, XLA inserts the cross-device reduction itself: BatchNorm is
synchronised across devices (and hosts) without any `pmean` in the model.

Multi-host: every process runs the same program on its own devices; each feeds its share of the
global batch (`shard_batch` assembles the global array from process-local rows).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

PyTree = Any
DATA_AXIS = "data"


def maybe_initialize_distributed() -> bool:
    """Calls `jax.distributed.initialize()` when the launch says this is a multi-process run.

    Must run before anything touches a JAX device. Triggers:
      - `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` set (any launcher);
      - a SLURM job step with more than one task (`SLURM_NTASKS > 1`) or an Open MPI launch
        (`OMPI_COMM_WORLD_SIZE > 1`): JAX detects the coordinator itself;
      - `JAXSEG_DISTRIBUTED=1`: let JAX auto-detect (e.g. Cloud TPU pods, Kubernetes).

    Returns:
      True if this call initialised the distributed runtime.
    """
    if jax.distributed.is_initialized():
        return False
    env = os.environ
    if env.get("JAX_COORDINATOR_ADDRESS") and env.get("JAX_NUM_PROCESSES"):
        jax.distributed.initialize(
            coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(env["JAX_NUM_PROCESSES"]),
            process_id=int(env["JAX_PROCESS_ID"]),
        )
    elif (
        int(env.get("SLURM_NTASKS", "1")) > 1
        or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
        or env.get("JAXSEG_DISTRIBUTED") == "1"
    ):
        jax.distributed.initialize()
    else:
        return False
    logging.info(
        "jax.distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str:
    """Turns on JAX's persistent compilation cache (default `~/.cache/jaxseg/xla`).

    A rerun of the same experiment (a resume, another seed) then loads its compiled programs
    instead of recompiling them, which saves minutes for big models. Call it before the first
    jit compilation. Returns the cache folder.
    """
    path = os.fspath(path or os.path.join(os.path.expanduser("~"), ".cache", "jaxseg", "xla"))
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    return path


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis `data` over `devices` (default: every device of every process).

    Auto axis types: shardings are given at the jit boundary and XLA propagates them inside,
    which is what the model code (written without sharding annotations) expects.
    """
    devices = list(jax.devices() if devices is None else devices)
    return jax.make_mesh((len(devices),), (DATA_AXIS,), (AxisType.Auto,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of a value held whole by every device (the train state, metrics)."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of batch arrays `[B, ...]`: the leading axis split over `data`."""
    return NamedSharding(mesh, P(DATA_AXIS))


def shard_state(state: PyTree, mesh: Mesh) -> PyTree:
    """Copies every leaf of `state` to all devices of `mesh` (replicated).

    In multi-process runs each process must pass the same values (same seed / same checkpoint).
    """
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(state, sharding)

    def put(x: Any) -> jax.Array:
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree_util.tree_map(put, state)


def _is_text(x: Any) -> bool:
    return isinstance(x, np.ndarray) and x.dtype.kind in "OSU"


def shard_batch(batch: PyTree, mesh: Mesh) -> PyTree:
    """Process-local numpy batch -> global arrays sharded along `data`.

    Args:
      batch: `{"image": [b, H, W, 3], "label": [b, H, W], "mask": [b], ...}`, this process's
        `b = B / process_count` rows (rows of process i are global rows `i*b .. (i+1)*b - 1`).
      mesh: the mesh from `make_mesh`.

    Returns:
      The same dict of `jax.Array`s with global leading size `B`. Leaves that already are
      global arrays with this sharding (e.g. from a device-prefetching pipeline) pass through;
      top-level entries of strings (eval batches' `name`) are left out, as devices cannot hold
      them.
    """
    sharding = batch_sharding(mesh)
    if isinstance(batch, dict):
        batch = {k: v for k, v in batch.items() if not _is_text(v)}

    def put(x: Any) -> jax.Array:
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree_util.tree_map(put, batch)


def jit_train_step(train_step: Callable, mesh: Mesh) -> Callable:
    """`jax.jit` of `train_step(state, batch, rng) -> (state, metrics)` on `mesh`.

    State replicated and donated (its buffers are reused for the new state), batch sharded
    along `data`, rng and metrics replicated.
    """
    repl, data = replicated(mesh), batch_sharding(mesh)
    return jax.jit(
        train_step,
        in_shardings=(repl, data, repl),
        out_shardings=(repl, repl),
        donate_argnums=0,
    )


def jit_eval_step(eval_step: Callable, mesh: Mesh) -> Callable:
    """`jax.jit` of `eval_step(state, batch) -> output` with a replicated output.

    Replicated output: every process holds the whole (globally reduced) confusion matrix or
    prediction batch, so the host can read it without gathering.
    """
    repl, data = replicated(mesh), batch_sharding(mesh)
    return jax.jit(eval_step, in_shardings=(repl, data), out_shardings=repl)


def to_host(x: PyTree) -> PyTree:
    """Replicated global arrays -> numpy (works in multi-process runs, unlike `device_get`)."""

    def get(a: Any) -> np.ndarray:
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(a.addressable_data(0))
        return np.asarray(a)

    return jax.tree_util.tree_map(get, x)
