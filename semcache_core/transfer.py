"""Export and import a namespace's entries as JSON Lines, vectors included.

For backups and for warming a new deployment. Each line is one entry::

    {"v": 1, "key": "<tenant token>:<exact key>", "pttl_ms": 81234 | null,
     "fields": {"payload": {"b64": "..."}, "vector": {"b64": "..."}, "codec": "...", ...}}

Keys are stored without the namespace prefix, so an export imports into any namespace
whose index has the same dimensions and data type. Entries found with SCAN, never KEYS.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .engine import CacheEngine

FORMAT_VERSION = 1
_TEXT_SAFE = {"v", "tenant", "scope", "partition", "tags", "codec", "created_at", "expires_at",
              "ttl", "tag_names", "min_sim", "usage"}  # fmt: skip


def _encode(name: str, value: bytes) -> Any:
    if name in _TEXT_SAFE:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(value).decode("ascii")}


def _decode(value: Any) -> bytes:
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    if isinstance(value, str):
        return value.encode("utf-8")
    raise ValueError(f"unexpected field value {value!r}")


def iter_entries(engine: CacheEngine, batch: int = 500) -> Iterator[dict[str, Any]]:
    """Every entry of the engine's namespace as an export record."""
    client = engine._store.client
    prefix = engine.layout.key_prefix
    keys: list[bytes] = []

    def flush(chunk: list[bytes]) -> Iterator[dict[str, Any]]:
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.hgetall(key)
            pipe.pttl(key)
        replies = pipe.execute()
        for key, fields, pttl in zip(chunk, replies[::2], replies[1::2], strict=True):
            if not fields:
                continue  # expired or deleted meanwhile
            name = key.decode()
            yield {
                "v": FORMAT_VERSION,
                "key": name[len(prefix) :],
                "pttl_ms": int(pttl) if int(pttl) > 0 else None,
                "fields": {k.decode(): _encode(k.decode(), v) for k, v in fields.items()},
            }

    for key in client.scan_iter(match=engine.layout.scan_pattern(), count=1000):
        keys.append(key if isinstance(key, bytes) else str(key).encode())
        if len(keys) >= batch:
            yield from flush(keys)
            keys = []
    if keys:
        yield from flush(keys)


def export_entries(
    engine: CacheEngine, out: IO[str], progress: Callable[[int], None] | None = None
) -> int:
    """Write every entry to ``out`` as JSON Lines; returns how many."""
    n = 0
    for record in iter_entries(engine):
        out.write(json.dumps(record, separators=(",", ":")) + "\n")
        n += 1
        if progress is not None:
            progress(1)
    return n


def import_entries(
    engine: CacheEngine,
    lines: Iterable[str],
    progress: Callable[[int], None] | None = None,
    batch: int = 500,
) -> int:
    """Write exported entries into the engine's namespace (overwriting same keys).

    Raises:
        ConfigurationError: a line is not an export record, or its vector does not fit
            this namespace's index (other dimensions or data type).
    """
    engine.setup()
    dims = engine._dims
    width = 2 if engine.config.datatype == "float16" else 4
    client = engine._store.client
    pipe = client.pipeline(transaction=False)
    pending = written = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if record.get("v") != FORMAT_VERSION or ":" not in record["key"]:
                raise ValueError("not a semcache export record")
            fields = {k: _decode(v) for k, v in record["fields"].items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"line {number}: {exc}") from None
        vector = fields.get("vector")
        if vector is not None and dims is not None and len(vector) != dims * width:
            raise ConfigurationError(
                f"line {number}: the vector has {len(vector) // width} dimensions but this "
                f"namespace's index has {dims} ({engine.config.datatype}); import into a "
                "namespace built with the same embedding model"
            )
        key = engine.layout.key_prefix + record["key"]
        pipe.delete(key)
        pipe.hset(key, mapping=fields)
        if record.get("pttl_ms"):
            pipe.pexpire(key, int(record["pttl_ms"]))
        pending += 1
        if pending >= batch:
            pipe.execute()
            written += pending
            if progress is not None:
                progress(pending)
            pending = 0
    if pending:
        pipe.execute()
        written += pending
        if progress is not None:
            progress(pending)
    return written
