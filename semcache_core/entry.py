"""What a cache entry looks like in Redis, and the pure functions that read and write
it. No I/O: the store calls these around its commands, for sync and async alike.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .request import CacheRequest, tag_digest

ENTRY_VERSION = b"1"
# Fields an exact lookup reads (HMGET) and a semantic lookup returns (FT.SEARCH RETURN):
# everything but the vector, which is large and not needed to serve.
READ_FIELDS: tuple[str, ...] = (
    "v",
    "partition",
    "payload",
    "codec",
    "created_at",
    "expires_at",
    "ttl",
    "question",
    "min_sim",
    "usage",
)
# Fields the index holds as NUMERIC. A value RediSearch cannot parse ("nan", "garbage",
# " 1", "1e999", "") makes it leave the whole hash out of the index: no search, count or
# filtered invalidation finds the entry again. Nothing semcache writes may carry one.
INDEXED_NUMBERS: tuple[str, ...] = ("created_at", "expires_at")
# Numeric fields a read parses (an unparseable one makes the entry corrupt); "" is none.
READ_NUMBERS: tuple[str, ...] = ("ttl", "min_sim")
# A decimal number as RediSearch's NUMERIC parser takes it (no spaces, no "_", no hex).
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class StoredEntry:
    """An entry as read back from Redis."""

    key: str
    payload: bytes
    codec: str
    partition: str
    created_at: float
    expires_at: float | None
    ttl: float | None
    question: str | None
    distance: float | None = None  # cosine distance, for semantic candidates
    # The entry's own similarity floor, raised when shadow verdicts found it answering a
    # different question at that similarity (None: the tenant's threshold alone).
    min_similarity: float | None = None
    usage: bytes | None = None  # the answering call's token usage (pricing.Usage JSON)

    @property
    def similarity(self) -> float | None:
        """Cosine similarity (1 - distance), the one scale users set thresholds on."""
        return None if self.distance is None else 1.0 - self.distance


class CorruptEntry(ValueError):
    """An entry's fields are missing or malformed, or its decoder raised
    `SerializationError` (the payload is not data it can read): the lookup deletes it."""


class DecodeFailed(Exception):
    """A decoder raised something other than `SerializationError`: the framework failed
    to build its objects from data it could read (its classes changed, say). Not the
    entry's fault, so the lookup ends as an error and the entry is kept.

    The message names the key, the codec and the exception's type, never its text: a
    pydantic error quotes its input, which is the cached answer. The exception itself is
    ``error``; the engine raises this with its traceback (and ``from None``), so a logged
    one shows where the decoder failed without quoting the payload.
    """

    def __init__(self, key: str, codec: str, error: BaseException) -> None:
        kind = type(error)
        super().__init__(
            f"the {codec!r} decoder raised {kind.__module__}.{kind.__qualname__} on {key}; "
            "the entry is kept"
        )
        self.key = key
        self.codec = codec
        self.error = error


def vector_bytes(vector: Sequence[float], datatype: str) -> bytes:
    dtype = np.float16 if datatype == "float16" else np.float32
    arr = np.asarray(vector, dtype=dtype)
    if arr.ndim != 1 or not np.all(np.isfinite(arr)):
        raise ValueError("embedding must be a flat vector of finite numbers")
    return arr.tobytes()


def indexable(value: Any) -> bool:
    """Whether RediSearch indexes ``value`` as a NUMERIC field: a finite number."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    try:
        text = _text(value)
    except UnicodeDecodeError:
        return False
    return _DECIMAL.fullmatch(text) is not None and math.isfinite(float(text))


def check_indexable(fields: Mapping[str, Any]) -> None:
    """Refuse an entry the index would leave out (the store calls it on every write).

    Raises:
        ValueError: an indexed numeric field is not a finite decimal number.
    """
    for name in INDEXED_NUMBERS:
        value = fields.get(name)
        if value is not None and not indexable(value):
            raise ValueError(
                f"refusing to write an entry whose {name} is not a finite number (the "
                "index would leave it out, where no search or invalidation finds it)"
            )


def canonical_numbers(fields: dict[str, bytes]) -> dict[str, bytes]:
    """An entry's numeric fields in the form the index and reads parse (for import):
    ``" 1.5"`` becomes ``"1.5"``, an empty indexed field (none) is left out.

    Raises:
        ValueError: a numeric field is not a finite number (NaN, inf, garbage).
    """
    out = dict(fields)
    for name in INDEXED_NUMBERS + READ_NUMBERS:
        raw = out.get(name)
        if raw is None:
            continue
        text = _text(raw).strip()
        if text == "":
            if name in INDEXED_NUMBERS:
                del out[name]  # none, as a read takes it; RediSearch would drop the hash
            continue
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(f"{name} is not a finite number ({text[:40]!r})")
        out[name] = repr(number).encode()
    return out


