"""The parallel hash set against NumPy's sort-based deduplication."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.crf import hashing


def _first_occurrence(keys):
    """Expected representative of every entry: the first entry with an equal key."""
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return first[inverse.ravel()]


# Few distinct keys (round 0 leaves few unresolved entries: the straggler buffer) to all
# distinct (too many unresolved to fit: the fall-back over all entries).
@pytest.mark.parametrize(
    "num_entries, key_range", [(20_000, 2), (20_000, 6), (20_000, 10_000), (300, 3)]
)
def test_insert_finds_first_occurrence(num_entries, key_range):
    rng = np.random.default_rng(key_range)
    keys = rng.integers(-key_range, key_range, (num_entries, 5)).astype(np.int32)
    hash_set = jax.jit(hashing.insert)(jnp.asarray(keys))
    np.testing.assert_array_equal(np.asarray(hash_set.representative), _first_occurrence(keys))
    assert int(hash_set.num_rounds) < hashing.MAX_ROUNDS


@pytest.mark.parametrize("num_entries, key_range", [(20_000, 6), (20_000, 2)])
def test_lookup_finds_present_keys_only(num_entries, key_range):
    rng = np.random.default_rng(1)
    keys = rng.integers(-key_range, key_range, (num_entries, 5)).astype(np.int32)
    hash_set = jax.jit(hashing.insert)(jnp.asarray(keys))
    queries = np.concatenate(
        [keys[:500], rng.integers(-key_range - 2, key_range + 2, (5000, 5)).astype(np.int32)]
    )
    found = np.asarray(jax.jit(hashing.lookup)(hash_set, jnp.asarray(keys), jnp.asarray(queries)))

    first = {}
    for index, key in enumerate(map(tuple, keys)):
        first.setdefault(key, index)
    expected = np.array([first.get(tuple(q), -1) for q in queries])
    np.testing.assert_array_equal(found, expected)
