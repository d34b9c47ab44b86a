"""Every Redis command semcache sends, in sync and async twins.

The store knows nothing of frameworks and makes no decisions: the engine tells it what
to read and write. Everything that is not a command (schema, query strings, parsing)
is a pure function in `entry`, `query` or here, shared by both twins, so the twins
differ only in ``await``. One HASH per entry serves the exact layer (HMGET by key) and
the semantic layer (its vector is in the RedisVL index).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.asyncio as aredis
from redis.backoff import NoBackoff

from . import query
from .config import CacheConfig, redacted_url
from .entry import READ_FIELDS, parse_keys_reply, parse_search_reply
from .errors import ConfigurationError, SchemaMismatchError

SCHEMA_VERSION = 1
META_MIGRATION = (
    "drop the old index with `CacheEngine(..., validate=False).drop_index()` (its entries "
    "are removed and the cache refills), or use a new namespace"
)


@dataclass(frozen=True)
class Layout:
    """Names of the index and keys of one namespace."""

    prefix: str
    namespace: str

    @property
    def index_name(self) -> str:
        return f"{self.prefix}:{self.namespace}:idx"

    @property
    def key_prefix(self) -> str:
        # The trailing separator keeps namespace "a" from indexing namespace "ab".
        return f"{self.prefix}:{self.namespace}:"

    @property
    def meta_key(self) -> str:
        return f"{self.prefix}:__meta__:{self.namespace}"

    @property
    def policy_key(self) -> str:
        """HASH: tenant id -> JSON of the tenant's policy overrides."""
        return f"{self.prefix}:__policy__:{self.namespace}"

    def verdict_key(self, tenant_token: str) -> str:
        """STREAM of a tenant's shadow verdicts, capped."""
        return f"{self.prefix}:__verdicts__:{self.namespace}:{tenant_token}"

    @property
    def audit_key(self) -> str:
        """STREAM of policy changes (who, when, old, new, evidence), capped."""
        return f"{self.prefix}:__audit__:{self.namespace}"

    def entry_key(self, tenant_token: str, exact_key: str) -> str:
        return f"{self.key_prefix}{tenant_token}:{exact_key}"

    def scan_pattern(self, tenant_token: str | None = None) -> str:
        # prefix, namespace and tokens are validated or hex: no glob characters.
        return f"{self.key_prefix}{tenant_token + ':' if tenant_token else ''}*"


def index_schema_dict(config: CacheConfig, dims: int) -> dict[str, Any]:
    """The RedisVL schema of a namespace's index."""
    vector_attrs: dict[str, Any] = {
        "dims": dims,
        "algorithm": config.algorithm,
        "distance_metric": "cosine",
        "datatype": config.datatype,
    }
    if config.algorithm == "hnsw":
        vector_attrs.update(
            m=config.hnsw_m,
            ef_construction=config.hnsw_ef_construction,
            ef_runtime=config.hnsw_ef_runtime,
        )
    layout = Layout(config.key_prefix, config.namespace)
    tag = {"case_sensitive": True}
    return {
        "index": {
            "name": layout.index_name,
            "prefix": layout.key_prefix,
            "storage_type": "hash",
            "key_separator": ":",
        },
        "fields": [
            {"name": "tenant", "type": "tag", "attrs": tag},
            {"name": "scope", "type": "tag", "attrs": tag},
            {"name": "partition", "type": "tag", "attrs": tag},
            {"name": "tags", "type": "tag", "attrs": {**tag, "separator": ","}},
            {"name": "created_at", "type": "numeric"},
            {"name": "expires_at", "type": "numeric"},
            {"name": "vector", "type": "vector", "attrs": vector_attrs},
        ],
    }


def meta_document(config: CacheConfig, dims: int) -> dict[str, Any]:
    """What the meta key records about an index, checked by every later process."""
    return {
        "schema_version": SCHEMA_VERSION,
        "dims": dims,
        "algorithm": config.algorithm,
        "datatype": config.datatype,
        "distance_metric": "cosine",
    }