def entry_fields(
    request: CacheRequest,
    *,
    payload: bytes,
    codec: str,
    vector: bytes | None,
    now: float,
    ttl: float | None,
    usage: str | None = None,
) -> dict[str, bytes | str | float]:
    """The HASH fields of a new entry."""
    fields: dict[str, bytes | str | float] = {
        "v": ENTRY_VERSION,
        "tenant": request.tenant_token,
        "scope": request.scope_token,
        "partition": request.partition,
        "tags": ",".join(tag_digest(t) for t in request.tags),
        "created_at": now,
        "payload": payload,
        "codec": codec,
        "ttl": "" if ttl is None else repr(float(ttl)),
        # Unindexed bookkeeping, kept for export and inspection.
        "tenant_id": request.tenant.encode("utf-8", "surrogatepass"),
        "tag_names": json.dumps(list(request.tags), ensure_ascii=True),
        "question": (request.question or "").encode("utf-8", "surrogatepass"),
    }
    if ttl is not None:
        fields["expires_at"] = now + ttl
    if vector is not None:
        fields["vector"] = vector
    if usage is not None:
        fields["usage"] = usage
    check_indexable(fields)  # a clock that returned NaN or inf: refused, not unindexed
    return fields


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else str(value)


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    text = _text(value)
    if text == "":
        return None
    number = float(text)
    if math.isnan(number):
        raise CorruptEntry("NaN in a numeric field")
    return number


def parse_entry(key: str, fields: Mapping[str, Any], distance: Any = None) -> StoredEntry:
    """Read an entry's fields (from HMGET or FT.SEARCH).

    Raises:
        CorruptEntry: a field is missing or malformed.
    """
    try:
        if fields.get("v") is None or fields.get("payload") is None:
            raise CorruptEntry("missing version or payload")
        if _text(fields["v"]) != ENTRY_VERSION.decode():
            raise CorruptEntry(f"unknown entry version {fields['v']!r}")
        payload = fields["payload"]
        if not isinstance(payload, bytes):
            payload = _text(payload).encode("utf-8", "surrogatepass")
        created = _optional_float(fields.get("created_at"))
        question = fields.get("question")
        return StoredEntry(
            key=key,
            payload=payload,
            codec=_text(fields.get("codec") or b""),
            partition=_text(fields.get("partition") or b""),
            created_at=created if created is not None else 0.0,
            expires_at=_optional_float(fields.get("expires_at")),
            ttl=_optional_float(fields.get("ttl")),
            question=_text(question) if question else None,
            distance=_optional_float(distance),
            min_similarity=_optional_float(fields.get("min_sim")),
            usage=fields.get("usage") or None,
        )
    except CorruptEntry:
        raise
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise CorruptEntry(str(exc)) from exc


def _kv(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return {_text(k): v for k, v in raw.items()}
    raw = raw or []
    return {_text(raw[j]): raw[j + 1] for j in range(0, len(raw) - 1, 2)}


def parse_search_reply(reply: Any, *, content: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """Turn an FT.SEARCH reply (RESP2 list or RESP3 map) into ``[(key, {field: value})]``.

    ``content=False`` reads a ``NOCONTENT`` reply (keys only). With content, a document
    whose fields come back nil or empty is left out: RediSearch on a cluster without a
    coordinator answers that for a document held by another shard, and one just deleted
    or expired can look the same. It is a miss, never a corrupt entry to delete.
    """
    if isinstance(reply, dict):
        results = reply.get(b"results", reply.get("results")) or []
        out = []
        for item in results:
            item = _kv(item)
            if "id" not in item:
                continue  # a partial result (the query hit RediSearch's TIMEOUT)
            fields = _kv(item.get("extra_attributes") or {})
            if content and not fields:
                continue
            out.append((_text(item["id"]), fields))
        return out
    if not isinstance(reply, list) or not reply:
        return []
    items = reply[1:]
    if not content:
        return [(_text(k), {}) for k in items]
    pairs = [(items[i], items[i + 1]) for i in range(0, len(items) - 1, 2)]
    return [(_text(key), _kv(fields)) for key, fields in pairs if fields]


def parse_keys_reply(reply: Any) -> list[str]:
    """Keys from an FT.SEARCH ... NOCONTENT reply."""
    return [key for key, _ in parse_search_reply(reply, content=False)]
