"""A parallel hash set over small integer vectors, with fixed shapes for jit.

The permutohedral lattice needs to deduplicate about six lattice keys per pixel and later look
up each lattice point's neighbours. Sorting would do both, but XLA's CPU sort is a comparison
sort that costs ~0.3 s per million keys; this hash set costs a few scatters and gathers.

Insertion runs in rounds. In round ``r`` every unresolved entry hashes its key with the round's
hash function ``h_r`` and bids for that slot with a scatter-min of its entry index; a slot
claimed in an earlier round is never taken over (claimed slots hold -(entry + 1), below any
bid). An entry whose slot now holds an entry with an equal key is resolved to that entry. All
entries of one key bid for the same slot, so a key resolves as a whole, to its smallest entry
index, in the first round whose slot it wins.

Lookup of a query key probes ``h_0, h_1, ...`` up to the number of rounds insertion used: a key
inserted in round ``r`` sits at ``h_r(key)``, and earlier probes cannot match because its
entries were not in the table yet. Absent keys never match, and an empty slot proves absence.

At load factor <= 1/2 round 0 settles almost everything, so later rounds and probes run on
the few unsettled entries, gathered into a buffer of `num_entries // STRAGGLER_FRACTION` rows
(or, if they do not fit, on all entries again).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# Each round a key loses its slot with probability below the table's load factor (<= 1/2),
# so 64 rounds leave a key unresolved with probability < 2^-64.
MAX_ROUNDS = 64
STRAGGLER_FRACTION = 16
_EMPTY = np.iinfo(np.int32).max


class HashSet(NamedTuple):
    """Deduplicated integer keys.

    Attributes:
      table: [T] int32; -(entry + 1) in claimed slots, int32 max in empty ones; T a power of 2.
      representative: [E] int32, for each entry the smallest entry index with an equal key
        (-1 only if insertion ran out of rounds, which `num_rounds == MAX_ROUNDS` signals).
      num_rounds: [] int32, insertion rounds used; lookups probe this many slots.
    """

    table: jax.Array
    representative: jax.Array
    num_rounds: jax.Array


def table_size(num_entries: int) -> int:
    """Smallest power of two holding `num_entries` keys at load factor <= 1/2."""
    return max(64, 1 << int(np.ceil(np.log2(2 * max(num_entries, 1)))))


def hash_keys(keys: jax.Array, round_index: jax.Array, log2_size: int) -> jax.Array:
    """Hashes keys [..., d] int32 to slots [...] int32 in [0, 2**log2_size), one function per round.

    FNV-style folding of the coordinates, seeded by the round, then the murmur3 finaliser so
    that nearby keys (lattice neighbours differ by one step) spread over the table.
    """
    x = (jnp.asarray(round_index).astype(jnp.uint32) + jnp.uint32(1)) * jnp.uint32(0x9E3779B9)
    x = jnp.broadcast_to(x, keys.shape[:-1])
    for i in range(keys.shape[-1]):
        x = (x ^ keys[..., i].astype(jnp.uint32)) * jnp.uint32(0x01000193)
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    x = x ^ (x >> 16)
    return (x >> (32 - log2_size)).astype(jnp.int32)


def _log2(size: int) -> int:
    return size.bit_length() - 1


def _holder(slot_value: jax.Array) -> jax.Array:
    """Entry index held by a slot value (claimed or bid this round); -1 if empty."""
    return jnp.where(
        slot_value == _EMPTY, -1, jnp.where(slot_value < 0, -slot_value - 1, slot_value)
    )


def _keys_equal(stored: jax.Array, keys: jax.Array, holder: jax.Array) -> jax.Array:
    """[Q] bool: does `stored[holder]` (holder -1 = empty) equal `keys` [Q, d]?"""
    return (holder >= 0) & jnp.all(stored[jnp.maximum(holder, 0)] == keys, axis=-1)


def _insertion_round(table, stored_keys, keys, entries, representative, round_index):
    """One round for entries [S] (entry index, or -1 for padding) with keys [S, d]."""
    size = table.shape[0]
    active = (entries >= 0) & (representative < 0)
    slot = hash_keys(keys, round_index, _log2(size))
    bid_slot = jnp.where(active, slot, size)  # out of range: dropped
    table = table.at[bid_slot].min(entries, mode="drop")
    value = table[slot]
    holder = _holder(value)
    match = active & _keys_equal(stored_keys, keys, holder)
    # Lock the slots won this round: claimed values are negative, below any later bid.
    won = active & (value >= 0) & (value != _EMPTY)
    table = table.at[jnp.where(won, slot, size)].set(-value - 1, mode="drop")
    return table, jnp.where(match, holder, representative)


def _settle(unsettled, capacity, on_subset, on_all, operand):
    """Runs `on_subset(indices [capacity] (-1 padded), operand)` when the unsettled entries fit
    in `capacity` rows, else `on_all(operand)`."""
    position = jnp.cumsum(unsettled, dtype=jnp.int32) - 1

    def subset(operand):
        # Cheaper to compile than jnp.nonzero: scatter each index to its rank.
        target = jnp.where(unsettled, position, capacity)
        source = jnp.arange(unsettled.shape[0], dtype=jnp.int32)
        indices = jnp.full((capacity,), -1, jnp.int32).at[target].set(source, mode="drop")
        return on_subset(indices, operand)

    return jax.lax.cond(position[-1] < capacity, subset, on_all, operand)


def insert(keys: jax.Array) -> HashSet:
    """Deduplicates keys [E, d] int32 (E >= 1)."""
    num_entries = keys.shape[0]
    all_entries = jnp.arange(num_entries, dtype=jnp.int32)
    table = jnp.full((table_size(num_entries),), _EMPTY, jnp.int32)
    representative = jnp.full((num_entries,), -1, jnp.int32)
    table, representative = _insertion_round(table, keys, keys, all_entries, representative, 0)

    def more_rounds(entries, state):
        table, representative = state
        subset_rep = representative[jnp.maximum(entries, 0)]
        subset_keys = keys[jnp.maximum(entries, 0)]

        def unresolved(loop):
            _, rep, round_index = loop
            return jnp.any((entries >= 0) & (rep < 0)) & (round_index < MAX_ROUNDS)

        def one_round(loop):
            table, rep, round_index = loop
            table, rep = _insertion_round(table, keys, subset_keys, entries, rep, round_index)
            return table, rep, round_index + 1

        table, subset_rep, rounds = jax.lax.while_loop(
            unresolved, one_round, (table, subset_rep, jnp.ones((), jnp.int32))
        )
        write = jnp.where(entries >= 0, entries, num_entries)
        return table, representative.at[write].set(subset_rep, mode="drop"), rounds

    capacity = max(num_entries // STRAGGLER_FRACTION, 1)
    table, representative, rounds = _settle(
        representative < 0,
        capacity,
        more_rounds,
        lambda state: more_rounds(all_entries, state),
        (table, representative),
    )
    return HashSet(table, representative, rounds)


def lookup(hash_set: HashSet, stored_keys: jax.Array, queries: jax.Array) -> jax.Array:
    """Entry index [Q] int32 of each query key [Q, d] in the set, -1 where absent.

    `stored_keys` [E, d] are the keys the set was built from.
    """
    log2_size = _log2(hash_set.table.shape[0])

    def probe(round_index, query_keys):
        value = hash_set.table[hash_keys(query_keys, round_index, log2_size)]
        holder = _holder(value)
        found = _keys_equal(stored_keys, query_keys, holder)
        return jnp.where(found, holder, -1), found | (value == _EMPTY)

    found, settled = probe(0, queries)

    def more_probes(indices, found):
        subset_keys = queries[jnp.maximum(indices, 0)]

        def next_probe(round_index, subset_found):
            result, _ = probe(round_index, subset_keys)
            return jnp.where(subset_found < 0, result, subset_found)

        subset_found = jnp.where(indices >= 0, found[jnp.maximum(indices, 0)], -1)
        subset_found = jax.lax.fori_loop(1, hash_set.num_rounds, next_probe, subset_found)
        write = jnp.where(indices >= 0, indices, queries.shape[0])
        return found.at[write].set(subset_found, mode="drop")

    capacity = max(queries.shape[0] // STRAGGLER_FRACTION, 1)
    all_queries = jnp.arange(queries.shape[0], dtype=jnp.int32)
    return _settle(
        ~settled, capacity, more_probes, lambda found: more_probes(all_queries, found), found
    )
