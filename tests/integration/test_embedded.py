"""Integration tests of the embedded Redis against the real redis-server and modules."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from semcache_core.embedded import (
    EmbeddedRedis,
    find_modules,
    find_redis_server,
    start_embedded_redis,
)
from semcache_core.errors import EmbeddedRedisError

Start = Callable[..., EmbeddedRedis]


@pytest.fixture
def start() -> Iterator[Start]:
    """start_embedded_redis that always stops what it started, even if the test fails."""
    servers: list[EmbeddedRedis] = []

    def _start(*args: Any, **kwargs: Any) -> EmbeddedRedis:
        kwargs.setdefault("stop_at_exit", False)
        server = start_embedded_redis(*args, **kwargs)
        servers.append(server)
        return server

    yield _start
    for server in reversed(servers):
        server.stop()


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped, so the pid names no process
    return proc.pid


def test_start_ping_search_and_stop(start: Start, tmp_path: Path) -> None:
    server = start(tmp_path)
    assert server.started
    assert server.pid is not None
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert server.data_dir == tmp_path.resolve()
    with _client(server.url) as client:
        assert client.ping()
        names = {m[b"name"] for m in client.module_list()}
        assert {b"search", b"ReJSON"} <= names
        assert client.execute_command("FT._LIST") == []
        assert client.info("server")["process_id"] == server.pid
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
    state = json.loads((tmp_path / "server.json").read_text())
    assert state == {"pid": server.pid, "port": server.port, "url": server.url}
    assert (tmp_path / "redis.log").stat().st_size > 0

    server.stop()
    assert not _alive(server.pid)
    assert not (tmp_path / "server.json").exists()
    server.stop()  # idempotent


def test_second_start_reuses_and_does_not_stop(start: Start, tmp_path: Path) -> None:
    first = start(tmp_path)
    second = start(tmp_path)
    assert not second.started
    assert (second.port, second.pid, second.url) == (first.port, first.pid, first.url)

    second.stop()
    with _client(first.url) as client:
        assert client.ping()

    with pytest.raises(EmbeddedRedisError, match="reuse=True"):
        start(tmp_path, reuse=False)
    with pytest.raises(EmbeddedRedisError, match="already running"):
        start(tmp_path, port=first.port + 1 if first.port < 65535 else 1024)


def test_concurrent_starts_share_one_server(start: Start, tmp_path: Path) -> None:
    results: list[EmbeddedRedis] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(start(tmp_path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(s.started for s in results) == [False, False, True]
    assert len({s.port for s in results}) == 1


def test_stale_state_with_dead_pid_is_ignored(start: Start, tmp_path: Path) -> None:
    dead = _dead_pid()
    (tmp_path / "server.json").write_text(
        json.dumps({"pid": dead, "port": 1, "url": "redis://127.0.0.1:1/0"})
    )
    server = start(tmp_path)
    assert server.started
    assert server.pid != dead
    state = json.loads((tmp_path / "server.json").read_text())
    assert state["pid"] == server.pid


def test_state_naming_another_server_is_ignored(start: Start, tmp_path: Path) -> None:
    # A live pid and a port that answers, but the server there is not the recorded one.
    other = start(tmp_path / "other")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "server.json").write_text(
        json.dumps({"pid": os.getpid(), "port": other.port, "url": other.url})
    )
    server = start(mine)
    assert server.started
    assert server.port != other.port


def test_garbage_state_is_ignored(start: Start, tmp_path: Path) -> None:
    (tmp_path / "server.json").write_text("{not json")
    assert start(tmp_path).started


def test_data_persists_across_restart(start: Start, tmp_path: Path) -> None:
    first = start(tmp_path, appendfsync="always", maxmemory="64mb")
    with _client(first.url) as client:
        client.set("answer", "42")
        assert client.config_get("maxmemory") == {"maxmemory": str(64 * 1024 * 1024)}
    first.stop()

    second = start(tmp_path)
    assert second.started
    with _client(second.url) as client:
        assert client.get("answer") == b"42"


def test_explicit_port_in_use(start: Start, tmp_path: Path) -> None:
    other = start(tmp_path / "other")
    with pytest.raises(EmbeddedRedisError, match=f"Port {other.port}.*already in use"):
        start(tmp_path / "mine", port=other.port)
    # The clash must not have touched the server that owned the port.
    with _client(other.url) as client:
        assert client.info("server")["process_id"] == other.pid


def test_missing_server_binary(
    monkeypatch: pytest.MonkeyPatch, start: Start, tmp_path: Path
) -> None:
    monkeypatch.setenv("SEMCACHE_REDIS_SERVER", "/nonexistent")
    with pytest.raises(EmbeddedRedisError, match="SEMCACHE_REDIS_SERVER"):
        find_redis_server()
    with pytest.raises(EmbeddedRedisError, match="SEMCACHE_REDIS_SERVER"):
        start(tmp_path)


def test_missing_module_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEMCACHE_REDIS_MODULES", str(tmp_path / "nope.so"))
    with pytest.raises(EmbeddedRedisError, match="SEMCACHE_REDIS_MODULES"):
        find_modules()


def test_module_that_fails_to_load_reports_log(
    monkeypatch: pytest.MonkeyPatch, start: Start, tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.so"
    bogus.write_text("not a shared object")
    monkeypatch.setenv("SEMCACHE_REDIS_MODULES", str(bogus))
    with pytest.raises(EmbeddedRedisError, match=r"(?s)exited with code .*bogus\.so"):
        start(tmp_path / "data")
    assert not (tmp_path / "data" / "server.json").exists()


def test_server_without_search_is_stopped(
    monkeypatch: pytest.MonkeyPatch, start: Start, tmp_path: Path
) -> None:
    rejson = next(p for p in find_modules() if p.name == "rejson.so")
    monkeypatch.setenv("SEMCACHE_REDIS_MODULES", str(rejson))
    with pytest.raises(EmbeddedRedisError, match="search"):
        start(tmp_path)
    assert not (tmp_path / "server.json").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"appendfsync": "sometimes"}, "appendfsync"),
        ({"maxmemory": "50%"}, "maxmemory"),
        ({"port": 0}, "port"),
    ],
)
def test_bad_arguments(start: Start, tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(EmbeddedRedisError, match=message):
        start(tmp_path, **kwargs)


def test_data_dir_from_env(monkeypatch: pytest.MonkeyPatch, start: Start, tmp_path: Path) -> None:
    monkeypatch.setenv("SEMCACHE_DATA_DIR", str(tmp_path / "from env"))
    server = start()
    assert server.data_dir == (tmp_path / "from env").resolve()
    assert (server.data_dir / "server.json").exists()


def test_run_foreground_stops_on_sigterm(tmp_path: Path) -> None:
    code = "import sys; from semcache_core.embedded import run_foreground; "
    code += "sys.exit(run_foreground(sys.argv[1]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        state_file = tmp_path / "server.json"
        deadline = time.monotonic() + 20
        while not state_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        state = json.loads(state_file.read_text())
        with _client(state["url"]) as client:
            assert client.ping()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert state["url"] in out
    assert "Press Ctrl-C to stop" in out
    assert not _alive(state["pid"])


@pytest.mark.parametrize("stop_at_exit", [True, False])
def test_stop_at_exit(tmp_path: Path, stop_at_exit: bool) -> None:
    code = (
        "import sys; from semcache_core.embedded import start_embedded_redis; "
        "s = start_embedded_redis(sys.argv[1], stop_at_exit=sys.argv[2] == '1'); print(s.pid)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), "1" if stop_at_exit else "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    pid = int(out)
    try:
        if stop_at_exit:
            assert not _alive(pid)
        else:
            # Left running on purpose, and a later process adopts it.
            assert _alive(pid)
            with start_embedded_redis(tmp_path) as adopted:
                assert not adopted.started
                assert adopted.pid == pid
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
