"""A TCP proxy that cuts connections, for the dropped-connection tests.

Run as ``python -m tests.reliability.proxy UPSTREAM_PORT``: it prints its own port, then
reads commands on stdin, one per line, answering each with the number of connections cut
so far: ``cut`` (reset every open connection now), ``mid`` (from now on, forward each
request to Redis and then reset the client's connection before the reply comes back),
``heal`` (stop cutting), ``quit``.

``python -m tests.reliability.proxy UPSTREAM_PORT --tls CERT KEY`` is a TLS terminator
instead (the embedded redis-server is built without TLS): it prints its port and forwards
until stdin closes.

``python -m tests.reliability.proxy UPSTREAM_PORT --delay MS`` holds every reply MS
milliseconds before passing it on (a Redis that is slow but alive: each round trip takes
MS longer, in order): it prints its port, then reads a new delay in milliseconds per
line on stdin, answering ``ok``, until stdin closes.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any


class CuttingProxy:
    """A one-thread TCP proxy between the cache and Redis that can break connections.

    * `cut_all`: reset (RST) every open connection now, whatever is in flight.
    * `cut_mid_command`: from now on, each client connection that sends a request has
      that request forwarded to Redis and is then reset before the reply comes back:
      the command ran, the client never hears of it.
    * `heal`: stop cutting.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, ("accept", None))
        self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._peers: dict[socket.socket, socket.socket] = {}
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._pending_cut = False
        self._cut_done = threading.Event()
        self.mid_command = False
        self.cuts = 0  # connections reset
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="cutting-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cut_all(self) -> None:
        with self._lock:
            self._cut_done.clear()
            self._pending_cut = True
        self._wake_w.send(b"x")

    def wait_cut(self, timeout: float = 5.0) -> None:
        """Wait until the loop has carried out the last `cut_all`."""
        self._cut_done.wait(timeout)

    def cut_mid_command(self, on: bool = True) -> None:
        self.mid_command = on

    def heal(self) -> None:
        self.mid_command = False

    def close(self) -> None:
        self._stop = True
        self._wake_w.send(b"x")
        self._thread.join(timeout=5)
        for sock in list(self._peers):
            self._close(sock, reset=False)
        self._sel.close()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- loop ------------------------------------------------------------------------------
    def _close(self, sock: socket.socket, *, reset: bool) -> None:
        peer = self._peers.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._peers.pop(s, None)
            self._clients.discard(s)
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(s)
            if reset:
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            with contextlib.suppress(OSError):
                s.close()

    def _cut_everything(self) -> None:
        clients = list(self._clients)
        for client in clients:
            self._close(client, reset=True)
        self.cuts += len(clients)

    def _run(self) -> None:
        while not self._stop:
            for key, _ in self._sel.select(timeout=0.5):
                kind, _unused = key.data
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if kind == "wake":
                    with contextlib.suppress(OSError):
                        sock.recv(4096)
                    with self._lock:
                        pending, self._pending_cut = self._pending_cut, False
                    if pending:
                        self._cut_everything()
                        self._cut_done.set()
                elif kind == "accept":
                    self._accept()
                else:
                    self._pump(sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=2)
        except OSError:
            client.close()
            return
        for s in (client, upstream):
            s.setblocking(True)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(2)
        self._peers[client] = upstream
        self._peers[upstream] = client
        self._clients.add(client)
        self._sel.register(client, selectors.EVENT_READ, ("pump", None))
        self._sel.register(upstream, selectors.EVENT_READ, ("pump", None))

    def _pump(self, sock: socket.socket) -> None:
        peer = self._peers.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close(sock, reset=False)
            return
        try:
            peer.sendall(data)
        except OSError:
            self._close(sock, reset=True)
            return
        if self.mid_command and sock in self._clients:
            # The request reached Redis; the reply never reaches the client.
            self._close(sock, reset=True)
            self.cuts += 1


