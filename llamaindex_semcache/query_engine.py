"""Cache a LlamaIndex query engine's answers (and a retriever's nodes) by meaning.

`SemanticCacheQueryEngine` wraps any ``BaseQueryEngine``: the query string is the
question (embedded for the semantic layer, matched exactly for the exact layer), and the
scope that must match exactly is the wrapped engine's class, a user-given
``index_version`` and any custom embedding strings or image of the query. A hit returns a
``Response`` with the cached text, the source nodes rebuilt as ``TextNode`` +
``NodeWithScore`` (id, text, score, metadata, source document) and
``metadata["semcache"]`` describing the hit. `SemanticCacheRetriever` does the same for
``retrieve()`` results. Payloads are JSON: nothing is unpickled or imported on read. A
payload that does not read as ours raises `SerializationError` (corrupt: deleted); a
failure building LlamaIndex's objects from one that does is not the entry's (kept).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import RESPONSE_TYPE, Response
from llama_index.core.callbacks import CallbackManager
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.schema import (
    MetadataMode,
    NodeRelationship,
    NodeWithScore,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)

from semcache_core.engine import CacheEngine, LookupResult
from semcache_core.errors import ConfigurationError, SerializationError
from semcache_core.request import CacheRequest
from semcache_core.tenancy import UNSET, _Unset

from .building import build_engine, legacy_embedder
from .tenancy import call_tenant

logger = logging.getLogger("semcache")

RESPONSE_CODEC = "llamaindex-response/1"
NODES_CODEC = "llamaindex-nodes/1"
_EMPTY_ANSWERS = ("", "Empty Response")


# -- data-only codec ----------------------------------------------------------------------
def _json_safe(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The entries of ``metadata`` that survive JSON; the others are left out."""
    out: dict[str, Any] = {}
    for key, value in (metadata or {}).items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            continue
        out[str(key)] = value
    return out


def _node_data(item: NodeWithScore) -> dict[str, Any]:
    node = item.node
    source = node.source_node
    return {
        "id": node.node_id,
        "text": node.get_content(metadata_mode=MetadataMode.NONE),
        "score": None if item.score is None else float(item.score),
        "metadata": _json_safe(node.metadata),
        "excluded_embed_metadata_keys": list(node.excluded_embed_metadata_keys),
        "excluded_llm_metadata_keys": list(node.excluded_llm_metadata_keys),
        "source_id": source.node_id if source is not None else None,
        "start_char_idx": getattr(node, "start_char_idx", None),
        "end_char_idx": getattr(node, "end_char_idx", None),
    }


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings")
    return value


def _optional_int(value: Any, what: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"{what} must be an integer")
    return value


def _node_fields(data: Any) -> dict[str, Any]:
    """A stored source node's fields, checked, as plain data (for `_node_from`)."""
    if not isinstance(data, dict):
        raise ValueError("a source node must be an object")
    node_id, text, score = data["id"], data["text"], data.get("score")
    metadata = data.get("metadata") or {}
    if not isinstance(node_id, str) or not isinstance(text, str):
        raise ValueError("node id and text must be strings")
    if score is not None and (not isinstance(score, (int, float)) or isinstance(score, bool)):
        raise ValueError("score must be a number")
    if not isinstance(metadata, dict):
        raise ValueError("metadata must be an object")
    source_id = data.get("source_id")
    if source_id is not None and not isinstance(source_id, str):
        raise ValueError("source_id must be a string")
    return {
        "id": node_id,
        "text": text,
        "score": None if score is None else float(score),
        "metadata": metadata,
        "excluded_embed_metadata_keys": _strings(
            data.get("excluded_embed_metadata_keys", []), "excluded keys"
        ),
        "excluded_llm_metadata_keys": _strings(
            data.get("excluded_llm_metadata_keys", []), "excluded keys"
        ),
        "start_char_idx": _optional_int(data.get("start_char_idx"), "start_char_idx"),
        "end_char_idx": _optional_int(data.get("end_char_idx"), "end_char_idx"),
        "source_id": source_id,
    }


