"""The in-process L1 tier alone, no Redis (its coherence over pub/sub:
tests/integration/test_l1.py).

Claims: the tier is a correct bounded LRU/LFU with TTL; a read that raced an
invalidation cannot re-insert the old value; messages apply, malformed ones are refused;
a suspended tier serves and holds nothing.
"""

from __future__ import annotations

import json
import threading

import pytest

from semcache_core.l1 import LocalTier, clear_message, drop_message, drop_prefix_message


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lru_evicts_least_recently_used() -> None:
    tier = LocalTier(2)
    tier.put("a", {"v": 1})
    tier.put("b", {"v": 2})
    assert tier.get("a") == {"v": 1}  # a is now more recent than b
    tier.put("c", {"v": 3})
    assert "b" not in tier and "a" in tier and "c" in tier
    assert tier.stats().evictions == 1


def test_lfu_evicts_least_frequently_used() -> None:
    tier = LocalTier(2, policy="lfu")
    tier.put("a", {"v": 1})
    tier.put("b", {"v": 2})
    for _ in range(3):
        tier.get("a")
    tier.get("b")
    tier.put("c", {"v": 3})  # b (2 uses) goes, a (4 uses) stays
    assert set(tier.keys()) == {"a", "c"}
    tier.put("d", {"v": 4})  # c has the lowest count
    assert set(tier.keys()) == {"a", "d"}
    tier.drop("a")
    tier.put("e", {"v": 5})
    tier.put("f", {"v": 6})  # d and e tie at 1 use: the older (d) goes
    assert set(tier.keys()) == {"e", "f"}


def test_ttl_is_the_smaller_of_the_entry_and_the_tier() -> None:
    clock = FakeClock()
    tier = LocalTier(10, ttl=5.0, timer=clock)
    tier.put("short", {"v": 1}, ttl=1.0)
    tier.put("capped", {"v": 2}, ttl=100.0)
    tier.put("forever", {"v": 3}, ttl=None)
    clock.now += 1.0
    assert tier.get("short") is None
    assert tier.get("capped") is not None
    clock.now += 4.0
    assert tier.get("capped") is None and tier.get("forever") is None
    assert tier.stats().expirations == 3
    assert not tier.put("dead", {"v": 4}, ttl=0.0)  # an expired entry is never held
    unbounded = LocalTier(10, ttl=None, timer=clock)
    unbounded.put("k", {"v": 1})
    clock.now += 1e9
    assert unbounded.get("k") == {"v": 1}


def test_refresh_slides_a_held_entry_and_never_holds_an_absent_one() -> None:
    clock = FakeClock()
    tier = LocalTier(10, ttl=5.0, timer=clock)
    tier.put("k", {"v": 1, "expires_at": b"10.0"}, ttl=2.0)
    clock.now += 1.5
    assert tier.refresh("k", {"expires_at": b"12.0"}, ttl=2.0)  # the TTL slid in Redis
    clock.now += 1.5  # past the first expiry, within the slid one
    assert tier.get("k") == {"v": 1, "expires_at": b"12.0"}
    assert tier.refresh("k", {}, ttl=100.0)  # capped by the tier's own ttl
    clock.now += 5.0
    assert tier.get("k") is None
    assert not tier.refresh("gone", {"v": 2}, ttl=2.0) and "gone" not in tier
    tier.put("k", {"v": 1}, ttl=2.0)
    assert not tier.refresh("k", {}, ttl=0.0) and "k" not in tier  # slid to nothing
    tier.put("k", {"v": 1}, ttl=2.0)
    tier.suspend()
    assert not tier.refresh("k", {}, ttl=2.0)


def test_drop_prefix_and_clear() -> None:
    tier = LocalTier(100)
    for tenant in ("t1", "t2"):
        for i in range(3):
            tier.put(f"semcache:ns:{tenant}:{i}", {"v": i})
    assert tier.drop_prefix("semcache:ns:t1:") == 3
    assert len(tier) == 3 and all(":t2:" in k for k in tier)
    assert tier.clear() == 3 and len(tier) == 0
    stats = tier.stats()
    assert (stats.dropped, stats.size) == (6, 0)