def check_meta(layout: Layout, found: dict[str, Any], expected: dict[str, Any]) -> None:
    """Raise `SchemaMismatchError` when an existing index differs from what we need."""
    if found.get("schema_version") != expected["schema_version"]:
        raise SchemaMismatchError(
            f"index {layout.index_name!r} has schema version {found.get('schema_version')!r}, "
            f"this semcache needs version {expected['schema_version']}: {META_MIGRATION}"
        )
    for field in ("dims", "algorithm", "datatype", "distance_metric"):
        if found.get(field) != expected[field]:
            hint = (
                "your embedder produces a different vector size than the one the index was "
                "built for (did the embedding model change?)"
                if field == "dims"
                else f"set {field}={found.get(field)!r} to use the existing index"
            )
            raise SchemaMismatchError(
                f"index {layout.index_name!r} was built with {field}={found.get(field)!r} but "
                f"this engine uses {field}={expected[field]!r}; {hint}. Otherwise "
                f"{META_MIGRATION}"
            )


def parse_meta(raw: Any, layout: Layout) -> dict[str, Any]:
    try:
        found = json.loads(raw)
        if not isinstance(found, dict):
            raise ValueError("not an object")
        return found
    except ValueError as exc:
        raise SchemaMismatchError(
            f"the meta key {layout.meta_key!r} is unreadable ({exc}): {META_MIGRATION}"
        ) from exc


def check_index_info(layout: Layout, info: Any, meta: dict[str, Any] | None) -> None:
    """An index exists: it must be ours (meta key present) and its prefix must match."""
    if meta is None:
        raise SchemaMismatchError(
            f"an index named {layout.index_name!r} exists but was not created by this "
            f"version of semcache (no {layout.meta_key!r} key): {META_MIGRATION}"
        )


NO_SEARCH_MODULE = (
    "the Redis at {url} has no search module (RediSearch / Redis Query Engine), which "
    "semcache needs for its vector index. Use Redis 8 with the Query Engine (the "
    "official redis:8 images), Redis Stack, Redis Cloud or Redis Software; locally: "
    'pip install "semcache[embedded]" and '
    "semcache_core.start_embedded_redis() (or `semcache redis`)"
)


def is_missing_index(exc: BaseException) -> bool:
    """Redis came back empty (restart without persistence, FLUSHALL, failover)."""
    text = str(exc).lower()
    return isinstance(exc, redis.ResponseError) and (
        "no such index" in text or "unknown index" in text
    )


def module_names(reply: Any) -> set[str]:
    names = set()
    for module in reply or []:
        if isinstance(module, dict):
            name = module.get(b"name", module.get("name"))
        else:
            pairs = dict(zip(module[::2], module[1::2], strict=False))
            name = pairs.get(b"name", pairs.get("name"))
        if name is not None:
            names.add((name.decode() if isinstance(name, bytes) else str(name)).lower())
    return names


def search_args(
    layout: Layout, config: CacheConfig, partition: str, vector: bytes, k: int = 1
) -> list[Any]:
    policy = None if config.hybrid_policy == "auto" else config.hybrid_policy
    expr = query.knn(
        query.tag_any("partition", [partition]), k=k, vector_param="vec", hybrid_policy=policy
    )
    args: list[Any] = ["FT.SEARCH", layout.index_name, expr, "PARAMS", 2, "vec", vector]
    args += ["RETURN", len(READ_FIELDS) + 1, *READ_FIELDS, "distance"]
    args += ["SORTBY", "distance", "LIMIT", 0, k, "DIALECT", 2]
    return args


def filter_args(layout: Layout, expr: str, batch: int) -> list[Any]:
    return ["FT.SEARCH", layout.index_name, expr, "NOCONTENT", "LIMIT", 0, batch, "DIALECT", 2]


def client_kwargs(config: CacheConfig) -> dict[str, Any]:
    # redis-py retries up to 10 times by default: each retry would add a full timeout to
    # the user's LLM call. A cache fails open instead.
    return {
        "socket_timeout": config.socket_timeout,
        "socket_connect_timeout": config.connect_timeout,
        "retry_on_timeout": False,
        "health_check_interval": 0,
        "decode_responses": False,
    }


def make_client(config: CacheConfig) -> redis.Redis:
    """A redis-py client: no retries, short timeouts, a bounded pool that queues."""
    from redis.retry import Retry

    try:
        pool = redis.BlockingConnectionPool.from_url(
            config.redis_url,
            max_connections=config.max_connections,
            timeout=config.pool_timeout,
            retry=Retry(NoBackoff(), 0),
            **client_kwargs(config),
        )
    except ValueError as exc:
        raise ConfigurationError(
            f"redis_url {redacted_url(config.redis_url)!r} is not a Redis URL ({exc}); use e.g. "
            "redis://localhost:6379/0, rediss://user:password@host:6380/0 or unix:///path.sock"
        ) from exc
    return redis.Redis.from_pool(pool)  # the client owns the pool and closes it


