"""`CacheEngine`'s administration calls, each in both forms (``x`` and ``ax``).

A mixin, so the engine's class stays a readable size: every method hands over to the
sync or the async admin driver (`semcache_core._sync.admin`, `semcache_core._async.admin`).
Administration calls do not fail open: a Redis fault raises `BackendUnavailableError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._async.admin import AsyncAdmin
from ._sync.admin import SyncAdmin
from .calibration import Calibration, Verdict
from .tenant_policy import TenantPolicy


class AdminCalls:
    """Policies, verdicts, calibration, invalidation, statistics, counting, dropping."""

    _admin: SyncAdmin
    _aadmin: AsyncAdmin

    # -- tenant policies -----------------------------------------------------------------
    def get_policy(self, tenant: str) -> TenantPolicy:
        """The tenant's effective policy, read from Redis now (code defaults overlaid
        with the tenant's stored overrides). Fields the tenant set count as set."""
        return self._admin.get_policy(tenant)

    async def aget_policy(self, tenant: str) -> TenantPolicy:
        """The async twin of `get_policy`."""
        return await self._aadmin.get_policy(tenant)

    def set_policy(
        self, tenant: str, policy: TenantPolicy | None = None, **changes: Any
    ) -> TenantPolicy:
        """Store a tenant's policy overrides in Redis; every process applies them within
        ``policy_refresh`` seconds (this one at once). The change is audited.

        Args:
            tenant: whose policy.
            policy: the overrides (the fields set on it explicitly); ``None`` keeps the
                tenant's current overrides.
            **changes: fields to change on top, e.g. ``semantic="shadow"``.

        Returns:
            The tenant's new effective policy.

        Raises:
            ConfigurationError: an invalid field or value.
            BackendUnavailableError: Redis failed.
        """
        return self._admin.set_policy(tenant, policy, **changes)

    async def aset_policy(
        self, tenant: str, policy: TenantPolicy | None = None, **changes: Any
    ) -> TenantPolicy:
        """The async twin of `set_policy`."""
        return await self._aadmin.set_policy(tenant, policy, **changes)

    def reset_policy(self, tenant: str) -> TenantPolicy:
        """Drop a tenant's overrides: the code defaults apply again (audited)."""
        return self._admin.reset_policy(tenant)

    async def areset_policy(self, tenant: str) -> TenantPolicy:
        """The async twin of `reset_policy`."""
        return await self._aadmin.reset_policy(tenant)

    def policies(self) -> dict[str, TenantPolicy]:
        """Every tenant that has stored overrides, with its effective policy."""
        return self._admin.policies()

    async def apolicies(self) -> dict[str, TenantPolicy]:
        """The async twin of `policies`."""
        return await self._aadmin.policies()

    def audit_log(self, tenant: str | None = None, count: int = 100) -> list[dict[str, Any]]:
        """Policy changes, newest first: when, tenant, action, old, new, evidence.

        Args:
            tenant: only this tenant's changes.
            count: how many of the newest records to read (before filtering by tenant).
        """
        return self._admin.audit_log(tenant, count)

    async def aaudit_log(
        self, tenant: str | None = None, count: int = 100
    ) -> list[dict[str, Any]]:
        """The async twin of `audit_log`."""
        return await self._aadmin.audit_log(tenant, count)

    # -- verdicts and calibration --------------------------------------------------------
    def verdicts(self, tenant: str) -> list[Verdict]:
        """The tenant's stored verdicts, oldest first (at most ``verdict_limit``)."""
        return self._admin.verdicts(tenant)

    async def averdicts(self, tenant: str) -> list[Verdict]:
        """The async twin of `verdicts`."""
        return await self._aadmin.verdicts(tenant)

    def clear_verdicts(self, tenant: str) -> int:
        """Forget a tenant's verdicts (e.g. after the LLM or the prompt changed)."""
        return self._admin.clear_verdicts(tenant)

    async def aclear_verdicts(self, tenant: str) -> int:
        """The async twin of `clear_verdicts`."""
        return await self._aadmin.clear_verdicts(tenant)

    def calibrate(self, tenant: str, *, apply: bool | None = None) -> Calibration:
        """Recommend the lowest threshold whose wrong-serve bound stays under the
        tenant's ``target_error`` (Clopper-Pearson, corrected for the judge's measured
        noise; see `semcache_core.calibration`).

        With ``auto_promote`` the engine also runs this by itself, on its own background
        thread, every ``calibrate_every`` new verdicts (never inside a lookup or store).

        Args:
            tenant: whose verdicts.
            apply: store the result (audited): ``promote`` a shadow tenant to live at the
                recommended threshold, ``recalibrate`` a live one, or ``demote`` a live
                one back to shadow when no threshold holds any more. Default: the
                tenant's ``auto_promote``.

        Raises:
            BackendUnavailableError: Redis failed.
        """
        return self._admin.calibrate(tenant, apply=apply)

    async def acalibrate(self, tenant: str, *, apply: bool | None = None) -> Calibration:
        """The async twin of `calibrate`."""
        return await self._aadmin.calibrate(tenant, apply=apply)

    # -- invalidation --------------------------------------------------------------------
    def invalidate(
        self,
        *,
        tenant: str | None = None,
        tags: Sequence[str] | None = None,
        match: str = "any",
        scope: Mapping[str, Any] | None = None,
        older_than: float | None = None,
        everything: bool = False,
    ) -> int:
        """Delete entries: criteria combine with AND; ``everything`` clears the namespace.

        Entries are found with FT.SEARCH (or SCAN for ``everything``) and removed with
        UNLINK in batches; never KEYS, never FLUSHDB. ``tenant`` alone also SCANs the
        tenant's key prefix, so entries the index does not hold (a numeric field
        RediSearch could not parse, written straight into Redis) go too.

        Args:
            tenant: only this tenant's entries.
            tags: entries carrying any (``match="any"``) or all (``"all"``) of these tags.
            scope: entries written with exactly this scope (as built by an adapter).
            older_than: entries written more than this many seconds ago.
            everything: every entry of this namespace, all tenants.

        Returns:
            How many entries were deleted.

        Raises:
            ConfigurationError: no criterion given, or bad arguments.
            BackendUnavailableError: Redis failed.
        """
        return self._admin.invalidate(
            tenant=tenant,
            tags=tags,
            match=match,
            scope=scope,
            older_than=older_than,
            everything=everything,
        )

    async def ainvalidate(
        self,
        *,
        tenant: str | None = None,
        tags: Sequence[str] | None = None,
        match: str = "any",
        scope: Mapping[str, Any] | None = None,
        older_than: float | None = None,
        everything: bool = False,
    ) -> int:
        """The async twin of `invalidate`."""
        return await self._aadmin.invalidate(
            tenant=tenant,
            tags=tags,
            match=match,
            scope=scope,
            older_than=older_than,
            everything=everything,
        )

    # -- introspection -------------------------------------------------------------------
    def stats(self, tenant: str | None = None, *, totals: bool = True) -> dict[str, Any]:
        """Counters: this process's, and the totals persisted in Redis.

        ``stats()["tenants"]`` counts what this process did: per tenant, lookups by
        outcome (``exact_hits``, ``semantic_hits``, ``promoted``, ``shadow_hits``,
        ``guarded``, ``misses``, ``bypassed``), ``errors``, ``stores``, verdicts,
        ``tokens_saved``, ``cost_saved_usd``, ``hit_rate``. ``stats()["totals"]`` has
        the same fields summed over every process and restart, plus ``entries`` per
        tenant, and ``stats()["index"]`` the index's size and memory. When Redis is
        unreachable, ``totals`` is ``None`` and ``totals_error`` says why.

        Args:
            tenant: only this tenant.
            totals: also read the persisted totals (one flush and a few reads).
        """
        return self._admin.stats(tenant, totals=totals)

    async def astats(self, tenant: str | None = None, *, totals: bool = True) -> dict[str, Any]:
        """The async twin of `stats` (the event loop is never blocked)."""
        return await self._aadmin.stats(tenant, totals=totals)

    def count(self, tenant: str | None = None) -> int:
        """How many entries the index holds (for one tenant, or all)."""
        return self._admin.count(tenant)

    async def acount(self, tenant: str | None = None) -> int:
        """The async twin of `count`."""
        return await self._aadmin.count(tenant)

    def drop_index(self, *, delete_entries: bool = True) -> int:
        """Drop this namespace's index (and by default its entries). For migrations.

        Returns:
            The number of entries deleted.
        """
        return self._admin.drop_index(delete_entries=delete_entries)

    async def adrop_index(self, *, delete_entries: bool = True) -> int:
        """The async twin of `drop_index`."""
        return await self._aadmin.drop_index(delete_entries=delete_entries)

    def rebuild_index(self, algorithm: str = "hnsw", *, wait: float = 600.0) -> dict[str, Any]:
        """Rebuild the namespace's index as ``algorithm`` (``hnsw`` or ``flat``) beside
        the active one, over the same entries, then switch every process to it and drop
        the old one; lookups and stores go on meanwhile. ``algorithm="auto"`` engines do
        this by themselves (FLAT -> HNSW past ``flat_max_entries``); this is the manual
        step (``semcache reindex``). Waits up to ``wait`` seconds for Redis to index the
        entries (0: start it; engines' periodic refresh finishes it).

        Returns:
            `index_status` afterwards.
        """
        return self._admin.rebuild_index(algorithm, wait=wait)

    async def arebuild_index(
        self, algorithm: str = "hnsw", *, wait: float = 600.0
    ) -> dict[str, Any]:
        """The async twin of `rebuild_index`."""
        return await self._aadmin.rebuild_index(algorithm, wait=wait)

    def index_status(self) -> dict[str, Any]:
        """The active index: ``generation``, ``algorithm`` (``flat`` / ``hnsw``),
        ``building`` (a rebuild under way, or ``None``), ``entries`` per bucket index."""
        return self._admin.index_status()

    async def aindex_status(self) -> dict[str, Any]:
        """The async twin of `index_status`."""
        return await self._aadmin.index_status()

    def drop_namespace(self) -> int:
        """Delete everything this namespace holds in Redis: the index and its entries
        (as `drop_index`), tenant policies, verdict streams, the audit log and the
        persisted counters. For tests, teardown and decommissioning.

        Returns:
            The number of entries deleted.
        """
        return self._admin.drop_namespace()

    async def adrop_namespace(self) -> int:
        """The async twin of `drop_namespace`."""
        return await self._aadmin.drop_namespace()
