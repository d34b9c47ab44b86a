"""With no URL the CLI talks to the embedded Redis that `semcache redis` (or the demo) runs,
found through its data directory's ``server.json``; Ctrl-C on `semcache redis` exits 130."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from semcache_core import CacheEngine
from tests.conftest import hashed_embedder

ROOT = Path(__file__).resolve().parents[2]


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMCACHE_")}
    env.update(SEMCACHE_DATA_DIR=str(data_dir), COLUMNS="200")
    return env


def semcache(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "semcache_core.cli", *args],
        cwd=ROOT,
        env=_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_finds_the_embedded_redis(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "semcache_core.cli", "redis", "--port", str(port)],
        cwd=ROOT,
        env=_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert f"redis://127.0.0.1:{port}/0" in first, first
        engine = CacheEngine(
            f"redis://127.0.0.1:{port}/0", embedder=hashed_embedder(), namespace="n1"
        )
        req = engine.request("what is the refund window?", tenant="acme")
        engine.lookup(req)
        engine.store(req, b"30 days")
        assert engine.lookup(req).hit
        engine.close()

        # No --redis-url, no SEMCACHE_REDIS_URL: the running server is found.
        result = semcache(data_dir, "stats", "--namespace", "n1")
        assert result.returncode == 0, result.stderr
        assert "acme" in result.stdout and "Index: 1 entries" in result.stdout
        assert "Started" not in result.stderr  # it used the running one

        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 130  # Ctrl-C, as the README says
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate(timeout=30)

    # The server is gone but its data is there (as after `semcache demo`): the CLI starts
    # it for the command, and the totals survived.
    result = semcache(data_dir, "stats", "--namespace", "n1")
    assert result.returncode == 0, result.stderr
    assert "acme" in result.stdout and "Index: 1 entries" in result.stdout
    assert "Started the embedded Redis" in result.stderr
    assert not (data_dir / "server.json").exists()  # and stopped it again


def test_cli_without_any_redis_says_how_to_get_one(tmp_path: Path) -> None:
    result = semcache(tmp_path / "empty", "stats")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "semcache redis" in lines[0] and "--redis-url" in lines[0]