class ChildProxy:
    """This module run in a child process (its own GIL: its forwarding does not compete
    with the traffic it measures), with ``args`` after the upstream port: it prints its
    port first, then reads commands on stdin."""

    def __init__(self, upstream_port: int, *args: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.proxy", str(upstream_port), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],  # the repository
        )
        assert self._proc.stdout is not None and self._proc.stdin is not None
        self._out = self._proc.stdout
        self._in = self._proc.stdin
        self.port = int(self._out.readline())

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _send(self, command: str) -> str:
        self._in.write(command + "\n")
        self._in.flush()
        return self._out.readline().strip()

    def _wait(self) -> None:
        """Close stdin (ends the child), wait for it, kill it if it hangs."""
        with contextlib.suppress(OSError, ValueError):
            self._in.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._out.close()


class DelayProxyProcess(ChildProxy):
    """The ``--delay`` mode in a child process: every reply of Redis reaches the client
    ``delay`` later (a slow Redis that is alive); `set_delay` changes it for the bytes
    that arrive after."""

    def __init__(self, upstream_port: int, delay_ms: float = 0.0) -> None:
        super().__init__(upstream_port, "--delay", str(delay_ms))

    def set_delay(self, delay_ms: float) -> None:
        assert self._send(str(delay_ms)) == "ok"

    def close(self) -> None:
        self._wait()


async def _pump(reader: Any, writer: Any) -> None:
    """Copy one direction of a connection until it closes."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


def _forwarder(upstream_port: int, replies: Any = _pump) -> Any:
    """A ``start_server`` handler: each client gets a connection to Redis; requests are
    copied as they come, replies through ``replies``."""
    import asyncio

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            writer.close()
            return
        with contextlib.suppress(asyncio.CancelledError, OSError):  # (the proxy closing)
            await asyncio.gather(_pump(reader, up_writer), replies(up_reader, writer))

    return handle


async def _tls_terminator(upstream_port: int, cert: str, key: str) -> None:
    """Accept TLS on a free port and forward plain TCP to Redis, like a TLS-terminating
    load balancer (or stunnel) in front of a Redis built without TLS."""
    import asyncio
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    server = await asyncio.start_server(_forwarder(upstream_port), "127.0.0.1", 0, ssl=context)
    print(server.sockets[0].getsockname()[1], flush=True)
    # Runs until stdin closes (the test's teardown).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()


async def _delayer(upstream_port: int, delay_ms: float) -> None:
    """Forward to Redis; hold each chunk of its replies ``delay`` before passing it on
    (every chunk keeps its order: each waits for its own time, in a queue per connection)."""
    import asyncio

    delay = [delay_ms / 1000.0]
    loop = asyncio.get_running_loop()

    async def replies(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def release() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    writer.close()
                    return
                await asyncio.sleep(max(0.0, due - loop.time()))
                writer.write(data)
                with contextlib.suppress(OSError):
                    await writer.drain()

        releasing = asyncio.ensure_future(release())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + delay[0], data))
        except OSError:
            pass
        queue.put_nowait((0.0, b""))
        await releasing

    server = await asyncio.start_server(_forwarder(upstream_port, replies), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        delay[0] = float(line) / 1000.0
        print("ok", flush=True)
    server.close()


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[2] == "--delay":
        import asyncio

        asyncio.run(_delayer(int(sys.argv[1]), float(sys.argv[3])))
        return
    if len(sys.argv) == 5 and sys.argv[2] == "--tls":
        import asyncio

        asyncio.run(_tls_terminator(int(sys.argv[1]), sys.argv[3], sys.argv[4]))
        return
    proxy = CuttingProxy(int(sys.argv[1]))
    print(proxy.port, flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "cut":
            proxy.cut_all()
            proxy.wait_cut()
        elif command == "mid":
            proxy.cut_mid_command(True)
        elif command == "heal":
            proxy.heal()
        print(proxy.cuts, flush=True)
        if command == "quit":
            break
    proxy.close()


if __name__ == "__main__":
    main()
