"""to_global: per-process numpy batch -> batch-sharded global jax.Arrays (8 CPU devices)."""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxseg.data.sharding import prefetch_to_mesh, to_global


def test_to_global_shards_batch_dim():
    devices = np.array(jax.devices())
    assert devices.size == 8
    mesh = Mesh(devices, ("data",))
    batch = {
        "image": np.arange(8 * 4 * 5 * 3, dtype=np.float32).reshape(8, 4, 5, 3),
        "label": np.arange(8 * 4 * 5, dtype=np.int32).reshape(8, 4, 5),
        "mask": np.array([True] * 7 + [False]),
    }
    out = to_global(batch, mesh)
    for key, value in batch.items():
        assert out[key].shape == value.shape and out[key].dtype == value.dtype
        assert out[key].sharding == NamedSharding(mesh, PartitionSpec("data"))
        np.testing.assert_array_equal(np.asarray(out[key]), value)
        shard = out[key].addressable_shards[3]
        np.testing.assert_array_equal(np.asarray(shard.data), value[3:4])


def test_to_global_on_2d_mesh_and_prefetch():
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
    batches = [{"x": np.full((4, 2), k, np.float32)} for k in range(3)]
    out = list(prefetch_to_mesh(iter(batches), mesh, size=2))
    assert [float(o["x"][0, 0]) for o in out] == [0.0, 1.0, 2.0]
    assert out[0]["x"].sharding.spec == PartitionSpec("data")
