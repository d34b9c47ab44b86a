"""The persisted totals as JSON over HTTP, next to Prometheus' ``/metrics``.

Two ways to serve them, with the same routes and the same numbers as
`CacheEngine.stats` / ``semcache stats``:

* ``semcache metrics`` serves ``/metrics`` (Prometheus) and the JSON routes below from
  one small threaded server (`serve_exporter`);
* `statistics_app` is a plain ASGI callable (no framework needed) to mount in an app
  that already runs FastAPI or Starlette: ``app.mount("/metrics/cache/statistics",
  statistics_app(engine))``.

Routes (``?tenant=ID`` narrows any of them to one tenant):

=======================================  ==============================================
``GET /metrics/cache/statistics``        combined: requests, hits, misses, hit_rate,
                                         writes, tokens_saved, cost_saved_usd, ...
``GET /metrics/cache/statistics/exact``  the exact layer's hits and hit rate
``GET /metrics/cache/statistics/semantic`` the semantic layer's (served, promoted,
                                         shadow)
=======================================  ==============================================

Unknown layers answer 404, an unreachable Redis 503, both with ``{"error": ...}``.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .errors import BackendUnavailableError

__all__ = [
    "LAYERS",
    "STATISTICS_PATH",
    "serve_exporter",
    "statistics",
    "statistics_app",
    "statistics_response",
]

STATISTICS_PATH = "/metrics/cache/statistics"
LAYERS = ("exact", "semantic")

_INT_FIELDS = (
    "requests",
    "exact_hits",
    "semantic_hits",
    "promoted",
    "shadow_hits",
    "guarded",
    "misses",
    "bypassed",
    "errors",
    "stores",
    "stores_skipped",
    "stale_served",
    "tokens_saved",
    "entries",
)

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]


def _sum(views: list[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {name: sum(int(v.get(name, 0)) for v in views) for name in _INT_FIELDS}
    out["cost_saved_usd"] = sum(float(v.get("cost_saved_usd", 0.0)) for v in views)
    return out


def statistics(
    totals: Mapping[str, Mapping[str, Any]], tenant: str | None = None, layer: str | None = None
) -> dict[str, Any]:
    """The JSON body for persisted totals (``stats()["totals"]``); pure.

    Args:
        totals: tenant -> summarized totals, as `CacheEngine.stats` returns them.
        tenant: one tenant (zeros if it has no recorded totals), else every tenant summed.
        layer: ``"exact"`` or ``"semantic"`` for one layer, ``None`` for the combined view.

    Raises:
        KeyError: an unknown layer.
    """
    views = [totals[tenant]] if tenant is not None and tenant in totals else []
    if tenant is None:
        views = list(totals.values())
    t = _sum(views)
    requests = t["requests"]

    def rate(n: int) -> float:
        return n / requests if requests else 0.0

    hits = t["exact_hits"] + t["semantic_hits"] + t["promoted"]
    head: dict[str, Any] = {"tenant": tenant, "requests": requests}
    if layer is None:
        return {
            **head,
            "hits": hits,
            "misses": t["misses"],
            "hit_rate": rate(hits),
            "exact_hits": t["exact_hits"],
            "semantic_hits": t["semantic_hits"],
            "promoted": t["promoted"],
            "shadow_hits": t["shadow_hits"],
            "guarded": t["guarded"],
            "bypassed": t["bypassed"],
            "errors": t["errors"],
            "writes": t["stores"],
            "writes_skipped": t["stores_skipped"],
            "stale_served": t["stale_served"],
            "tokens_saved": t["tokens_saved"],
            "cost_saved_usd": t["cost_saved_usd"],
            "entries": t["entries"],
        }
    if layer == "exact":
        return {
            **head,
            "layer": "exact",
            "hits": t["exact_hits"],
            "hit_rate": rate(t["exact_hits"]),
        }
    if layer == "semantic":
        served = t["semantic_hits"] + t["promoted"]
        return {
            **head,
            "layer": "semantic",
            "hits": served,
            "hit_rate": rate(served),
            "live_hits": t["semantic_hits"],
            "promoted": t["promoted"],
            "shadow_hits": t["shadow_hits"],
            "guarded": t["guarded"],
        }
    raise KeyError(layer)


def statistics_response(
    engine: Any, path: str, query: str, *, mounted: bool = False
) -> tuple[int, dict[str, Any]] | None:
    """Status and JSON body for a request path; ``None`` when the path is not a
    statistics route. Blocks on Redis (the exporter's threads); `astatistics_response`
    is the async twin.
    """
    route = _route(path, query, mounted)
    if not isinstance(route, _Route):
        return route
    return _render(engine, engine.stats(route.tenant), route)


async def astatistics_response(
    engine: Any, path: str, query: str, *, mounted: bool = False
) -> tuple[int, dict[str, Any]] | None:
    """The async twin of `statistics_response` (``engine.astats``)."""
    route = _route(path, query, mounted)
    if not isinstance(route, _Route):
        return route
    return _render(engine, await engine.astats(route.tenant), route)


@dataclass(frozen=True)
class _Route:
    tenant: str | None
    layer: str | None


def _render(engine: Any, snap: dict[str, Any], route: _Route) -> tuple[int, dict[str, Any]]:
    totals = snap.get("totals")
    if totals is None:
        reason = snap.get("totals_error") or "cannot read the totals"
        return 503, {"error": f"Redis unavailable: {reason}"}
    body = statistics(totals, route.tenant, route.layer)
    return 200, {"namespace": engine.config.namespace, **body}


def _route(path: str, query: str, mounted: bool) -> _Route | tuple[int, dict[str, Any]] | None:
    """Status and JSON body for a request path; ``None`` when the path is not a
    statistics route. Blocks on Redis.

    Args:
        engine: whose totals to read.
        path: ``/metrics/cache/statistics[/layer]``, or with ``mounted`` also the path
            relative to the mount point (``/``, ``/exact``).
        query: the raw query string (``tenant=ID``).
        mounted: accept relative paths.
    """
    rest = path.rstrip("/")
    if rest == STATISTICS_PATH or rest.startswith(STATISTICS_PATH + "/"):
        rest = rest[len(STATISTICS_PATH) :]
    elif not mounted or rest.startswith("/metrics"):
        return None
    layer = rest.lstrip("/") or None
    if layer is not None and "/" in layer:
        return None
    if layer is not None and layer not in LAYERS:
        return 404, {"error": f"no layer {layer!r}; use one of {', '.join(LAYERS)}"}
    params = parse_qs(query, keep_blank_values=True)
    tenant = params["tenant"][-1] if params.get("tenant") else None
    if tenant == "":
        return 400, {"error": "tenant must be a non-empty string"}
    return _Route(tenant, layer)


def _encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def statistics_app(engine: Any) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A plain ASGI app serving the statistics routes of ``engine``.

    Mount it where you like; paths are taken relative to the mount point (``/`` and
    ``/exact``, ``/semantic``), and the full ``/metrics/cache/statistics[/layer]`` paths
    work too. Redis is read with redis.asyncio (``engine.astats``): the loop never blocks.

    Args:
        engine: the `CacheEngine` whose namespace to report.

    Returns:
        An ASGI 3 callable (``http`` requests; ``lifespan`` is acknowledged).

    Example:
        >>> app.mount("/metrics/cache/statistics", statistics_app(engine))  # doctest: +SKIP
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path: str = scope.get("path", "/")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            status, body = 405, {"error": "use GET"}
        else:
            query = scope.get("query_string", b"").decode("latin-1")
            try:
                found = await astatistics_response(engine, path, query, mounted=True)
            except BackendUnavailableError as exc:
                found = 503, {"error": str(exc)}
            status, body = found if found is not None else (404, {"error": "not found"})
        payload = _encode(body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app


def serve_exporter(
    engine: Any, host: str, port: int, registry: Any
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve ``/metrics`` (from ``registry``) and the statistics routes from a daemon thread.

    Returns:
        The server (``server.server_address`` has the bound port) and its thread.

    Raises:
        OSError: the address cannot be bound.
    """
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path in ("/metrics", "/metrics/"):
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                return
            try:
                found = statistics_response(engine, url.path, url.query)
            except BackendUnavailableError as exc:
                found = 503, {"error": str(exc)}
            status, body = found if found is not None else (404, {"error": "not found"})
            self._reply(status, _encode(body), "application/json")

        def _reply(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return  # no access log: query strings carry tenant ids

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

    server = Server((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="semcache-metrics", daemon=True)
    thread.start()
    return server, thread
