"""Staged round-robin placement and paged accounting, against a brute-force simulation."""
import pytest
import torch

from helix_core.kv_cache import KVCapacityError, PagedKVCache, StagePlacement


def simulate(length, start, kvp, stage):
    """Owner rank and local index of each position, by walking tokens one at a time."""
    owners, local, counts = [], [], [0] * kvp
    for pos in range(length):
        rank = (start + pos // stage) % kvp
        owners.append(rank)
        local.append(counts[rank])
        counts[rank] += 1
    return owners, local, counts


@pytest.mark.parametrize("kvp,stage", [(1, 16), (2, 16), (3, 4), (4, 16), (4, 1)])
@pytest.mark.parametrize("start", [0, 1, 2, 3])
def test_placement_matches_simulation(kvp, stage, start):
    start %= kvp
    placement = StagePlacement(kvp, stage)
    length = 5 * stage * kvp + 3
    owners, local, counts = simulate(length, start, kvp, stage)
    pos = torch.arange(length)
    assert placement.owner(pos, start).tolist() == owners
    assert placement.local_index(pos).tolist() == local
    for n in range(length + 1):
        _, _, partial_counts = simulate(n, start, kvp, stage)
        for rank in range(kvp):
            assert placement.local_count(n, start, rank) == partial_counts[rank]
    for rank in range(kvp):
        expected = [p for p in range(length) if owners[p] == rank]
        assert placement.global_positions(counts[rank], start, rank).tolist() == expected


@pytest.mark.parametrize("kvp,stage", [(2, 16), (4, 16), (4, 5)])
def test_balance_within_one_stage(kvp, stage):
    placement = StagePlacement(kvp, stage)
    for length in range(0, 300, 7):
        for start in range(kvp):
            counts = [placement.local_count(length, start, r) for r in range(kvp)]
            assert max(counts) - min(counts) <= stage
            assert sum(counts) == length
            assert max(counts) <= placement.max_local_count(length) < max(counts) + stage


def make_cache(kvp=2, rank=0, pages=8, page=4, stage=3):
    return PagedKVCache(num_layers=2, num_pages=pages, page_size=page, kv_heads=1, key_dim=2, value_dim=2,
                        placement=StagePlacement(kvp, stage), kvp_rank=rank, dtype=torch.float32,
                        device=torch.device("cpu"))


def test_pages_grow_free_and_write_gather_roundtrip():
    cache = make_cache()
    cache.add_sequence(7, start_rank=1)
    cache.check_fits({7: 20}, {})
    cache.grow(7, 20)
    local = cache.local_length(7)
    assert local == StagePlacement(2, 3).local_count(20, 1, 0)
    assert len(cache.sequences[7].pages) == -(-local // 4)
    keys = torch.randn(local, 1, 2)
    slots = cache.slots(7, torch.arange(local))
    cache.write(1, slots, keys, keys * 2)
    got_k, got_v = cache.gather(1, 7)
    assert torch.equal(got_k, keys) and torch.equal(got_v, keys * 2)
    used = cache.pages_used_per_rank()
    cache.free(7)
    assert cache.pages_used_per_rank() == [0, 0]
    assert cache.free_pages() == 8 and sum(used) > 0


def test_capacity_is_checked_per_kvp_rank_not_in_total():
    # rank 1 holds stage 0 when the sequence starts there: 4 tokens -> 1 page on rank 1, 0 on rank 0
    cache = make_cache(pages=1, page=4, stage=4)
    cache.add_sequence(0, start_rank=1)
    cache.grow(0, 4)
    assert cache.pages_used_per_rank() == [0, 1]
    with pytest.raises(KVCapacityError, match="KVP rank 1"):
        cache.check_fits({1: 4}, {1: 1})  # a new sequence starting on full rank 1
    cache.check_fits({1: 4}, {1: 0})  # the same one starting on rank 0 fits


@pytest.mark.parametrize("kvp,stage,page,starts", [(1, 4, 4, [0]), (2, 3, 4, [0]), (4, 16, 8, [1]),
                                                   (4, 5, 4, [0, 1, 2]), (3, 4, 3, [2, 2])])
def test_longest_length_is_the_last_length_that_fits(kvp, stage, page, starts):
    """Against a token-by-token walk of the placement: the largest length every new sequence can
    reach together, next to a resident sequence that already holds pages."""
    cache = make_cache(kvp=kvp, pages=9, page=page, stage=stage)
    cache.add_sequence(99, start_rank=kvp - 1)
    cache.grow(99, 2 * stage + 1)
    free = [cache.free_pages(r) for r in range(kvp)]

    def fits(length):
        need = [0] * kvp
        for start in starts:
            for rank, count in enumerate(simulate(length, start, kvp, stage)[2]):
                need[rank] += -(-count // page)
        return all(n <= f for n, f in zip(need, free))

    expected = 0
    while fits(expected + 1):
        expected += 1
    assert expected > 0
    assert cache.longest_length(starts) == expected
