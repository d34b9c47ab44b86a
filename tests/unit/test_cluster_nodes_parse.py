"""Parsing of CLUSTER NODES lines by the embedded cluster (no Redis needed)."""

from __future__ import annotations

from semcache_core.embedded_cluster import _parse_node_line


def test_a_master_line_with_a_range_a_single_slot_and_a_migrating_slot() -> None:
    seen = _parse_node_line(
        "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,host.example "
        "myself,master - 0 1426238317239 4 connected 0-5460 5462 [5463->-a1b2c3]"
    )
    assert seen.node_id == "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"
    assert seen.port == 30001
    assert (seen.role, seen.master_id, seen.settled) == ("master", None, True)
    assert seen.slots == ((0, 5460), (5462, 5462))


def test_a_failed_replica_and_a_node_without_address() -> None:
    replica = _parse_node_line(
        "07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave,fail "
        "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238316232 4 disconnected"
    )
    assert (replica.role, replica.settled, replica.slots) == ("replica", False, ())
    assert replica.master_id == "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"
    unknown = _parse_node_line(
        "6ec23923021cf3ffec47632106199cb7f496ce01 :0@0 noaddr - 0 0 0 disconnected"
    )
    assert (unknown.port, unknown.settled) == (0, False)
