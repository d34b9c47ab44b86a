"""Administration, async, written once: policies, verdicts, calibration, invalidation,
statistics, counting and dropping. `_sync/admin.py` is generated from this file.

Unlike the hot path, these calls do not fail open: a Redis fault raises
`BackendUnavailableError` (or `BackendTimeoutError`) with the cause attached. Nor are
they fail-fast: they go through the administration store (``stores.admin()``), whose
client waits ``admin_timeout`` per command, retries ``admin_retries`` times, and has a
pool of its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .. import query
from ..calibration import Calibration, Verdict
from ..config import check_tenant_id
from ..core.promotion import parse_verdicts, promotion, recommend
from ..counters import totals as persisted_totals
from ..errors import ConfigurationError, SemcacheError
from ..l1 import clear_message, drop_prefix_message
from ..metrics import summarize
from ..request import scope_digest, tag_digest, tenant_digest
from ..state import EngineState
from ..storage.commands import index_totals
from ..storage.errors import REDIS_FAULTS, is_missing_index
from ..tenant_policy import TenantPolicy, check_overrides, make_policy, parse_stored
from . import index
from .cache import AsyncCache


class AsyncAdmin:
    """Administration calls of one engine (the async driver)."""

    def __init__(self, state: EngineState, cache: AsyncCache) -> None:
        self.state = state
        self.cache = cache
        self.stores = cache.stores

    # -- tenant policies -----------------------------------------------------------------
    async def get_policy(self, tenant: str) -> TenantPolicy:
        """See `CacheEngine.get_policy`."""
        try:
            store = await self.stores.admin()
            return self.state.cache_policy(tenant, await store.read_policy(tenant))
        except REDIS_FAULTS as exc:
            raise self.state.admin_error(exc) from exc

    async def set_policy(
        self, tenant: str, policy: TenantPolicy | None = None, **changes: Any
    ) -> TenantPolicy:
        """See `CacheEngine.set_policy`."""
        try:
            store = await self.stores.admin()
            raw = await store.read_policy(tenant)
        except REDIS_FAULTS as exc:
            raise self.state.admin_error(exc) from exc
        try:  # only what is stored can be a corrupt stored policy ...
            old = parse_stored(raw) or {}
            make_policy(**old)
        except ValueError as exc:
            raise ConfigurationError(f"the stored policy of {tenant!r} is invalid: {exc}") from exc
        base = old if policy is None else policy.overrides()
        new = make_policy(**{**base, **changes}).overrides()  # ... bad input says so itself
        check_overrides(self.state.config, new)
        return await self._write_policy(tenant, old, new, "set", None)

    async def reset_policy(self, tenant: str) -> TenantPolicy:
        """See `CacheEngine.reset_policy`."""
        state = self.state
        try:
            store = await self.stores.admin()
            old = parse_stored(await store.read_policy(tenant)) or {}
            await store.delete_policy(tenant)
            await store.add_audit(state.audit_fields(tenant, "reset", old, {}, None))
        except REDIS_FAULTS as exc:
            raise state.admin_error(exc) from exc
        return state.cache_policy(tenant, None)

    async def policies(self) -> dict[str, TenantPolicy]:
        """See `CacheEngine.policies`."""
        try:
            store = await self.stores.admin()
            stored = await store.all_policies()
        except REDIS_FAULTS as exc:
            raise self.state.admin_error(exc) from exc
        out = {}
        for raw_tenant, raw in stored.items():
            tenant = raw_tenant.decode("utf-8", "surrogatepass")
            out[tenant] = self.state.cache_policy(tenant, raw)
        return dict(sorted(out.items()))

    async def _write_policy(
        self,
        tenant: str,
        old: dict[str, Any],
        new: dict[str, Any],
        action: str,
        evidence: dict[str, Any] | None,
    ) -> TenantPolicy:
        state = self.state
        try:
            store = await self.stores.admin()
            await store.write_policy(tenant, state.policy_document(new))
            await store.add_audit(state.audit_fields(tenant, action, old, new, evidence))
        except REDIS_FAULTS as exc:
            raise state.admin_error(exc) from exc
        return state.cache_policy(tenant, json.dumps(new))

    async def audit_log(self, tenant: str | None = None, count: int = 100) -> list[dict[str, Any]]:
        """See `CacheEngine.audit_log`."""
        try:
            store = await self.stores.admin()
            records = await store.read_audit(count)
        except REDIS_FAULTS as exc:
            raise self.state.admin_error(exc) from exc
        out = []
        for r in records:
            item = {
                "id": r["id"],
                "at": float(r["at"]),
                "tenant": r["tenant"].decode("utf-8", "surrogatepass"),
                "action": r["action"].decode(),
                "old": json.loads(r["old"]),
                "new": json.loads(r["new"]),
                "evidence": json.loads(r["evidence"]),
            }
            if tenant is None or item["tenant"] == tenant:
                out.append(item)
        return out

    # -- verdicts and calibration --------------------------------------------------------
    async def verdicts(self, tenant: str) -> list[Verdict]:
        """See `CacheEngine.verdicts`."""
        try:
            store = await self.stores.admin()
            return parse_verdicts(await store.read_verdicts(tenant_digest(tenant)))
        except REDIS_FAULTS as exc:
            raise self.state.admin_error(exc) from exc

    async def clear_verdicts(self, tenant: str) -> int:
        """See `CacheEngine.clear_verdicts`."""
        try:
            store = await self.stores.admin()
            return await store.delete_verdicts(tenant_digest(tenant))
        except REDIS_FAULTS as exc:
            raise self.state.admin_error(exc) from exc

    async def calibrate(self, tenant: str, *, apply: bool | None = None) -> Calibration:
        """See `CacheEngine.calibrate`."""
        state = self.state
        pol = await self.get_policy(tenant)
        cal = recommend(state.judge, state.config, pol, await self.verdicts(tenant))
        if apply if apply is not None else pol.auto_promote:
            change = promotion(pol, cal)
            if change is not None:
                await self._write_policy(
                    tenant, pol.overrides(), change[0], change[1], cal.evidence()
                )
        return cal

    # -- invalidation --------------------------------------------------------------------
    def _filter(
        self,
        tenant: str | None,
        tags: Sequence[str] | None,
        match: str,
        scope: Mapping[str, Any] | None,
        older_than: float | None,
    ) -> str:
        if match not in ("any", "all"):
            raise ConfigurationError(f"match must be 'any' or 'all', got {match!r}")
        clauses = []
        if tenant is not None:
            check_tenant_id(tenant)
            clauses.append(query.tag_any("tenant", [tenant_digest(tenant)]))
        if scope is not None:
            clauses.append(query.tag_any("scope", [scope_digest(scope)]))
        if tags:
            tokens = [tag_digest(t) for t in tags]
            build = query.tag_any if match == "any" else query.tag_all
            clauses.append(build("tags", tokens))
        if older_than is not None:
            if older_than < 0:
                raise ConfigurationError("older_than must be >= 0 seconds")
            clauses.append(query.numeric_below("created_at", self.state.clock() - older_than))
        if not clauses:
            raise ConfigurationError(
                "say what to invalidate: tenant=, tags=, scope=, older_than=, or everything=True"
            )
        return query.conjunction(clauses)

    async def invalidate(
        self,
        *,
        tenant: str | None = None,
        tags: Sequence[str] | None = None,
        match: str = "any",
        scope: Mapping[str, Any] | None = None,
        older_than: float | None = None,
        everything: bool = False,
    ) -> int:
        """See `CacheEngine.invalidate`."""
        state = self.state
        only_tenant = tenant is not None and not (tags or scope or older_than is not None)
        try:
            store = await self.stores.admin()
            if everything:
                removed = await store.delete_scan(state.layout.scan_pattern())
            else:
                expr = self._filter(tenant, tags, match, scope, older_than)
                await self.cache.ensure_index(store)
                removed = await store.delete_matching(expr)
                if only_tenant and tenant is not None:
                    # What the index does not hold is still under the tenant's key prefix:
                    # an entry with a field RediSearch could not parse, or one written
                    # while the index was missing.
                    pattern = state.layout.scan_pattern(tenant_digest(tenant))
                    removed += await store.delete_scan(pattern)
            prefixes = state.l1_after_invalidate(tenant, only_tenant and not everything)
            if state.config.l1_publish:
                message = drop_prefix_message(*prefixes) if prefixes else clear_message()
                await store.publish(message)
        except REDIS_FAULTS as exc:
            raise state.admin_error(exc) from exc
        state.stats.record_invalidated(removed)
        return removed

    # -- introspection -------------------------------------------------------------------
    async def stats(self, tenant: str | None = None, *, totals: bool = True) -> dict[str, Any]:
        """See `CacheEngine.stats`."""
        state = self.state
        snap = state.local_snapshot(tenant)
        if totals and state.pending is not None:
            try:
                store = await self.stores.admin()
                await self.cache.flush_counts(force=True, store=store)
                found = persisted_totals(await store.read_counts(tenant))
                snap["totals"] = {t: summarize(c) for t, c in found.items()}
                snap["index"] = index_totals(await store.index_infos())
                for t, view in snap["totals"].items():
                    view["entries"] = await self._entries_of(t)
            except Exception as exc:
                snap["totals"] = None
                snap["totals_error"] = str(state.admin_error(exc))
        return snap

    async def _entries_of(self, tenant: str) -> int:
        """Entries of one tenant; 0 when the index is gone (dropped, or Redis emptied)."""
        try:
            store = await self.stores.admin()
            return await store.count(query.tag_any("tenant", [tenant_digest(tenant)]))
        except SemcacheError as exc:
            if is_missing_index(exc):
                return 0
            raise

    async def count(self, tenant: str | None = None) -> int:
        """See `CacheEngine.count`."""
        try:
            store = await self.stores.admin()
            await self.cache.ensure_index(store)
            expr = query.tag_any("tenant", [tenant_digest(tenant)]) if tenant else "*"
            return await store.count(expr)
        except REDIS_FAULTS as exc:
            raise self.state.admin_error(exc) from exc

    async def drop_index(self, *, delete_entries: bool = True) -> int:
        """See `CacheEngine.drop_index`."""
        state = self.state
        try:
            store = await self.stores.admin()
            removed = await store.delete_scan(state.layout.scan_pattern()) if delete_entries else 0
            await store.drop_index(await index.generations_in_use(state, store))
            if state.l1 is not None:
                state.l1.clear()
            if state.config.l1_publish:
                await store.publish(clear_message())
        except REDIS_FAULTS as exc:
            raise state.admin_error(exc) from exc
        state.ready = False
        if state.config.dims is None and state.embedder is not None:
            state.dims = None  # a new index may have other dims
        return removed

    async def rebuild_index(
        self, algorithm: str = "hnsw", *, wait: float = 600.0
    ) -> dict[str, Any]:
        """See `CacheEngine.rebuild_index`."""
        if algorithm not in ("hnsw", "flat"):
            raise ConfigurationError(f"algorithm must be 'hnsw' or 'flat', not {algorithm!r}")
        try:
            store = await self.stores.admin()
            return await index.rebuild(self.state, store, algorithm, wait=wait)
        except REDIS_FAULTS as exc:
            raise self.state.admin_error(exc) from exc

    async def index_status(self) -> dict[str, Any]:
        """See `CacheEngine.index_status`."""
        try:
            store = await self.stores.admin()
            return await index.index_status(self.state, store)
        except REDIS_FAULTS as exc:
            raise self.state.admin_error(exc) from exc

    async def drop_namespace(self) -> int:
        """See `CacheEngine.drop_namespace`."""
        state = self.state
        removed = await self.drop_index()
        try:
            store = await self.stores.admin()
            await store.delete_bookkeeping()
        except REDIS_FAULTS as exc:
            raise state.admin_error(exc) from exc
        if state.pending is not None:
            state.pending.take()  # counts of the deleted namespace are not written back
        with state.policy_lock:
            state.policies.clear()
        return removed
