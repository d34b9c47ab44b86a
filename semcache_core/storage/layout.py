"""Every Redis key and channel name semcache uses, in one place.

A namespace owns:

- ``<prefix>:<ns>:idx``                      the RediSearch index (over ``<prefix>:<ns>:``)
- ``<prefix>:<ns>:<tenant token>:<exact>``   one HASH per entry (indexed)
- ``<prefix>:__meta__:<ns>``                 what the index was built with (JSON)
- ``<prefix>:__policy__:<ns>``               HASH: tenant id -> policy overrides (JSON)
- ``<prefix>:__verdicts__:<ns>:<tenant>``    STREAM of a tenant's shadow verdicts
- ``<prefix>:__audit__:<ns>``                STREAM of policy changes
- ``<prefix>:__stats__:<ns>:<tenant>``       HASH of a tenant's persisted counters
- ``<prefix>:__lock__:<ns>:<rest of key>``   coalescing lock of one entry key
- ``<prefix>:__emb__:<ns>:<owner>:...``      the embedding store's vectors
- ``<prefix>:__l1__:<ns>``                   the L1 coherence pub/sub channel

Everything but the entries lives outside the index prefix and outside ``SCAN
<prefix>:<ns>:*``, so an index never sees bookkeeping and a namespace wipe of entries
never deletes policies.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..request import tenant_digest


@dataclass(frozen=True)
class Layout:
    """Names of the index, keys and channel of one namespace."""

    prefix: str
    namespace: str

    # -- the index and its entries -------------------------------------------------------
    @property
    def index_name(self) -> str:
        return f"{self.prefix}:{self.namespace}:idx"

    @property
    def key_prefix(self) -> str:
        # The trailing separator keeps namespace "a" from indexing namespace "ab".
        return f"{self.prefix}:{self.namespace}:"

    def entry_key(self, tenant_token: str, exact_key: str) -> str:
        return f"{self.key_prefix}{tenant_token}:{exact_key}"

    def tenant_prefix(self, tenant: str) -> str:
        """The key prefix of one tenant's entries."""
        return f"{self.key_prefix}{tenant_digest(tenant)}:"

    def scan_pattern(self, tenant_token: str | None = None) -> str:
        # prefix, namespace and tokens are validated or hex: no glob characters.
        return f"{self.key_prefix}{tenant_token + ':' if tenant_token else ''}*"

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