def test_a_read_that_raced_an_invalidation_is_not_held() -> None:
    tier = LocalTier(100)
    since = tier.version  # the Redis read starts
    tier.drop("k")  # an overwrite elsewhere is applied before the read returns
    assert not tier.put("k", {"v": "old"}, since=since)
    assert tier.put("other", {"v": 1}, since=since)  # unrelated keys are not blocked
    since = tier.version
    tier.drop_prefix("semcache:ns:t1:")
    assert not tier.put("semcache:ns:t1:k", {"v": "old"}, since=since)
    assert tier.put("semcache:ns:t2:k", {"v": 1}, since=since)
    since = tier.version
    tier.clear()
    assert not tier.put("anything", {"v": 1}, since=since)
    assert tier.put("anything", {"v": 1}, since=tier.version)
    assert tier.stats().refused == 3


def test_apply_messages_and_reject_malformed_ones() -> None:

    tier = LocalTier(100)
    for k in ("p:n:a:1", "p:n:a:2", "p:n:b:1"):
        tier.put(k, {"v": k})
    tier.apply(json.loads(drop_message(["p:n:a:1"])))
    assert "p:n:a:1" not in tier
    tier.apply(json.loads(drop_prefix_message("p:n:a:")))
    assert list(tier.keys()) == ["p:n:b:1"]
    tier.apply(json.loads(clear_message()))
    assert len(tier) == 0
    # A tenant on a cluster layout: one prefix per bucket, one message.
    for key in ("p:n:{n.b0}:a:1", "p:n:{n.b1}:a:2", "p:n:{n.b1}:b:3"):
        tier.put(key, {"v": b"x"})
    message = json.loads(drop_prefix_message("p:n:{n.b0}:a:", "p:n:{n.b1}:a:"))
    assert message["op"] == "drop_prefixes"
    tier.apply(message)
    assert "p:n:{n.b1}:b:3" in tier
    assert "p:n:{n.b0}:a:1" not in tier and "p:n:{n.b1}:a:2" not in tier
    for bad in (
        {"op": "drop", "keys": "p:n:a:1"},
        {"op": "drop_prefix"},
        {"op": "drop_prefixes", "prefixes": []},
        {"op": "drop_prefixes", "prefixes": [""]},
        {"op": "nuke"},
    ):
        with pytest.raises(ValueError):
            tier.apply(bad)


def test_suspended_tier_serves_and_holds_nothing() -> None:
    tier = LocalTier(10)
    tier.put("k", {"v": 1})
    tier.suspend()
    assert tier.get("k") is None and not tier.put("k", {"v": 1}) and len(tier) == 0
    tier.resume()
    assert tier.put("k", {"v": 1}) and tier.get("k") == {"v": 1}


def test_capacity_is_held_and_every_eviction_counted() -> None:
    tier = LocalTier(3)
    for i in range(10):
        assert tier.put(f"k{i}", {"v": i})
    assert len(tier) == 3 and set(tier.keys()) == {"k7", "k8", "k9"}
    assert tier.stats().evictions == 7
    assert tier.put("k7", {"v": "new"})  # rewriting a held key evicts nothing
    assert tier.stats().evictions == 7 and tier.get("k7") == {"v": "new"}
    off = LocalTier(0)
    assert not off.put("k", {"v": 1}) and off.get("k") is None and len(off) == 0


def test_a_rewrite_counts_as_a_use() -> None:
    lru = LocalTier(2)
    lru.put("a", {"v": 1})
    lru.put("b", {"v": 2})
    lru.put("a", {"v": 3})  # a is now the more recent
    lru.put("c", {"v": 4})
    assert set(lru.keys()) == {"a", "c"}
    lfu = LocalTier(2, policy="lfu")
    lfu.put("a", {"v": 1})
    lfu.put("b", {"v": 2})
    lfu.put("b", {"v": 3})  # b: 2 uses
    lfu.put("c", {"v": 4})  # a (1 use) goes
    assert set(lfu.keys()) == {"b", "c"}


