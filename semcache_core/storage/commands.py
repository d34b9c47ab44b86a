"""Command arguments and reply parsers shared by the async store and its generated
sync twin. Pure: building ``FT.SEARCH`` arguments or parsing a stream reply needs no I/O.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from enum import Enum
from typing import Any

from redisvl.schema import IndexSchema

from .. import query
from ..config import CacheConfig
from ..entry import READ_FIELDS
from .layout import Layout


def search_args(
    layout: Layout,
    config: CacheConfig,
    partition: str,
    vector: bytes,
    k: int = 1,
    plan: tuple[str | None, int | None] | None = None,
) -> list[Any]:
    """A lookup's KNN query; ``plan`` is `index_choice.query_plan`'s (policy, EF_RUNTIME)
    (``None``: the configured policy, the index's own EF_RUNTIME)."""
    index, expr = search_query(layout, config, partition, k, plan)
    args: list[Any] = ["FT.SEARCH", index, expr, "PARAMS", 2, "vec", vector]
    args += ["RETURN", len(READ_FIELDS) + 1, *READ_FIELDS, "distance"]
    args += ["SORTBY", "distance", "LIMIT", 0, k, "DIALECT", 2]
    return args


def search_query(
    layout: Layout,
    config: CacheConfig,
    partition: str,
    k: int = 1,
    plan: tuple[str | None, int | None] | None = None,
) -> tuple[str, str]:
    """``(index, query string)`` of `search_args` (the same for every lookup of a
    partition under one plan: kept, see `_knn_query`)."""
    if plan is None:
        plan = (None if config.hybrid_policy == "auto" else config.hybrid_policy), None
    index = layout.index_of(layout.bucket_of(partition))
    return index, _knn_query(partition, k, *plan)


@functools.lru_cache(maxsize=4096)
def _knn_query(partition: str, k: int, policy: str | None, ef: int | None) -> str:
    return query.knn(
        query.tag_any("partition", [partition]),
        k=k,
        vector_param="vec",
        hybrid_policy=policy,
        ef_runtime=ef,
    )


def filter_args(index: str, expr: str, batch: int) -> list[Any]:
    return ["FT.SEARCH", index, expr, "NOCONTENT", "LIMIT", 0, batch, "DIALECT", 2]


def count_args(index: str, expr: str) -> list[Any]:
    return ["FT.SEARCH", index, expr, "NOCONTENT", "LIMIT", 0, 0, "DIALECT", 2]


def create_args(schema: IndexSchema) -> list[Any]:
    """``FT.CREATE`` of a RedisVL schema, as RedisVL's ``create`` would send it (built
    here so the store can send it to the shard that must hold the index)."""
    index = schema.index
    args: list[Any] = ["FT.CREATE", index.name, "ON", "HASH"]
    args += ["PREFIX", 1, index.prefix, "SCHEMA"]
    for field in schema.redis_fields:
        args += [arg.value if isinstance(arg, Enum) else arg for arg in field.redis_args()]
    return args


def info_fields(info: Any) -> dict[str, Any]:
    """An FT.INFO reply (RESP2 list or RESP3 map) as ``{name: value}``, names decoded."""
    if isinstance(info, dict):
        return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in info.items()}
    return {
        (info[i].decode() if isinstance(info[i], bytes) else str(info[i])): info[i + 1]
        for i in range(0, len(info) - 1, 2)
    }


def _number(value: Any) -> float:
    try:
        return float(value.decode() if isinstance(value, bytes) else value)
    except (TypeError, ValueError):
        return 0.0


def index_progress(info: Any) -> tuple[int, bool]:
    """``(documents, done)`` of an index from its FT.INFO: done once the scan of the
    keys that existed at FT.CREATE has finished (``indexing`` 0, ``percent_indexed`` 1)."""
    fields = info_fields(info)
    done = _number(fields.get("indexing")) == 0 and _number(fields.get("percent_indexed", 1)) >= 1
    return int(_number(fields.get("num_docs"))), done