def _node_from(fields: dict[str, Any]) -> NodeWithScore:
    """A ``NodeWithScore`` from `_node_fields` output (LlamaIndex's construction)."""
    node = TextNode(
        id_=fields["id"],
        text=fields["text"],
        metadata=fields["metadata"],
        excluded_embed_metadata_keys=fields["excluded_embed_metadata_keys"],
        excluded_llm_metadata_keys=fields["excluded_llm_metadata_keys"],
        start_char_idx=fields["start_char_idx"],
        end_char_idx=fields["end_char_idx"],
    )
    if fields["source_id"] is not None:
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=fields["source_id"])
    return NodeWithScore(node=node, score=fields["score"])


# Decoding reads the payload into plain data first: any failure there is a
# `SerializationError` (the entry is corrupt; the engine deletes it). Building LlamaIndex's
# objects from that data comes after, outside it: a failure there is LlamaIndex's, not the
# entry's, and the engine keeps the entry.
_UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, RecursionError)


def _dumps(document: dict[str, Any]) -> bytes:
    try:
        return json.dumps(document, ensure_ascii=False, allow_nan=False).encode(
            "utf-8", "surrogatepass"
        )
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"the answer is not JSON-serializable: {exc}") from exc


def encode_response(response: Response) -> bytes:
    """Serialize a ``Response``: text, JSON-safe metadata and source nodes.

    Raises:
        SerializationError: something in it is not data.
    """
    return _dumps(
        {
            "v": 1,
            "response": response.response,
            "metadata": _json_safe(response.metadata) if response.metadata else None,
            "source_nodes": [_node_data(n) for n in response.source_nodes],
        }
    )


def _read_response(payload: bytes, codec: str) -> tuple[str | None, Any, list[dict[str, Any]]]:
    """``(text, metadata, source node fields)`` as plain data."""
    if codec != RESPONSE_CODEC:
        raise SerializationError(f"unknown codec {codec!r}")
    try:
        doc = json.loads(payload.decode("utf-8", "surrogatepass"))
        if not isinstance(doc, dict) or doc.get("v") != 1:
            raise ValueError("unknown payload version")
        text, metadata = doc.get("response"), doc.get("metadata")
        if text is not None and not isinstance(text, str):
            raise ValueError("response must be a string")
        if metadata is not None and not isinstance(metadata, dict):
            raise ValueError("metadata must be an object")
        nodes = doc.get("source_nodes")
        if not isinstance(nodes, list):
            raise ValueError("source_nodes must be a list")
        return text, metadata, [_node_fields(n) for n in nodes]
    except _UNREADABLE as exc:
        raise SerializationError(f"cached response is unreadable: {exc}") from exc


def decode_response(payload: bytes, codec: str) -> Response:
    """Rebuild a ``Response`` from `encode_response` output.

    Raises:
        SerializationError: the payload is not one we wrote (unknown codec, not JSON,
            another version, the wrong structure): the engine deletes the entry.

    Any other exception comes from LlamaIndex building ``Response``, ``TextNode`` or
    ``NodeWithScore`` from data that reads fine: the engine keeps the entry and ends the
    lookup as an error.
    """
    text, metadata, nodes = _read_response(payload, codec)
    return Response(response=text, source_nodes=[_node_from(n) for n in nodes], metadata=metadata)


def encode_nodes(nodes: Sequence[NodeWithScore]) -> bytes:
    """Serialize retrieved nodes (see `encode_response`)."""
    return _dumps({"v": 1, "nodes": [_node_data(n) for n in nodes]})


def _read_nodes(payload: bytes, codec: str) -> list[dict[str, Any]]:
    if codec != NODES_CODEC:
        raise SerializationError(f"unknown codec {codec!r}")
    try:
        doc = json.loads(payload.decode("utf-8", "surrogatepass"))
        if not isinstance(doc, dict) or doc.get("v") != 1 or not isinstance(doc["nodes"], list):
            raise ValueError("unknown payload version")
        return [_node_fields(n) for n in doc["nodes"]]
    except _UNREADABLE as exc:
        raise SerializationError(f"cached nodes are unreadable: {exc}") from exc


