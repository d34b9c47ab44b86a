"""The CLI against Debian's plain redis-server 7 (no search module): one fix-it line and
exit 1 where a command needs the search module, never a raw ``ResponseError``. Needs
``/usr/bin/redis-server`` (``apt-get install -y redis-server``; .ci/run installs it)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from semcache_core.cli import app

PLAIN_REDIS = Path("/usr/bin/redis-server")
runner = CliRunner()


@pytest.fixture(scope="module")
def plain_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert PLAIN_REDIS.is_file(), "Debian's redis-server is missing: apt-get install redis-server"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    data = tmp_path_factory.mktemp("plain-redis")
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [str(PLAIN_REDIS), *args, "--dir", str(data), "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server failed"
            time.sleep(0.05)
    assert client.module_list() == []  # no search module
    client.close()
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.parametrize(
    "command",
    [
        ["stats"],
        ["stats", "--tenant", "acme"],
        ["invalidate", "--tenant", "acme"],
        ["export", "-"],
        ["metrics", "--port", "0"],
    ],
)
def test_commands_that_need_search_say_so(plain_redis_url: str, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--redis-url", plain_redis_url])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: the Redis at redis://127.0.0.1:"), lines
    assert "has no search module" in lines[-1] and "semcache redis" in lines[-1]
    assert "ResponseError" not in result.output and "FT." not in result.output
    assert "Traceback" not in result.output


def test_policies_work_without_search(plain_redis_url: str) -> None:
    args = ["--redis-url", plain_redis_url]
    result = runner.invoke(
        app, ["policy", "set", "--tenant", "acme", "--semantic", "shadow", *args]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["policy", "reset", "--tenant", "acme", *args])
    assert result.exit_code == 0, result.output


def test_unreachable_redis_is_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    result = runner.invoke(app, ["stats", "--redis-url", f"redis://127.0.0.1:{port}/0"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), lines
