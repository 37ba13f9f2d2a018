"""Per-process numpy batches -> globally sharded ``jax.Array``s (multi-host data parallelism)."""

from collections.abc import Iterable, Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def to_global(batch: dict[str, np.ndarray], mesh: Mesh, axis: str = "data") -> dict[str, jax.Array]:
    """Assemble each process's batch into global arrays sharded over ``mesh`` axis ``axis``.

    Args:
      batch: this process's arrays, leading dim ``b`` (e.g. ``image float32 [b, H, W, 3]``).
      mesh: device mesh with an ``axis`` dimension; the batch dim is split over it and
        replicated over any other mesh axes.
    Returns:
      same keys, global ``jax.Array``s with leading dim ``b * process_count`` and
      ``NamedSharding(mesh, P(axis))``; process ``i``'s rows are rows ``i*b .. i*b+b-1``.
    """
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    return {
        key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for key, value in batch.items()
    }


def prefetch_to_mesh(
    batches: Iterable[dict[str, np.ndarray]], mesh: Mesh, size: int = 2, axis: str = "data"
) -> Iterator[dict[str, jax.Array]]:
    """:func:`to_global` ``size`` batches ahead, so host->device copies overlap the step."""
    queue: list[dict[str, jax.Array]] = []
    for batch in batches:
        queue.append(to_global(batch, mesh, axis))
        if len(queue) > size:
            yield queue.pop(0)
    yield from queue