def make_async_client(config: CacheConfig) -> aredis.Redis:
    """The redis.asyncio twin of `make_client` (one per event loop)."""
    from redis.asyncio.retry import Retry as AsyncRetry

    pool = aredis.BlockingConnectionPool.from_url(
        config.redis_url,
        max_connections=config.max_connections,
        timeout=config.pool_timeout,
        retry=AsyncRetry(NoBackoff(), 0),
        **client_kwargs(config),
    )
    return aredis.Redis.from_pool(pool)  # the client owns the pool and closes it


def count_args(layout: Layout, expr: str) -> list[Any]:
    return ["FT.SEARCH", layout.index_name, expr, "NOCONTENT", "LIMIT", 0, 0, "DIALECT", 2]


def count_reply(reply: Any) -> int:
    if isinstance(reply, dict):
        return int(reply.get(b"total_results", reply.get("total_results")) or 0)
    return int(reply[0])


def _exec(client: redis.Redis, *args: Any) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


async def _aexec(client: aredis.Redis, *args: Any) -> Any:
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


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


class SyncStore:
    """The sync twin: redis-py."""

    def __init__(self, client: redis.Redis, layout: Layout, config: CacheConfig) -> None:
        self.client = client
        self.layout = layout
        self.config = config

    # -- setup ---------------------------------------------------------------------------
    def has_search_module(self) -> bool:
        try:
            return "search" in module_names(_exec(self.client, "MODULE", "LIST"))
        except redis.ResponseError:
            # MODULE LIST can be forbidden (managed Redis): ask the query engine directly.
            try:
                _exec(self.client, "FT._LIST")
                return True
            except redis.ResponseError:
                return False

    def read_meta(self) -> Any:
        return self.client.get(self.layout.meta_key)

    def write_meta_if_absent(self, document: dict[str, Any]) -> bool:
        return bool(self.client.set(self.layout.meta_key, json.dumps(document), nx=True))

    def index_info(self) -> Any | None:
        try:
            return _exec(self.client, "FT.INFO", self.layout.index_name)
        except redis.ResponseError as exc:
            if "unknown index" in str(exc).lower() or "no such index" in str(exc).lower():
                return None
            raise

    def create_index(self, schema: dict[str, Any]) -> None:
        from redisvl.index import SearchIndex
        from redisvl.schema import IndexSchema

        SearchIndex(IndexSchema.from_dict(schema), redis_client=self.client).create(
            overwrite=False
        )

    def drop_index(self) -> None:
        try:
            _exec(self.client, "FT.DROPINDEX", self.layout.index_name)
        except redis.ResponseError as exc:
            if "unknown index" not in str(exc).lower() and "no such index" not in str(exc).lower():
                raise
        self.client.delete(self.layout.meta_key)

    # -- entries -------------------------------------------------------------------------
    def read(self, key: str) -> dict[str, Any] | None:
        values = self.client.hmget(key, list(READ_FIELDS))
        if all(v is None for v in values):
            return None
        return dict(zip(READ_FIELDS, values, strict=True))

    def search(
        self, partition: str, vector: bytes, k: int = 1
    ) -> list[tuple[str, dict[str, Any]]]:
        reply = _exec(self.client, *search_args(self.layout, self.config, partition, vector, k))
        return parse_search_reply(reply)

    def write(
        self,
        key: str,
        fields: dict[str, Any],
        ttl: float | None,
        announce: tuple[str, str] | None = None,
    ) -> None:
        """One MULTI: replace the entry, set its expiry, and (``announce=(channel,
        message)``) tell other processes' L1 tiers, in the same round trip."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(key)  # an overwrite must not keep fields of the old entry
        pipe.hset(key, mapping=cast(Any, fields))
        if ttl is not None:
            pipe.pexpire(key, expiry_ms(ttl + self.config.stale_grace))
        if announce is not None:
            pipe.publish(*announce)
        pipe.execute()

    def touch(self, key: str, ttl: float, expires_at: float) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.pexpire(key, expiry_ms(ttl + self.config.stale_grace))
        pipe.hset(key, "expires_at", expires_at)
        pipe.execute()

    def unlink(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        # One UNLINK per key in a pipeline: never a multi-key command across hash slots.
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(key)
        return sum(int(n) for n in pipe.execute())

    def delete_matching(self, expr: str) -> int:
        """UNLINK, in batches, every entry matching a filter expression."""
        total = 0
        for _ in range(1_000_000):
            keys = parse_keys_reply(
                _exec(self.client, *filter_args(self.layout, expr, self.config.invalidate_batch))
            )
            if not keys:
                break
            removed = self.unlink(keys)
            total += removed
            if removed == 0:  # keys the index still lists but Redis no longer has
                break
        return total

    def delete_scan(self, pattern: str) -> int:
        """UNLINK, in batches, every key matching a SCAN pattern."""
        total = 0
        batch: list[str] = []
        for key in self.client.scan_iter(match=pattern, count=1000):
            batch.append(key.decode() if isinstance(key, bytes) else key)
            if len(batch) >= self.config.invalidate_batch:
                total += self.unlink(batch)
                batch = []
        return total + self.unlink(batch)

    def count(self, expr: str = "*") -> int:
        return count_reply(_exec(self.client, *count_args(self.layout, expr)))

    # -- policies, verdicts, audit -------------------------------------------------------
    def read_policy(self, tenant: str) -> Any:
        return self.client.hget(self.layout.policy_key, tenant.encode("utf-8", "surrogatepass"))

    def write_policy(self, tenant: str, document: str) -> None:
        self.client.hset(self.layout.policy_key, tenant.encode("utf-8", "surrogatepass"), document)

    def delete_policy(self, tenant: str) -> None:
        self.client.hdel(self.layout.policy_key, tenant.encode("utf-8", "surrogatepass"))

    def all_policies(self) -> dict[bytes, bytes]:
        return cast(dict[bytes, bytes], self.client.hgetall(self.layout.policy_key))

    def add_verdict(self, tenant_token: str, fields: dict[str, Any]) -> None:
        key = self.layout.verdict_key(tenant_token)
        _exec(self.client, *xadd_args(key, fields, self.config.verdict_limit))

    def read_verdicts(self, tenant_token: str) -> list[dict[str, Any]]:
        key = self.layout.verdict_key(tenant_token)
        return parse_stream(_exec(self.client, "XRANGE", key, "-", "+"))

    def delete_verdicts(self, tenant_token: str) -> int:
        return int(self.client.unlink(self.layout.verdict_key(tenant_token)))

    def add_audit(self, fields: dict[str, Any]) -> None:
        _exec(self.client, *xadd_args(self.layout.audit_key, fields, AUDIT_LIMIT))

    def read_audit(self, count: int) -> list[dict[str, Any]]:
        reply = _exec(self.client, "XREVRANGE", self.layout.audit_key, "+", "-", "COUNT", count)
        return parse_stream(reply)

    def raise_floor(self, key: str, floor: float) -> None:
        _exec(self.client, "EVAL", RAISE_FLOOR_LUA, 1, key, repr(floor))

    def add_disagreement(self, key: str, similarity: float, evidence: int, step: float) -> int:
        """Record a disagreeing verdict on an entry; its floor rises on enough of them."""
        return int(
            _exec(
                self.client, "EVAL", DISAGREE_LUA, 1, key, repr(similarity), evidence, repr(step)
            )
        )

    def close(self) -> None:
        self.client.close()


class AsyncStore:
    """The async twin: redis.asyncio. Same commands, same pure helpers."""

    def __init__(self, client: aredis.Redis, layout: Layout, config: CacheConfig) -> None:
        self.client = client
        self.layout = layout
        self.config = config

    async def has_search_module(self) -> bool:
        try:
            return "search" in module_names(await _aexec(self.client, "MODULE", "LIST"))
        except redis.ResponseError:
            try:
                await _aexec(self.client, "FT._LIST")
                return True
            except redis.ResponseError:
                return False

    async def read_meta(self) -> Any:
        return await self.client.get(self.layout.meta_key)

    async def write_meta_if_absent(self, document: dict[str, Any]) -> bool:
        return bool(await self.client.set(self.layout.meta_key, json.dumps(document), nx=True))

    async def index_info(self) -> Any | None:
        try:
            return await _aexec(self.client, "FT.INFO", self.layout.index_name)
        except redis.ResponseError as exc:
            if "unknown index" in str(exc).lower() or "no such index" in str(exc).lower():
                return None
            raise

    async def create_index(self, schema: dict[str, Any]) -> None:
        from redisvl.index import AsyncSearchIndex
        from redisvl.schema import IndexSchema

        await AsyncSearchIndex(IndexSchema.from_dict(schema), redis_client=self.client).create(
            overwrite=False
        )

    async def read(self, key: str) -> dict[str, Any] | None:
        values = await self.client.hmget(key, list(READ_FIELDS))
        if all(v is None for v in values):
            return None
        return dict(zip(READ_FIELDS, values, strict=True))

    async def search(
        self, partition: str, vector: bytes, k: int = 1
    ) -> list[tuple[str, dict[str, Any]]]:
        reply = await _aexec(
            self.client, *search_args(self.layout, self.config, partition, vector, k)
        )
        return parse_search_reply(reply)

    async def write(
        self,
        key: str,
        fields: dict[str, Any],
        ttl: float | None,
        announce: tuple[str, str] | None = None,
    ) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(key, mapping=cast(Any, fields))
        if ttl is not None:
            pipe.pexpire(key, expiry_ms(ttl + self.config.stale_grace))
        if announce is not None:
            pipe.publish(*announce)
        await pipe.execute()

    async def touch(self, key: str, ttl: float, expires_at: float) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.pexpire(key, expiry_ms(ttl + self.config.stale_grace))
        pipe.hset(key, "expires_at", expires_at)
        await pipe.execute()

    async def unlink(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(key)
        return sum(int(n) for n in await pipe.execute())

    async def count(self, expr: str = "*") -> int:
        return count_reply(await _aexec(self.client, *count_args(self.layout, expr)))

    async def delete_matching(self, expr: str) -> int:
        total = 0
        for _ in range(1_000_000):
            keys = parse_keys_reply(
                await _aexec(
                    self.client, *filter_args(self.layout, expr, self.config.invalidate_batch)
                )
            )
            if not keys:
                break
            removed = await self.unlink(keys)
            total += removed
            if removed == 0:
                break
        return total

    async def delete_scan(self, pattern: str) -> int:
        total = 0
        batch: list[str] = []
        async for key in self.client.scan_iter(match=pattern, count=1000):
            batch.append(key.decode() if isinstance(key, bytes) else key)
            if len(batch) >= self.config.invalidate_batch:
                total += await self.unlink(batch)
                batch = []
        return total + await self.unlink(batch)

    # -- policies, verdicts, audit -------------------------------------------------------
    async def read_policy(self, tenant: str) -> Any:
        return await self.client.hget(
            self.layout.policy_key, tenant.encode("utf-8", "surrogatepass")
        )

    async def write_policy(self, tenant: str, document: str) -> None:
        await self.client.hset(
            self.layout.policy_key, tenant.encode("utf-8", "surrogatepass"), document
        )

    async def add_audit(self, fields: dict[str, Any]) -> None:
        await _aexec(self.client, *xadd_args(self.layout.audit_key, fields, AUDIT_LIMIT))

    async def add_verdict(self, tenant_token: str, fields: dict[str, Any]) -> None:
        key = self.layout.verdict_key(tenant_token)
        await _aexec(self.client, *xadd_args(key, fields, self.config.verdict_limit))

    async def read_verdicts(self, tenant_token: str) -> list[dict[str, Any]]:
        key = self.layout.verdict_key(tenant_token)
        return parse_stream(await _aexec(self.client, "XRANGE", key, "-", "+"))

    async def raise_floor(self, key: str, floor: float) -> None:
        await _aexec(self.client, "EVAL", RAISE_FLOOR_LUA, 1, key, repr(floor))

    async def add_disagreement(
        self, key: str, similarity: float, evidence: int, step: float
    ) -> int:
        """The async twin of `SyncStore.add_disagreement`."""
        return int(
            await _aexec(
                self.client, "EVAL", DISAGREE_LUA, 1, key, repr(similarity), evidence, repr(step)
            )
        )

    async def close(self) -> None:
        await self.client.aclose()
