"""The loopback Redis Cluster that cluster tests and benchmarks run on: it forms with every
slot served and replicated, every node has RediSearch, a cluster client reaches every shard
from one URL, an index works on the shard owning its name, and a killed master fails over."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis.commands.search.query import Query

import semcache_core.embedded_cluster as embedded_cluster
from semcache_core import EmbeddedRedisError, start_embedded_cluster
from semcache_core.embedded import MODULES_ENV
from semcache_core.embedded_cluster import SLOTS, EmbeddedCluster, EmbeddedClusterNode


def _plain(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)


@pytest.fixture
def cluster_client(redis_cluster: EmbeddedCluster) -> Iterator[RedisCluster]:
    client = RedisCluster.from_url(redis_cluster.url, decode_responses=True, socket_timeout=5)
    yield client
    client.close()


def _owner(masters: list[EmbeddedClusterNode], slot: int) -> EmbeddedClusterNode:
    return next(m for m in masters if any(a <= slot <= b for a, b in m.slots))


def _tag_in(slots: tuple[tuple[int, int], ...], client: Any) -> str:
    """A hash tag whose slot lies in ``slots``."""
    for i in range(100_000):
        tag = f"t{i}-{uuid.uuid4().hex[:6]}"
        slot = int(client.execute_command("CLUSTER", "KEYSLOT", f"{{{tag}}}"))
        if any(a <= slot <= b for a, b in slots):
            return tag
    raise AssertionError(f"no hash tag found in {slots}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cluster_forms_three_masters_serving_every_slot_each_with_a_replica(
    redis_cluster: EmbeddedCluster,
) -> None:
    masters, replicas = redis_cluster.masters(), redis_cluster.replicas()
    assert len(masters) == 3
    ranges = sorted(r for m in masters for r in m.slots)
    # Contiguous from 0 to 16383, no gap and no overlap.
    assert ranges[0][0] == 0
    assert ranges[-1][1] == SLOTS - 1
    assert all(prev[1] + 1 == nxt[0] for prev, nxt in itertools.pairwise(ranges))
    assert sorted(r.master_id for r in replicas) == sorted(m.node_id for m in masters)

    nodes = redis_cluster.nodes
    assert len({n.port for n in nodes}) == len({n.node_id for n in nodes}) == 6
    assert all(n.alive and n.pid is not None and _alive(n.pid) for n in nodes)
    assert [n.url for n in nodes] == redis_cluster.urls
    assert {(n.host, n.port) for n in redis_cluster.startup_nodes} == {
        ("127.0.0.1", n.port) for n in nodes
    }
    assert redis_cluster.url in {m.url for m in masters}

    # Every node, asked itself through redis-py's own parser, agrees.
    expected_roles = {m.node_id: "master" for m in masters} | {
        r.node_id: "slave" for r in replicas
    }
    for node in nodes:
        with _plain(node.url) as client:
            info = client.execute_command("CLUSTER INFO")
            assert info["cluster_state"] == "ok"
            assert int(info["cluster_slots_assigned"]) == SLOTS
            assert int(info["cluster_known_nodes"]) == 6
            seen = client.execute_command("CLUSTER NODES")
        roles = {
            entry["node_id"]: "master" if "master" in entry["flags"] else "slave"
            for entry in seen.values()
        }
        assert roles == expected_roles, node.port
        if node.role == "replica":
            with _plain(node.url) as client:
                assert client.info("replication")["master_link_status"] == "up"


def test_every_node_has_the_search_and_json_modules(redis_cluster: EmbeddedCluster) -> None:
    assert len(redis_cluster.urls) == 6
    for url in redis_cluster.urls:
        with _plain(url) as client:
            names = {m["name"] for m in client.module_list()}
        assert {"search", "ReJSON"} <= names, url


def test_a_cluster_client_from_one_url_reaches_every_master(
    redis_cluster: EmbeddedCluster, cluster_client: RedisCluster, namespace: str
) -> None:
    masters = redis_cluster.masters()
    written: dict[str, EmbeddedClusterNode] = {}
    i = 0
    while {m.port for m in written.values()} != {m.port for m in masters}:
        key = f"{namespace}:k{i}"
        i += 1
        slot = int(cluster_client.execute_command("CLUSTER KEYSLOT", key))
        assert slot == cluster_client.keyslot(key)
        owner = _owner(masters, slot)
        assert cluster_client.get_node_from_key(key).port == owner.port
        assert cluster_client.set(key, f"v-{key}")
        written[key] = owner
    for key, owner in written.items():
        assert cluster_client.get(key) == f"v-{key}"
        # Really stored on that master, not just routed somewhere that answers.
        with _plain(owner.url) as direct:
            assert direct.get(key) == f"v-{key}"
    # The same cluster through the startup-node list.
    with RedisCluster(startup_nodes=redis_cluster.startup_nodes, decode_responses=True) as other:
        assert {k: other.get(k) for k in written} == {k: f"v-{k}" for k in written}
    for key in written:
        cluster_client.delete(key)


def test_an_index_on_the_master_owning_its_name_finds_a_document_in_its_slot(
    redis_cluster: EmbeddedCluster, cluster_client: RedisCluster, namespace: str
) -> None:
    index = f"idx:{{{namespace}}}"
    prefix = f"doc:{{{namespace}}}:"
    owner = cluster_client.get_node_from_key(index)
    assert owner.port in {m.port for m in redis_cluster.masters()}
    assert cluster_client.keyslot(prefix + "1") == cluster_client.keyslot(index)

    with _plain(f"redis://127.0.0.1:{owner.port}/0") as client:
        client.execute_command(
            "FT.CREATE", index, "ON", "HASH", "PREFIX", "1", prefix, "SCHEMA", "body", "TEXT"
        )
        try:
            cluster_client.hset(prefix + "1", mapping={"body": "clusters share nothing"})
            cluster_client.hset(f"{namespace}:elsewhere", mapping={"body": "share nothing"})
            found = client.ft(index).search(Query("share").no_content())
            # Only the document under the prefix is indexed.
            assert [doc.id for doc in found.docs] == [prefix + "1"]
            assert index in client.execute_command("FT._LIST")
        finally:
            client.execute_command("FT.DROPINDEX", index, "DD")
            cluster_client.delete(f"{namespace}:elsewhere")


def test_ft_create_on_a_master_not_owning_the_name_is_redirected(
    redis_cluster: EmbeddedCluster, cluster_client: RedisCluster, namespace: str
) -> None:
    """RediSearch 2.10 declares the index name a key: another master answers MOVED and
    creates nothing, so each index lives on one shard."""
    index = f"idx:{{{namespace}}}"
    owner = cluster_client.get_node_from_key(index)
    other = next(m for m in redis_cluster.masters() if m.port != owner.port)
    with _plain(other.url) as client, pytest.raises(redis.exceptions.MovedError) as raised:
        client.execute_command("FT.CREATE", index, "SCHEMA", "body", "TEXT")
    assert str(raised.value).startswith(f"{cluster_client.keyslot(index)} 127.0.0.1:{owner.port}")
    with _plain(other.url) as client:
        assert index not in client.execute_command("FT._LIST")


def test_a_killed_master_fails_over_to_its_replica_and_its_slots_take_writes(
    failover_cluster: EmbeddedCluster,
) -> None:
    cluster = failover_cluster
    victim = cluster.masters()[1]
    (replica,) = (r for r in cluster.replicas() if r.master_id == victim.node_id)
    with _plain(victim.url) as client:
        tag = _tag_in(victim.slots, client)
        client.set(f"{{{tag}}}:before", "kept")
        client.execute_command(
            "FT.CREATE",
            f"idx:{{{tag}}}",
            "ON",
            "HASH",
            "PREFIX",
            "1",
            f"{{{tag}}}:doc:",
            "SCHEMA",
            "body",
            "TEXT",
        )
        client.hset(f"{{{tag}}}:doc:1", mapping={"body": "survives failover"})
        # Replication is asynchronous: make sure the replica has it all before the crash.
        assert client.execute_command("WAIT", 1, 5000) == 1

    cluster.kill(victim.port)
    assert victim.pid is not None and not _alive(victim.pid)
    assert victim.url not in cluster.urls
    promoted = cluster.wait_for_failover(victim.port, timeout=60)

    assert promoted.node_id == replica.node_id
    assert (promoted.role, promoted.slots) == ("master", victim.slots)
    masters = cluster.masters()
    assert len(masters) == 3 and victim.port not in {m.port for m in masters}
    assert promoted.port in {m.port for m in masters}
    for url in cluster.urls:
        with _plain(url) as client:
            assert client.execute_command("CLUSTER INFO")["cluster_state"] == "ok", url

    with RedisCluster.from_url(cluster.url, decode_responses=True, socket_timeout=5) as client:
        assert client.get_node_from_key(f"{{{tag}}}:after").port == promoted.port
        assert client.set(f"{{{tag}}}:after", "written")
        assert client.get(f"{{{tag}}}:after") == "written"
        assert client.get(f"{{{tag}}}:before") == "kept"
    # The index was replicated with the data: the new master serves it.
    with _plain(promoted.url) as client:
        found = client.ft(f"idx:{{{tag}}}").search(Query("survives").no_content())
    assert [doc.id for doc in found.docs] == [f"{{{tag}}}:doc:1"]


def test_wait_for_failover_refuses_a_node_still_running(
    redis_cluster: EmbeddedCluster,
) -> None:
    with pytest.raises(EmbeddedRedisError, match="still running"):
        redis_cluster.wait_for_failover(redis_cluster.masters()[0].port, timeout=1)


def test_a_node_that_cannot_start_fails_loudly_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bogus = tmp_path / "bogus.so"
    bogus.write_text("not a shared object\n")
    monkeypatch.setenv(MODULES_ENV, str(bogus))
    with pytest.raises(EmbeddedRedisError, match="exited") as raised:
        start_embedded_cluster(tmp_path / "cluster", masters=1, replicas=0)
    assert "bogus.so" in str(raised.value)  # the node log's tail names the module


def test_a_cluster_that_does_not_form_fails_loudly_and_leaves_no_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[int] = []
    spawn = embedded_cluster._spawn

    def recording_spawn(*args: Any, **kwargs: Any) -> Any:
        server = spawn(*args, **kwargs)
        started.append(server.pid)
        return server

    monkeypatch.setattr(embedded_cluster, "_spawn", recording_spawn)
    monkeypatch.setattr(
        embedded_cluster, "_formation_problem", lambda nodes: ("stuck on purpose", nodes[0].port)
    )
    with pytest.raises(EmbeddedRedisError, match="stuck on purpose") as raised:
        start_embedded_cluster(tmp_path, masters=1, replicas=0, startup_timeout=3)
    assert "Last lines of" in str(raised.value)
    assert len(started) == 1 and not _alive(started[0])


def test_a_data_dir_holding_a_cluster_is_refused(tmp_path: Path) -> None:
    (tmp_path / "node-0").mkdir()
    (tmp_path / "node-0" / "nodes.conf").write_text("")
    with pytest.raises(EmbeddedRedisError, match="already holds cluster nodes"):
        start_embedded_cluster(tmp_path)