def test_lfu_ties_go_to_the_least_recently_used() -> None:
    tier = LocalTier(3, policy="lfu")
    for key in ("a", "b", "c"):
        tier.put(key, {"v": key})
    tier.get("b")
    tier.get("a")
    tier.get("c")  # all at 2 uses: b got there first, though a is older
    tier.put("d", {"v": "d"})
    assert set(tier.keys()) == {"a", "c", "d"}


def test_expiry_is_checked_on_read_and_counts_once() -> None:
    clock = FakeClock()
    tier = LocalTier(2, ttl=10.0, timer=clock)
    tier.put("old", {"v": 1})
    clock.now += 10.0  # exactly the TTL: gone
    tier.put("new", {"v": 2})
    assert tier.get("old") is None and tier.get("old") is None
    assert "old" not in tier and tier.get("new") == {"v": 2}
    stats = tier.stats()
    assert (stats.expirations, stats.misses, stats.hits, stats.size) == (1, 2, 1, 1)
    # A rewrite restarts the clock of an entry.
    clock.now += 9.0
    tier.put("new", {"v": 3})
    clock.now += 9.0
    assert tier.get("new") == {"v": 3}


def test_forgotten_tombstones_refuse_reads_older_than_them() -> None:
    from semcache_core.l1 import _TOMBSTONES

    tier = LocalTier(10)
    before = tier.version
    tier.drop("a")
    after_a = tier.version
    for i in range(_TOMBSTONES):  # a is the oldest tombstone: forgotten now
        tier.drop(f"other{i}")
    # A read that began before a's drop may have raced it: refused, whatever its key.
    assert not tier.put("a", {"v": "old"}, since=before)
    assert not tier.put("unrelated", {"v": 1}, since=before)
    assert tier.put("a", {"v": "new"}, since=after_a)  # began after it: safe
    assert not tier.put("other5", {"v": "old"}, since=after_a)  # remembered, and newer


def test_a_repeated_drop_renews_its_tombstone() -> None:
    from semcache_core.l1 import _TOMBSTONES

    tier = LocalTier(10)
    tier.drop("a")
    tier.drop("b")
    tier.drop("a")  # a is the newest tombstone again; b the oldest
    since_b = tier.version - 1  # taken between b's drop and a's second one
    for i in range(_TOMBSTONES - 2):  # fills the tombstones, forgets none
        tier.drop(f"other{i}")
    assert not tier.put("a", {"v": "old"}, since=since_b)  # a's tombstone is still held
    tier.drop("one more")  # forgets b, the oldest: the floor is b's drop
    assert tier.put("fresh", {"v": 1}, since=since_b)
    assert not tier.put("b", {"v": "old"}, since=since_b - 1)


def test_prefix_tombstones_are_one_per_prefix() -> None:
    from semcache_core.l1 import _PREFIX_TOMBSTONES

    tier = LocalTier(10)
    since = tier.version
    tier.drop_prefix("p:n:t1:")
    for _ in range(_PREFIX_TOMBSTONES * 2):  # the same tenant again and again
        tier.drop_prefix("p:n:t2:")
    assert not tier.put("p:n:t1:k", {"v": "old"}, since=since)  # still remembered
    assert tier.put("p:n:t3:k", {"v": 1}, since=since)  # nothing forgotten: no floor
    for i in range(_PREFIX_TOMBSTONES):  # distinct tenants push t1 out
        tier.drop_prefix(f"p:n:x{i}:")
    assert not tier.put("p:n:t4:k", {"v": 1}, since=since)  # the floor now refuses it


def test_threads_hammering_one_tier() -> None:
    tier = LocalTier(64, ttl=10.0, policy="lfu")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(3000):
                key = f"k{(i * 7 + n) % 200}"
                if i % 3 == 0:
                    tier.put(key, {"v": i}, since=tier.version)
                elif i % 17 == 0:
                    tier.drop(key)
                else:
                    tier.get(key)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(tier) <= 64