# Replace the meta key's document only if it is still the one the caller read.
REPLACE_META_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end
return 0
"""


def count_reply(reply: Any) -> int:
    if isinstance(reply, dict):
        return int(reply.get(b"total_results", reply.get("total_results")) or 0)
    return int(reply[0])


def expiry_ms(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


AUDIT_LIMIT = 1000

# Raise an entry's similarity floor, never lower it, and never create a hash for an
# entry that has gone (expired or invalidated meanwhile).
RAISE_FLOOR_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local current = tonumber(redis.call('HGET', KEYS[1], 'min_sim') or '-1')
if tonumber(ARGV[1]) > current then redis.call('HSET', KEYS[1], 'min_sim', ARGV[1]) end
return 1
"""


# Keep an entry's ARGV[2] highest disagreeing similarities; once it has that many, its
# floor rises just above the lowest of them (ARGV[3] is the step). Returns 0 when the
# entry is gone, 1 while evidence is short, 2 when the floor was (re)computed.
DISAGREE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local need = tonumber(ARGV[2])
local sims = {tonumber(ARGV[1])}
local raw = redis.call('HGET', KEYS[1], 'dis_sims')
if raw then
  for x in string.gmatch(raw, '[^,]+') do table.insert(sims, tonumber(x)) end
end
table.sort(sims, function(a, b) return a > b end)
while #sims > need do table.remove(sims) end
local parts = {}
for i, x in ipairs(sims) do parts[i] = string.format('%.17g', x) end
redis.call('HSET', KEYS[1], 'dis_sims', table.concat(parts, ','))
if #sims < need then return 1 end
local floor = math.min(1.0, sims[need] + tonumber(ARGV[3]))
local current = tonumber(redis.call('HGET', KEYS[1], 'min_sim') or '-1')
if floor > current then redis.call('HSET', KEYS[1], 'min_sim', string.format('%.17g', floor)) end
return 2
"""


def xadd_args(key: str, fields: dict[str, Any], limit: int) -> list[Any]:
    args: list[Any] = ["XADD", key, "MAXLEN", "=", limit, "*"]
    for name, value in fields.items():
        args += [name, value]
    return args


def parse_stream(reply: Any) -> list[dict[str, Any]]:
    """XRANGE / XREVRANGE reply -> ``[{field: value, "id": id}]`` (bytes keys decoded)."""
    out = []
    for entry_id, raw in reply or []:
        pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=False)
        item = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in pairs}
        item["id"] = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        out.append(item)
    return out


def counter_commands(layout: Layout, taken: dict[str, Any]) -> list[tuple[Any, ...]]:
    """HSETNX / HINCRBY / HINCRBYFLOAT for buffered counters (`PendingCounts.take`)."""
    out: list[tuple[Any, ...]] = []
    for tenant, (ints, floats) in taken.items():
        key = layout.stats_key(tenant)
        out.append(("HSETNX", key, "tenant_id", tenant.encode("utf-8", "surrogatepass")))
        for name, n in ints.items():
            if n:
                out.append(("HINCRBY", key, name, n))
        for name, x in floats.items():
            if x:
                out.append(("HINCRBYFLOAT", key, name, repr(x)))
    return out


def index_summary(info: Any) -> dict[str, Any]:
    """Entries and memory of the index from FT.INFO (``None``: no index)."""
    if info is None:
        return {"entries": 0, "memory_mb": 0.0}
    if isinstance(info, dict):
        pairs = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in info.items()}
    else:
        pairs = {
            (info[i].decode() if isinstance(info[i], bytes) else str(info[i])): info[i + 1]
            for i in range(0, len(info) - 1, 2)
        }

    def num(name: str) -> float:
        value = pairs.get(name)
        try:
            return float(value.decode() if isinstance(value, bytes) else value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return 0.0

    # total_index_memory_sz_mb leaves the vector index out (RediSearch 2.10).
    memory = num("total_index_memory_sz_mb") + num("vector_index_sz_mb")
    return {"entries": int(num("num_docs")), "memory_mb": round(memory, 3)}


def index_totals(infos: Sequence[Any]) -> dict[str, Any]:
    """`index_summary` summed over a namespace's bucket indexes."""
    parts = [index_summary(info) for info in infos]
    return {
        "entries": sum(p["entries"] for p in parts),
        "memory_mb": round(sum(p["memory_mb"] for p in parts), 3),
    }


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# Release a coalescing lock only if we still hold it.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Take over a coalescing lock whose holder we watched expire its wait (same token).
TAKEOVER_LUA = """
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