def decode_nodes(payload: bytes, codec: str) -> list[NodeWithScore]:
    """Rebuild retrieved nodes from `encode_nodes` output.

    Raises:
        SerializationError: the payload is not one we wrote (see `decode_response`):
            the engine deletes the entry.

    Any other exception comes from LlamaIndex building the nodes: the engine keeps the
    entry and ends the lookup as an error.
    """
    return [_node_from(n) for n in _read_nodes(payload, codec)]


def _response_text(value: Response) -> str:
    return value.response or ""


def _nodes_text(value: list[NodeWithScore]) -> str:
    return "\n".join(n.node.node_id for n in value)


# -- shared plumbing ----------------------------------------------------------------------
def _class_path(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


class _Cached:
    """Engine construction and request building shared by the two wrappers."""

    engine: CacheEngine
    index_version: str
    tenant: str | None

    def _setup_cache(
        self,
        wrapped: object,
        kind: str,
        index_version: str,
        *,
        engine: CacheEngine | None,
        redis_url: str | None,
        embed_model: Any,
        namespace: str | None,
        threshold: float | None,
        ttl: float | _Unset | None,
        tenant: str | None,
        tags: Sequence[str] | None,
        scope: Mapping[str, Any] | None,
        settings: dict[str, Any],
        what: str,
    ) -> None:
        if not isinstance(index_version, str) or not index_version:
            raise ConfigurationError(
                "index_version must be a non-empty string naming the index build, e.g. "
                "'docs-2024-06-01'; change it whenever the index, LLM or prompts change"
            )
        self.engine = build_engine(
            engine,
            {
                "redis_url": redis_url,
                "embed_model": embed_model,
                "namespace": namespace,
                "threshold": threshold,
                "ttl": ttl,
                **settings,
            },
            what,
        )
        self.index_version = index_version
        self.tenant = tenant
        self._kind = kind
        self._wrapped_class = _class_path(wrapped)
        self._tags = (f"index_version:{index_version}", *(tags or ()))
        self._scope = dict(scope or {})

    @property
    def tag(self) -> str:
        """The tag every entry of this index version carries (for invalidation)."""
        return self._tags[0]

    def _request(self, bundle: QueryBundle) -> CacheRequest:
        scope: dict[str, Any] = {
            "kind": self._kind,
            "engine": self._wrapped_class,
            "index_version": self.index_version,
        }
        if bundle.custom_embedding_strs is not None:
            scope["custom_embedding_strs"] = list(bundle.custom_embedding_strs)
        if bundle.image_path is not None:
            scope["image_path"] = bundle.image_path
        if self._scope:
            scope["user"] = self._scope
        return self.engine.request(
            bundle.query_str,
            question=bundle.query_str,
            scope=scope,
            tenant=call_tenant(self.tenant),
            tags=self._tags,
        )

    def invalidate(self) -> int:
        """Delete every entry of this ``index_version`` (all tenants).

        Raises:
            BackendUnavailableError: Redis failed.
        """
        return self.engine.invalidate(tags=[self.tag])

    async def ainvalidate(self) -> int:
        """The async twin of `invalidate`."""
        return await self.engine.ainvalidate(tags=[self.tag])


def _marker(result: LookupResult) -> dict[str, Any]:
    return {
        "hit": True,
        "layer": result.layer,
        "outcome": result.outcome.value,
        "similarity": None if result.similarity is None else round(result.similarity, 6),
        "cached_at": result.created_at,
    }


# -- query engine -------------------------------------------------------------------------
class SemanticCacheQueryEngine(_Cached, BaseQueryEngine):
    """A query engine whose answers are cached by the question's meaning.

    Two queries share an answer only if they have the same tenant, the same wrapped
    engine class and ``index_version`` (and custom embedding strings, image and
    ``scope``), and either the same query string (exact hit) or a query string at least
    ``threshold`` similar (semantic hit). Only plain ``Response`` answers with some text
    are stored; streaming and pydantic responses pass through uncached.

    Args:
        query_engine: the engine to cache.
        index_version: names the index build; change it whenever the documents, the
            LLM, the prompts or the retrieval settings change. Entries of other versions
            are never served, and `invalidate` deletes this version's entries.
        engine: share an existing `CacheEngine`; then pass no other engine settings.
        redis_url: where Redis is (default: env ``SEMCACHE_REDIS_URL``).
        embed_model: embeds questions for the semantic layer (LlamaIndex
            ``BaseEmbedding``, ``semcache_core.minilm()``, LangChain ``Embeddings``,
            callable...); without it only exact hits. As in `wrap` and LlamaIndex.
        embedder: deprecated name of ``embed_model`` (warns).
        namespace: one index per namespace.
        threshold: cosine similarity in [0, 1] a semantic hit needs.
        ttl: entry TTL in seconds (``None``: never expire; ``0``: do not cache).
        tenant: serve and store for this tenant only; default: the ``semcache_tenant``
            instrumentation tag or the `tenant` context (see `llamaindex_semcache.tenancy`).
        tags: extra tags on every entry.
        scope: extra context that must match exactly (e.g. a user's access level).
        callback_manager: LlamaIndex callbacks; default: the wrapped engine's.
        **settings: any other `CacheConfig` field.

    Example:
        >>> cached = SemanticCacheQueryEngine(
        ...     index.as_query_engine(), index_version="docs-v3", embed_model=embed_model
        ... )
        >>> with tenant("acme"):
        ...     cached.query("How do refunds work?")
    """

    def __init__(
        self,
        query_engine: BaseQueryEngine,
        *,
        index_version: str,
        engine: CacheEngine | None = None,
        redis_url: str | None = None,
        embed_model: Any = None,
        embedder: Any = None,
        namespace: str | None = None,
        threshold: float | None = None,
        ttl: float | _Unset | None = UNSET,
        tenant: str | None = None,
        tags: Sequence[str] | None = None,
        scope: Mapping[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
        **settings: Any,
    ) -> None:
        self._query_engine = query_engine
        self._setup_cache(
            query_engine,
            "llamaindex-query",
            index_version,
            engine=engine,
            redis_url=redis_url,
            embed_model=legacy_embedder(embed_model, embedder, type(self).__name__),
            namespace=namespace,
            threshold=threshold,
            ttl=ttl,
            tenant=tenant,
            tags=tags,
            scope=scope,
            settings=settings,
            what=type(self).__name__,
        )
        super().__init__(callback_manager or query_engine.callback_manager)

    @property
    def query_engine(self) -> BaseQueryEngine:
        """The wrapped engine."""
        return self._query_engine

    def _get_prompt_modules(self) -> PromptMixinType:
        return {"query_engine": self._query_engine}

    def _served(self, result: LookupResult) -> Response | None:
        if not result.hit:
            return None
        value: Response = result.value
        value.metadata = {**(value.metadata or {}), "semcache": _marker(result)}
        return value

    def _payload(self, request: CacheRequest, response: RESPONSE_TYPE) -> bytes | None:
        if type(response) is not Response or (response.response or "") in _EMPTY_ANSWERS:
            return None  # streaming, pydantic and empty answers are not stored
        try:
            return encode_response(response)
        except SerializationError as exc:
            self.engine.report_error("serialize", exc, tenant=request.tenant)
            return None

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        request = self._request(query_bundle)
        looked = self.engine.lookup(request, decode=decode_response, text_of=_response_text)
        served = self._served(looked)
        if served is not None:
            return served
        payload = None
        try:
            response = self._query_engine.query(query_bundle)
            payload = self._payload(request, response)
            if payload is not None:
                text = response.response if isinstance(response, Response) else None
                self.engine.store(request, payload, codec=RESPONSE_CODEC, text=text or "")
            return response
        finally:  # no store (the engine raised, or nothing storable): waiters go on now
            if payload is None and looked.leads:
                self.engine.abandon(looked)

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        request = self._request(query_bundle)
        looked = await self.engine.alookup(request, decode=decode_response, text_of=_response_text)
        served = self._served(looked)
        if served is not None:
            return served
        payload = None
        try:
            response = await self._query_engine.aquery(query_bundle)
            payload = self._payload(request, response)
            if payload is not None:
                text = response.response if isinstance(response, Response) else None
                await self.engine.astore(request, payload, codec=RESPONSE_CODEC, text=text or "")
            return response
        finally:
            if payload is None and looked.leads:
                await self.engine.aabandon(looked)

    def retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """The wrapped engine's retrieval, uncached (use `SemanticCacheRetriever`)."""
        return self._query_engine.retrieve(query_bundle)


# -- retriever ----------------------------------------------------------------------------
class SemanticCacheRetriever(_Cached, BaseRetriever):
    """A retriever whose results (node lists) are cached by the query's meaning.

    Same arguments and matching rules as `SemanticCacheQueryEngine`, for a
    ``BaseRetriever``. Nodes come back as ``TextNode`` with their id, text, score,
    metadata and source document; an empty result is not stored.

    Example:
        >>> retriever = SemanticCacheRetriever(
        ...     index.as_retriever(), index_version="docs-v3", embed_model=embed_model
        ... )
    """

    def __init__(
        self,
        retriever: BaseRetriever,
        *,
        index_version: str,
        engine: CacheEngine | None = None,
        redis_url: str | None = None,
        embed_model: Any = None,
        embedder: Any = None,
        namespace: str | None = None,
        threshold: float | None = None,
        ttl: float | _Unset | None = UNSET,
        tenant: str | None = None,
        tags: Sequence[str] | None = None,
        scope: Mapping[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
        **settings: Any,
    ) -> None:
        self._retriever = retriever
        self._setup_cache(
            retriever,
            "llamaindex-retrieve",
            index_version,
            engine=engine,
            redis_url=redis_url,
            embed_model=legacy_embedder(embed_model, embedder, type(self).__name__),
            namespace=namespace,
            threshold=threshold,
            ttl=ttl,
            tenant=tenant,
            tags=tags,
            scope=scope,
            settings=settings,
            what=type(self).__name__,
        )
        super().__init__(callback_manager=callback_manager or retriever.callback_manager)

    @property
    def retriever(self) -> BaseRetriever:
        """The wrapped retriever."""
        return self._retriever

    def _get_prompt_modules(self) -> PromptMixinType:
        return {"retriever": self._retriever}

    def _payload(self, request: CacheRequest, nodes: list[NodeWithScore]) -> bytes | None:
        if not nodes:
            return None
        try:
            return encode_nodes(nodes)
        except SerializationError as exc:
            self.engine.report_error("serialize", exc, tenant=request.tenant)
            return None

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        request = self._request(query_bundle)
        result = self.engine.lookup(request, decode=decode_nodes, text_of=_nodes_text)
        if result.hit:
            nodes: list[NodeWithScore] = result.value
            return nodes
        payload = None
        try:
            nodes = self._retriever.retrieve(query_bundle)
            payload = self._payload(request, nodes)
            if payload is not None:
                self.engine.store(request, payload, codec=NODES_CODEC, text=_nodes_text(nodes))
            return nodes
        finally:
            if payload is None and result.leads:
                self.engine.abandon(result)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        request = self._request(query_bundle)
        result = await self.engine.alookup(request, decode=decode_nodes, text_of=_nodes_text)
        if result.hit:
            nodes: list[NodeWithScore] = result.value
            return nodes
        payload = None
        try:
            nodes = await self._retriever.aretrieve(query_bundle)
            payload = self._payload(request, nodes)
            if payload is not None:
                await self.engine.astore(
                    request, payload, codec=NODES_CODEC, text=_nodes_text(nodes)
                )
            return nodes
        finally:
            if payload is None and result.leads:
                await self.engine.aabandon(result)


__all__ = [
    "NODES_CODEC",
    "RESPONSE_CODEC",
    "SemanticCacheQueryEngine",
    "SemanticCacheRetriever",
    "decode_nodes",
    "decode_response",
    "encode_nodes",
    "encode_response",
]
