"""Every Redis command semcache sends: the async store, written once.

`storage/_sync/store.py` is generated from this file by ``scripts/unasync.py`` (the
way httpcore and hishel keep their twins identical); edit this one and regenerate. The
store makes no decisions: the drivers tell it what to read and write. Everything that is
not a command (schema, arguments, parsing) is a pure function in `schema`, `commands`
or `semcache_core.entry`. Every public method translates Redis errors into semcache's
(`errors.boundary`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

# Imported with the module, not inside a call: the import takes ~0.1 s, which would block
# an event loop in the first lookup or store that creates the index.
from redisvl.schema import IndexSchema

from ...config import CacheConfig, redacted_url
from ...entry import READ_FIELDS, check_indexable, parse_keys_reply, parse_search_reply
from ...query import tag_any
from ..commands import (
    AUDIT_LIMIT,
    DISAGREE_LUA,
    RAISE_FLOOR_LUA,
    RELEASE_LUA,
    REPLACE_META_LUA,
    TAKEOVER_LUA,
    count_args,
    count_reply,
    create_args,
    expiry_ms,
    filter_args,
    parse_stream,
    search_args,
    text,
    xadd_args,
)
from ..errors import boundary, is_missing_index
from ..layout import Layout
from ..schema import module_names

# The HMGET's field names, encoded once (redis-py encodes a str argument on every call).
_READ_FIELD_NAMES = [name.encode() for name in READ_FIELDS]


def _key_text(key: Any) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)


@boundary
class AsyncStore:
    """One namespace's Redis commands on one client (one node's or a cluster's)."""

    def __init__(self, client: Redis | RedisCluster, layout: Layout, config: CacheConfig) -> None:
        self.client: Any = client
        self.layout = layout
        self.config = config
        self.url = redacted_url(config.redis_url)
        self.cluster = isinstance(client, RedisCluster)

    async def _exec(self, *args: Any) -> Any:
        return await self.client.execute_command(*args)

    async def _on_index(self, index: str, *args: Any) -> Any:
        """A search command, sent to the shard that holds ``index``. redis-py sends
        ``FT.*`` to a cluster's default node (right only with a coordinator); without
        one an index lives on the shard owning its name's slot."""
        if not self.cluster:
            return await self.client.execute_command(*args)
        node = self.client.get_node_from_key(index)
        return await self.client.execute_command(*args, target_nodes=node)

    # -- setup ---------------------------------------------------------------------------
    async def ping(self) -> bool:
        return bool(await cast(Any, self.client).ping())

    async def has_search_module(self) -> bool:
        index = self.layout.index_name
        try:
            return "search" in module_names(await self._on_index(index, "MODULE", "LIST"))
        except ResponseError:
            # MODULE LIST can be forbidden (managed Redis): ask the query engine directly.
            try:
                await self._on_index(index, "FT._LIST")
                return True
            except ResponseError:
                return False

    async def read_meta(self) -> Any:
        return await self.client.get(self.layout.meta_key)

    async def has_meta(self) -> bool:
        """Whether the meta key is there (it goes with the index: FLUSHALL, a restart
        without data and `drop_index` remove both)."""
        # One key, one command (a cluster client splits EXISTS/DEL/UNLINK by slot in a pipeline).
        return bool(await self._exec("EXISTS", self.layout.meta_key))

    async def write_meta_if_absent(self, document: dict[str, Any]) -> bool:
        return bool(await self.client.set(self.layout.meta_key, json.dumps(document), nx=True))

    async def replace_meta(self, seen: Any, document: dict[str, Any]) -> bool:
        """Write the meta document only if the key still holds ``seen`` (one process
        wins each step of an index rebuild)."""
        new = json.dumps(document)
        return bool(await self._exec("EVAL", REPLACE_META_LUA, 1, self.layout.meta_key, seen, new))

    async def generation_infos(self, generation: int) -> list[Any | None]:
        """``FT.INFO`` of each bucket's index of one generation (``None``: missing)."""
        infos: list[Any | None] = []
        for bucket in self.layout.all_buckets:
            index = self.layout.index_of(bucket, generation)
            try:
                infos.append(await self._on_index(index, "FT.INFO", index))
            except ResponseError as exc:
                if not is_missing_index(exc):
                    raise
                infos.append(None)
        return infos

    async def drop_generation(self, generation: int) -> None:
        """Drop one generation's bucket indexes, keeping the entries (another generation
        indexes them)."""
        for bucket in self.layout.all_buckets:
            index = self.layout.index_of(bucket, generation)
            try:
                await self._on_index(index, "FT.DROPINDEX", index)
            except ResponseError as exc:
                if not is_missing_index(exc):
                    raise

    async def count_partition(self, partition: str) -> int:
        """Entries of one partition (in its bucket's index)."""
        index = self.layout.index_of(self.layout.bucket_of(partition))
        expr = tag_any("partition", [partition])
        return count_reply(await self._on_index(index, *count_args(index, expr)))

    async def index_info(self) -> Any | None:
        """The first bucket's ``FT.INFO``, or ``None`` unless every bucket's index exists."""
        first = None
        for bucket in self.layout.all_buckets:
            index = self.layout.index_of(bucket)
            try:
                info = await self._on_index(index, "FT.INFO", index)
            except ResponseError as exc:
                if is_missing_index(exc):
                    return None
                raise
            first = info if first is None else first
        return first

    async def index_infos(self) -> list[Any]:
        """Every bucket's ``FT.INFO`` (a missing index left out): for statistics."""
        infos = []
        for bucket in self.layout.all_buckets:
            index = self.layout.index_of(bucket)
            try:
                infos.append(await self._on_index(index, "FT.INFO", index))
            except ResponseError as exc:
                if not is_missing_index(exc):
                    raise
        return infos

    async def create_index(self, schemas: Sequence[dict[str, Any]]) -> None:
        """Create each bucket's index (RedisVL schemas) that does not exist yet."""
        for schema in schemas:
            index_schema = IndexSchema.from_dict(schema)
            try:
                await self._on_index(index_schema.index.name, *create_args(index_schema))
            except ResponseError as exc:
                # Processes that start together race to create it: theirs is ours.
                if "index already exists" not in str(exc).lower():
                    raise

    async def drop_index(self, generations: Sequence[int] = ()) -> None:
        """Drop the active index (and ``generations``: one being built) and the meta."""
        for generation in {self.layout.active.generation, *generations}:
            await self.drop_generation(generation)
        await self._exec("DEL", self.layout.meta_key)

    # -- entries -------------------------------------------------------------------------
    async def read(self, key: str) -> dict[str, Any] | None:
        values = await self.client.hmget(key, _READ_FIELD_NAMES)
        if all(v is None for v in values):
            return None
        return dict(zip(READ_FIELDS, values, strict=True))

    async def search(
        self,
        partition: str,
        vector: bytes,
        k: int = 1,
        plan: tuple[str | None, int | None] | None = None,
    ) -> list[tuple[str, dict[str, Any]]]:
        args = search_args(self.layout, self.config, partition, vector, k, plan)
        return parse_search_reply(await self._on_index(args[1], *args))

    async def write(
        self, key: str, fields: dict[str, Any], ttl: float | None, announce: str | None = None
    ) -> bool:
        """One MULTI: see that the meta key is there, replace the entry, set its expiry,
        and (``announce``) tell other processes' L1 tiers, in one round trip (on a
        cluster the meta key is in another slot and PUBLISH in none: calls of their own).
        Returns whether the meta key was there (``False``: Redis came back empty, or the
        index was dropped; the entry is written all the same, outside any index).
        Raises ``ValueError`` for an indexed number that is not finite."""
        check_indexable(fields)
        had_meta = True
        if self.cluster:
            had_meta = await self.has_meta()
        pipe = self.client.pipeline(transaction=True)
        if not self.cluster:
            pipe.execute_command("EXISTS", self.layout.meta_key)
        pipe.execute_command("DEL", key)  # an overwrite must not keep fields of the old entry
        pipe.hset(key, mapping=cast(Any, fields))
        if ttl is not None:
            pipe.pexpire(key, expiry_ms(ttl + self.config.stale_grace))
        if announce is not None and not self.cluster:
            pipe.publish(self.layout.l1_channel, announce)
        replies = await pipe.execute()
        if not self.cluster:
            had_meta = bool(replies[0])
        if announce is not None and self.cluster:
            await self.client.publish(self.layout.l1_channel, announce)
        return had_meta

    async def touch(self, key: str, ttl: float, expires_at: float) -> None:
        check_indexable({"expires_at": expires_at})
        pipe = self.client.pipeline(transaction=True)
        pipe.pexpire(key, expiry_ms(ttl + self.config.stale_grace))
        pipe.hset(key, "expires_at", expires_at)
        await pipe.execute()

    async def unlink(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        # One UNLINK per key in a pipeline: never a multi-key command across hash slots.
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("UNLINK", key)
        return sum(int(n) for n in await pipe.execute())

    async def delete_matching(self, expr: str) -> int:
        """UNLINK, in batches, every entry matching a filter expression (every bucket)."""
        total = 0
        for bucket in self.layout.all_buckets:
            total += await self._delete_matching_in(self.layout.index_of(bucket), expr)
        return total

    async def _delete_matching_in(self, index: str, expr: str) -> int:
        total = 0
        for _ in range(1_000_000):
            try:
                args = filter_args(index, expr, self.config.invalidate_batch)
                reply = await self._on_index(index, *args)
            except ResponseError as exc:
                if is_missing_index(exc):
                    break  # no index yet (nothing was stored) or it was dropped
                raise
            keys = parse_keys_reply(reply)
            if not keys:
                break
            removed = await self.unlink(keys)
            total += removed
            if removed == 0:  # keys the index still lists but Redis no longer has
                break
        return total

    async def delete_scan(self, pattern: str) -> int:
        """UNLINK, in batches, every key matching a SCAN pattern."""
        total = 0
        batch: list[str] = []
        async for key in self.client.scan_iter(match=pattern, count=1000):
            batch.append(_key_text(key))
            if len(batch) >= self.config.invalidate_batch:
                total += await self.unlink(batch)
                batch = []
        return total + await self.unlink(batch)

    async def count(self, expr: str = "*") -> int:
        """Indexed entries matching ``expr`` (every bucket); 0 while there is no index."""
        total = 0
        for bucket in self.layout.all_buckets:
            index = self.layout.index_of(bucket)
            try:
                total += count_reply(await self._on_index(index, *count_args(index, expr)))
            except ResponseError as exc:
                if not is_missing_index(exc):
                    raise
        return total

    async def scan_keys(self, pattern: str) -> list[str]:
        """Every key matching a SCAN pattern (every master of a cluster)."""
        return [_key_text(k) async for k in self.client.scan_iter(match=pattern, count=1000)]

    async def read_entries(self, keys: Sequence[str]) -> list[tuple[dict[bytes, bytes], int]]:
        """Every field and the PTTL (ms, negative when none) of each key: for export."""
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
            pipe.pttl(key)
        replies = await pipe.execute()
        return [(f or {}, int(p)) for f, p in zip(replies[::2], replies[1::2], strict=True)]

    async def write_entries(
        self, records: Sequence[tuple[str, dict[str, bytes], int | None]]
    ) -> int:
        """Replace entries with raw fields and an optional PTTL (ms): for import.

        Raises:
            ValueError: an entry's indexed number is not finite; nothing is written.
        """
        for _, fields, _ in records:
            check_indexable(fields)
        pipe = self.client.pipeline(transaction=False)
        for key, fields, pttl_ms in records:
            pipe.execute_command("DEL", key)
            pipe.hset(key, mapping=cast(Any, fields))
            if pttl_ms:
                pipe.pexpire(key, int(pttl_ms))
        await pipe.execute()
        return len(records)

    # -- policies, verdicts, audit -------------------------------------------------------
    async def read_policy(self, tenant: str) -> Any:
        return await self.client.hget(
            self.layout.policy_key, tenant.encode("utf-8", "surrogatepass")
        )

    async def write_policy(self, tenant: str, document: str) -> None:
        await self.client.hset(
            self.layout.policy_key, tenant.encode("utf-8", "surrogatepass"), document
        )

    async def delete_policy(self, tenant: str) -> None:
        await self.client.hdel(self.layout.policy_key, tenant.encode("utf-8", "surrogatepass"))

    async def all_policies(self) -> dict[bytes, bytes]:
        return cast(dict[bytes, bytes], await self.client.hgetall(self.layout.policy_key))

    async def add_verdict(self, tenant_token: str, fields: dict[str, Any]) -> None:
        key = self.layout.verdict_key(tenant_token)
        await self._exec(*xadd_args(key, fields, self.config.verdict_limit))

    async def read_verdicts(self, tenant_token: str) -> list[dict[str, Any]]:
        key = self.layout.verdict_key(tenant_token)
        return parse_stream(await self._exec("XRANGE", key, "-", "+"))

    async def delete_verdicts(self, tenant_token: str) -> int:
        return int(await self._exec("UNLINK", self.layout.verdict_key(tenant_token)))

    async def add_audit(self, fields: dict[str, Any]) -> None:
        await self._exec(*xadd_args(self.layout.audit_key, fields, AUDIT_LIMIT))

    async def read_audit(self, count: int) -> list[dict[str, Any]]:
        reply = await self._exec("XREVRANGE", self.layout.audit_key, "+", "-", "COUNT", count)
        return parse_stream(reply)

    async def raise_floor(self, key: str, floor: float) -> None:
        await self._exec("EVAL", RAISE_FLOOR_LUA, 1, key, repr(floor))

    async def add_disagreement(
        self, key: str, similarity: float, evidence: int, step: float
    ) -> int:
        """Record a disagreeing verdict on an entry; its floor rises on enough of them."""
        args = ("EVAL", DISAGREE_LUA, 1, key, repr(similarity), evidence, repr(step))
        return int(await self._exec(*args))

    # -- persisted counters --------------------------------------------------------------
    async def add_counts(self, commands: Sequence[tuple[Any, ...]]) -> None:
        """Apply counter increments (`commands.counter_commands`) in one pipeline."""
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call,unused-ignore]
        await pipe.execute()

    async def read_counts(self, tenant: str | None = None) -> list[dict[Any, Any]]:
        """The raw counter hashes of one tenant, or of every tenant (SCAN)."""
        if tenant is not None:
            keys = [self.layout.stats_key(tenant)]
        else:
            keys = [
                _key_text(k)
                async for k in self.client.scan_iter(match=self.layout.stats_pattern, count=1000)
            ]
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return [raw or {} for raw in await pipe.execute()]

    async def delete_counts(self) -> int:
        """Remove every persisted counter of the namespace."""
        return await self.delete_scan(self.layout.stats_pattern)

    async def delete_bookkeeping(self) -> int:
        """Remove the namespace's policies, audit log, verdicts and counters."""
        removed = await self.unlink([self.layout.policy_key, self.layout.audit_key])
        removed += await self.delete_scan(self.layout.verdict_pattern)
        return removed + await self.delete_counts()

    # -- L1 coherence --------------------------------------------------------------------
    async def publish(self, message: str) -> int:
        """PUBLISH an L1 coherence message; returns how many subscribers received it."""
        return int(await self.client.publish(self.layout.l1_channel, message))

    # -- coalescing locks ----------------------------------------------------------------
    async def lock(self, entry_key: str, token: str, lease_ms: int) -> tuple[bool, str | None]:
        """SET NX PX the entry's lock: ``(True, None)`` when taken, else ``(False,
        holder)`` (``holder`` ``None`` when it was released in between)."""
        lk = self.layout.lock_key(entry_key)
        if await self.client.set(lk, token, nx=True, px=lease_ms):
            return True, None
        holder = await self.client.get(lk)
        return False, None if holder is None else text(holder)

    async def lock_holder(self, entry_key: str) -> str | None:
        holder = await self.client.get(self.layout.lock_key(entry_key))
        return None if holder is None else text(holder)

    async def unlock(self, entry_key: str) -> None:
        """Release the entry's lock, whoever holds it (the entry now exists)."""
        await self._exec("DEL", self.layout.lock_key(entry_key))

    async def release(self, entry_key: str, token: str) -> None:
        """Release the entry's lock only if ``token`` still holds it."""
        await self._exec("EVAL", RELEASE_LUA, 1, self.layout.lock_key(entry_key), token)

    async def take_over(self, entry_key: str, watched: str, token: str, lease_ms: int) -> bool:
        """Take the lock if its holder is still ``watched`` (or it is free)."""
        lk = self.layout.lock_key(entry_key)
        return bool(await self._exec("EVAL", TAKEOVER_LUA, 1, lk, watched, token, lease_ms))

    # -- plain values (the embedding store) ----------------------------------------------
    async def get_values(self, keys: Sequence[str]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        return list(await pipe.execute())

    async def set_values(self, items: Sequence[tuple[str, bytes]], px: int | None) -> None:
        pipe = self.client.pipeline(transaction=False)
        for key, value in items:
            pipe.set(key, value, px=px)
        await pipe.execute()

    async def close(self) -> None:
        await self.client.aclose()
