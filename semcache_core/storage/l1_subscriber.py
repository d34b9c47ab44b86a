"""The L1 coherence subscriber: the pub/sub half of `semcache_core.l1`.

A daemon thread holds one pub/sub connection subscribed to the namespace's L1 channel
(`Layout.l1_channel`) and applies what writers publish there (`AsyncStore.publish`,
inside a store's write or after an invalidation) to a `LocalTier`. While it is not
subscribed the tier is cleared and serves nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..l1 import LocalTier

logger = logging.getLogger("semcache.l1")


class L1Coherence:
    """Keeps a `LocalTier` coherent with every other process of the namespace.

    A daemon thread subscribes to ``channel`` on its own connection and applies each
    message to ``tier``. It PINGs every ``heartbeat`` seconds; when the connection fails,
    or nothing (not even a PONG) arrives for ``liveness`` seconds, the tier is suspended
    (cleared, serving nothing) and the thread reconnects with exponential backoff
    (``backoff`` doubling up to ``max_backoff``). Once subscribed again the tier is cleared
    and resumes. So a process serves from its tier only while it hears the channel; a
    message published to a live subscription is applied within one network round trip.

    Args:
        tier: the tier to keep coherent; suspended until the first subscription.
        channel: the namespace's `Layout.l1_channel`.
        redis_url: where Redis is; the subscriber makes its own client from it.
        client: alternatively, a client whose pool lends the subscriber one connection
            for as long as it runs (it should not retry commands by itself).
        heartbeat: seconds between PINGs on the subscription.
        liveness: seconds of silence after which the subscription counts as dead.
        backoff: first reconnect delay in seconds.
        max_backoff: reconnect delay cap.
        connect_timeout: seconds to open the connection (only with ``redis_url``).

    Example:
        >>> tier = LocalTier(10_000, ttl=30.0)
        >>> channel = Layout("semcache", "default").l1_channel
        >>> sub = L1Coherence(tier, channel, redis_url=url).start()
        >>> sub.wait_connected(2.0)
        True
        >>> store.publish(drop_message([key]))  # any process's store
        1
    """

    def __init__(
        self,
        tier: LocalTier,
        channel: str,
        *,
        redis_url: str | None = None,
        client: redis.Redis | None = None,
        heartbeat: float = 0.25,
        liveness: float = 0.75,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        connect_timeout: float = 0.5,
    ) -> None:
        if (redis_url is None) == (client is None):
            raise ValueError("pass exactly one of redis_url= or client=")
        if not 0 < heartbeat < liveness:
            raise ValueError("need 0 < heartbeat < liveness")
        self.tier = tier
        self.channel = channel
        self.heartbeat = heartbeat
        self.liveness = liveness
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._own_client = client is None
        self._client: redis.Redis = (
            client
            if client is not None
            else redis.Redis.from_url(
                redis_url,  # type: ignore[arg-type]
                socket_connect_timeout=connect_timeout,
                socket_timeout=liveness,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
        )
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: Any = None
        self.connects = 0  # successful subscriptions (the first one included)
        self.disconnects = 0
        self.messages = 0
        self.bad_messages = 0
        tier.suspend()

    @property
    def connected(self) -> bool:
        """Subscribed and heard from within ``liveness``: the tier may serve."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until subscribed (or ``timeout``); True if subscribed."""
        return self._connected.wait(timeout)

    def start(self) -> L1Coherence:
        """Start the subscriber thread (idempotent); returns ``self``."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"semcache-l1:{self.channel}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread, suspend the tier, close what this object opened."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        self._down()
        if self._own_client:
            self._client.close()

    close = stop

    def _down(self) -> None:
        self._connected.clear()
        self.tier.suspend()
        ps, self._pubsub = self._pubsub, None
        if ps is not None:
            with contextlib.suppress(Exception):  # a broken connection: nothing to save
                ps.close()

    def _run(self) -> None:
        delay = self.backoff
        while not self._stop.is_set():
            try:
                self._listen()
                delay = self.backoff
            except Exception as exc:
                was_up = self._connected.is_set()
                self._down()
                if was_up:
                    self.disconnects += 1
                    logger.warning("semcache L1: lost %s (%s); tier cleared", self.channel, exc)
                    delay = self.backoff  # first retry soon after a drop
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, self.max_backoff)
        self._down()

    def _listen(self) -> None:
        """Subscribe and apply messages until stopped; raises when the link fails."""
        ps = self._pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
        ps.subscribe(self.channel)
        started = last_heard = last_ping = time.monotonic()
        while not self._stop.is_set():
            msg = ps.get_message(timeout=self.heartbeat)
            now = time.monotonic()
            if msg is not None:
                last_heard = now
                self._handle(msg)
            elif not self._connected.is_set() and now - started > self.liveness:
                raise ConnectionError("no subscribe confirmation")
            if now - last_heard > self.liveness:
                raise ConnectionError(f"silent for {now - last_heard:.2f} s")
            if now - last_ping >= self.heartbeat:
                ps.ping()
                last_ping = now

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "subscribe":
            # Messages published while we were away are lost: start empty.
            self.tier.resume()
            self.connects += 1
            self._connected.set()
        elif kind == "message":
            self.messages += 1
            try:
                data = msg["data"]
                if isinstance(data, bytes):
                    data = data.decode("utf-8")
                self.tier.apply(json.loads(data))
            except (ValueError, TypeError, AttributeError) as exc:
                # A message we cannot read may have meant "drop": drop everything.
                self.bad_messages += 1
                self.tier.clear()
                logger.warning("semcache L1: unreadable message on %s: %s", self.channel, exc)
