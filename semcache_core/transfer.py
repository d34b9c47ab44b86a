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

from .entry import canonical_numbers
from .errors import ConfigurationError
from .l1 import clear_message

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
    """Every entry of the engine's namespace as an export record.

    A record's ``key`` is ``<tenant token>:<exact key>``, whatever the layout (one node's
    or a cluster's buckets): import re-keys each entry for the layout it writes into.
    """
    store = engine._admin_store  # patient and retried: an export must finish
    layout = engine.layout
    keys = store.scan_keys(layout.scan_pattern())
    for start in range(0, len(keys), batch):
        chunk = keys[start : start + batch]
        for name, (fields, pttl) in zip(chunk, store.read_entries(chunk), strict=True):
            if not fields:
                continue  # expired or deleted meanwhile
            token, exact = layout.relative_key(name)
            yield {
                "v": FORMAT_VERSION,
                "key": f"{token}:{exact}",
                "pttl_ms": pttl if pttl > 0 else None,
                "fields": {k.decode(): _encode(k.decode(), v) for k, v in fields.items()},
            }


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

    Every line is checked before the first write, so a bad file imports nothing.

    Numeric fields are written as the index parses them (``" 1.5"`` as ``"1.5"``).

    Raises:
        ConfigurationError: a line is not an export record, a numeric field of it is not
            a finite number, or its vector does not fit this namespace's index (other
            dimensions or data type).
    """
    with engine._state.setup_lock:  # as `CacheEngine.setup`, and an emptied Redis
        engine._cache.ensure_index(engine._store)  # gets its index before the writes
    records = _parsed(engine, lines)
    written = 0
    for start in range(0, len(records), batch):
        written += _write(engine, records[start : start + batch], progress)
    _announce_import(engine)
    return written


def _parsed(
    engine: CacheEngine, lines: Iterable[str]
) -> list[tuple[str, dict[str, bytes], int | None]]:
    dims = engine._dims
    width = 2 if engine.config.datatype == "float16" else 4
    records: list[tuple[str, dict[str, bytes], int | None]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if record.get("v") != FORMAT_VERSION or ":" not in record["key"]:
                raise ValueError("not a semcache export record")
            # Numbers as the index parses them: a NaN or garbage created_at would leave
            # the entry out of the index, where no search or invalidation finds it.
            fields = canonical_numbers({k: _decode(v) for k, v in record["fields"].items()})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigurationError(
                f"line {number}: {exc}; nothing was imported (fix or cut the file there)"
            ) from None
        vector = fields.get("vector")
        if vector is not None and dims is not None and len(vector) != dims * width:
            raise ConfigurationError(
                f"line {number}: the vector has {len(vector) // width} dimensions but this "
                f"namespace's index has {dims} ({engine.config.datatype}); import into a "
                "namespace built with the same embedding model"
            )
        pttl = record.get("pttl_ms")
        key = _key_for(engine, number, record["key"], fields)
        records.append((key, fields, int(pttl) if pttl else None))
    return records


def _key_for(engine: CacheEngine, number: int, key: str, fields: dict[str, bytes]) -> str:
    """The entry's key in this engine's layout (the bucket comes from its partition)."""
    layout = engine.layout
    try:
        token, exact = layout.relative_key(layout.key_prefix + key)
        partition = fields["partition"].decode("ascii")
    except (ValueError, KeyError, UnicodeDecodeError):
        raise ConfigurationError(
            f"line {number}: not a semcache export record (no tenant, key or partition); "
            "nothing was imported (fix or cut the file there)"
        ) from None
    return layout.entry_key(token, exact, partition)


def _announce_import(engine: CacheEngine) -> None:
    """Imported keys overwrote entries that L1 tiers (this process's and, announcing,
    every other's) may hold: they all drop this namespace's copies."""
    state = engine._state
    if state.l1 is not None:
        state.l1.clear()
    if engine.config.l1_publish:
        engine._admin_store.publish(clear_message())


def _write(
    engine: CacheEngine,
    records: list[tuple[str, dict[str, bytes], int | None]],
    progress: Callable[[int], None] | None,
) -> int:
    n = engine._admin_store.write_entries(records)  # idempotent: safe to retry
    if progress is not None:
        progress(n)
    return n
