"""Every Redis key and channel name semcache uses, in one place.

A namespace owns, on one node (``buckets=1``, untagged: the layout of every release
before cluster support, which single-node namespaces keep):

- ``<prefix>:<ns>:idx``                      the RediSearch index (over ``<prefix>:<ns>:``)
- ``<prefix>:<ns>:<tenant token>:<exact>``   one HASH per entry (indexed)

and on a cluster (``tagged``), B bucket indexes, each with its entries under one hash
tag, so an index and its documents share a slot and so a shard (RediSearch without a
coordinator keeps an index on the shard owning its name's slot, and answers nil fields
for documents elsewhere):

- ``<prefix>:<ns>:{<ns>.b<k>}:idx``                    bucket k's index
- ``<prefix>:<ns>:{<ns>.b<k>}:<tenant token>:<exact>``  an entry of bucket k

where k = crc32(partition) mod B: a partition (tenant + scope) lives in one bucket, so a
lookup queries exactly one index; count, export and invalidation fan out over all B.

Both layouts share the bookkeeping, one key per command (slot-safe on a cluster):

- ``<prefix>:__meta__:<ns>``                 what the index was built with (JSON; B and
  the layout on a cluster)
- ``<prefix>:__policy__:<ns>``               HASH: tenant id -> policy overrides (JSON)
- ``<prefix>:__verdicts__:<ns>:<tenant>``    STREAM of a tenant's shadow verdicts
- ``<prefix>:__audit__:<ns>``                STREAM of policy changes
- ``<prefix>:__stats__:<ns>:<tenant>``       HASH of a tenant's persisted counters
- ``<prefix>:__lock__:<ns>:<rest of key>``   coalescing lock of one entry key
- ``<prefix>:__emb__:<ns>:<owner>:...``      the embedding store's vectors
- ``<prefix>:__l1__:<ns>``                   the L1 coherence pub/sub channel

Everything but the entries lives outside the index prefixes and outside ``SCAN
<prefix>:<ns>:*``, so an index never sees bookkeeping and a namespace wipe of entries
never deletes policies.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from ..config import CacheConfig
from ..request import tenant_digest


@dataclass
class ActiveIndex:
    """Which generation of the namespace's index lookups use, and its algorithm.

    Generation 0 has the names of every earlier release; a rebuild (FLAT -> HNSW as the
    namespace grows, `index.maintain`) creates generation g+1 beside it over the same key
    prefix, records it in the meta key, then drops g. Shared by every holder of the
    `Layout` (the engine state and each event loop's store), so one switch moves them all.
    """

    generation: int = 0
    algorithm: str = "hnsw"


@dataclass(frozen=True)
class Layout:
    """Names of the index, keys and channel of one namespace.

    Args:
        prefix: the configured ``key_prefix``.
        namespace: the namespace.
        buckets: bucket indexes (1 unless ``tagged``).
        tagged: the cluster layout: entries and indexes under per-bucket hash tags.
    """

    prefix: str
    namespace: str
    buckets: int = 1
    tagged: bool = False
    active: ActiveIndex = field(default_factory=ActiveIndex, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.buckets < 1 or (self.buckets > 1 and not self.tagged):
            raise ValueError("an untagged layout has exactly one bucket")

    # -- buckets -------------------------------------------------------------------------
    def bucket_of(self, partition: str) -> int:
        """The bucket holding ``partition``'s entries (stable across processes)."""
        if self.buckets == 1:
            return 0
        return zlib.crc32(partition.encode()) % self.buckets

    def bucket_prefix(self, bucket: int) -> str:
        """What every entry key of ``bucket`` starts with: its index's prefix.

        The trailing separator keeps namespace "a" from indexing namespace "ab".
        """
        if not self.tagged:
            return f"{self.prefix}:{self.namespace}:"
        return f"{self.prefix}:{self.namespace}:{{{self.namespace}.b{bucket}}}:"

    def index_of(self, bucket: int, generation: int | None = None) -> str:
        """The RediSearch index of ``bucket`` (on the shard that holds its entries), of
        the active generation unless ``generation`` is given. Generation g > 0 appends
        ``:g<g>`` (the name keeps the bucket's hash tag, so it lives on the same shard)."""
        gen = self.active.generation if generation is None else generation
        if self.tagged:
            base = f"{self.bucket_prefix(bucket)}idx"
        else:
            base = f"{self.prefix}:{self.namespace}:idx"
        return base if gen == 0 else f"{base}:g{gen}"

    @property
    def all_buckets(self) -> range:
        return range(self.buckets)

    # -- the index and its entries -------------------------------------------------------
    @property
    def index_name(self) -> str:
        """The active index of an untagged layout; of bucket 0 on a cluster."""
        return self.index_of(0)

    @property
    def key_prefix(self) -> str:
        """What every entry key of the namespace starts with (every bucket's too)."""
        return f"{self.prefix}:{self.namespace}:"

    def entry_key(self, tenant_token: str, exact_key: str, partition: str) -> str:
        bucket = self.bucket_prefix(self.bucket_of(partition))
        return f"{bucket}{tenant_token}:{exact_key}"

    def relative_key(self, key: str) -> tuple[str, str]:
        """``(tenant token, exact key)`` of an entry key of this layout (for export and
        import, which may move entries between layouts).

        Raises:
            ValueError: ``key`` is not an entry key of this namespace.
        """
        if not key.startswith(self.key_prefix):
            raise ValueError(f"{key!r} is not an entry key of {self.key_prefix!r}")
        rest = key[len(self.key_prefix) :]
        if rest.startswith("{"):
            rest = rest[rest.index("}:") + 2 :] if "}:" in rest else ""
        token, _, exact = rest.partition(":")
        if not token or not exact:
            raise ValueError(f"{key!r} is not an entry key of {self.key_prefix!r}")
        return token, exact

    def tenant_prefixes(self, tenant: str) -> tuple[str, ...]:
        """The key prefixes of one tenant's entries: one, or one per bucket on a cluster
        layout (a tenant's partitions spread over the buckets)."""
        token = tenant_digest(tenant)
        return tuple(f"{self.bucket_prefix(b)}{token}:" for b in self.all_buckets)

    def tenant_prefix(self, tenant: str) -> str | None:
        """The key prefix of one tenant's entries; ``None`` on a cluster layout, where a
        tenant's entries sit in several buckets."""
        if self.tagged:
            return None
        return f"{self.key_prefix}{tenant_digest(tenant)}:"

    def scan_pattern(self, tenant_token: str | None = None) -> str:
        # prefix, namespace and tokens are validated or hex: no glob characters.
        tail = f"{tenant_token}:*" if tenant_token else "*"
        if self.tagged and tenant_token:
            return f"{self.key_prefix}{{{self.namespace}.b*}}:{tail}"
        return f"{self.key_prefix}{tail}"

    # -- bookkeeping ---------------------------------------------------------------------
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
    def verdict_pattern(self) -> str:
        return f"{self.prefix}:__verdicts__:{self.namespace}:*"

    @property
    def audit_key(self) -> str:
        """STREAM of policy changes (who, when, old, new, evidence), capped."""
        return f"{self.prefix}:__audit__:{self.namespace}"

    def stats_key(self, tenant: str) -> str:
        """HASH of one tenant's persisted counters (raw tenant id in ``tenant_id``)."""
        return f"{self.prefix}:__stats__:{self.namespace}:{tenant_digest(tenant)}"

    @property
    def stats_pattern(self) -> str:
        return f"{self.prefix}:__stats__:{self.namespace}:*"

    def lock_key(self, entry_key: str) -> str:
        """``<prefix>:<ns>:<rest>`` -> ``<prefix>:__lock__:<ns>:<rest>``: outside the index
        prefix and outside ``SCAN <prefix>:<ns>:*``.

        Raises:
            ValueError: ``entry_key`` is not under ``<prefix>:<ns>:``.
        """
        if not entry_key.startswith(self.key_prefix):
            raise ValueError(f"{entry_key!r} is not an entry key of {self.key_prefix!r}")
        return f"{self.prefix}:__lock__:{self.namespace}:{entry_key[len(self.key_prefix) :]}"

    @property
    def embedding_base(self) -> str:
        """What every key of the embedding store starts with (then owner, model, text)."""
        return f"{self.prefix}:__emb__:{self.namespace}:"

    @property
    def l1_channel(self) -> str:
        """The pub/sub channel of a namespace's local tiers."""
        return f"{self.prefix}:__l1__:{self.namespace}"


def layout_for(config: CacheConfig, cluster: bool) -> Layout:
    """The layout a new namespace gets: buckets under hash tags on a cluster, the
    single-node layout of every earlier release on one node."""
    if cluster:
        return Layout(config.key_prefix, config.namespace, config.cluster_buckets, tagged=True)
    return Layout(config.key_prefix, config.namespace)
