"""One way to build the LlamaIndex wrappers, against the embedded Redis: `wrap` builds
its engine from settings or shares ``engine=``, never both; unknown keywords raise;
``embed_model`` is the name everywhere; a ``predict`` hit is visible through
``last_lookup()``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.prompts import PromptTemplate

from langchain_semcache import SemanticCache
from llamaindex_semcache import (
    CachedEmbedding,
    MiniLMEmbedding,
    SemanticCacheFunctionCallingLLM,
    SemanticCacheLLM,
    SemanticCacheQueryEngine,
    last_lookup,
    wrap,
)
from semcache_core import CacheConfig, CacheEngine, ConfigurationError
from semcache_core.embedding import SentenceTransformerEmbedder
from semcache_demo.llamaindex_fakes import FakeFunctionCallingLLM, FakeLLM
from tests.integration.test_llamaindex_query_engine import CountingQueryEngine

Q = "How do I reset my password?"
PARAPHRASE = "I forgot my password, how can I reset it?"


@pytest.fixture
def built(redis_url: str) -> Iterator[Callable[..., SemanticCacheLLM]]:
    """`wrap` with engine settings; the engines it built are dropped afterwards."""
    made: list[SemanticCacheLLM] = []

    def _wrap(llm: object, **options: object) -> SemanticCacheLLM:
        options.setdefault("namespace", f"t{uuid.uuid4().hex[:12]}")
        wrapped = wrap(llm, redis_url=redis_url, **options)  # type: ignore[arg-type]
        made.append(wrapped)
        return wrapped

    yield _wrap
    for wrapped in made:
        wrapped.engine.drop_index()
        wrapped.engine.close()


def test_wrap_builds_its_engine_from_redis_url_and_embed_model(
    built: Callable[..., SemanticCacheLLM], redis_url: str, embeddings: SentenceTransformerEmbedder
) -> None:
    fake = FakeLLM()
    llm = built(fake, embed_model=embeddings, threshold=0.8, ttl=None, tenant="acme")
    assert llm.engine.config.redis_url == redis_url
    assert llm.engine.config.threshold == 0.8 and llm.engine.config.ttl is None
    first = llm.complete(Q)
    served = llm.complete(PARAPHRASE)
    assert fake.calls == 1 and served.text == first.text
    assert served.additional_kwargs["semcache"]["layer"] == "semantic"


def test_wrap_takes_a_llamaindex_embed_model(
    built: Callable[..., SemanticCacheLLM], embeddings: SentenceTransformerEmbedder
) -> None:
    fake = FakeFunctionCallingLLM()
    llm = built(fake, embed_model=MiniLMEmbedding(), threshold=0.8)
    assert isinstance(llm, SemanticCacheFunctionCallingLLM)
    # The LlamaIndex model and the bundled one are the same weights: same vector.
    assert MiniLMEmbedding().get_query_embedding(Q) == pytest.approx(embeddings.embed(Q))
    llm.complete(Q)
    llm.complete(PARAPHRASE)
    assert fake.calls == 1


def test_engine_is_shared_with_langchain(make_engine: Callable[..., CacheEngine]) -> None:
    engine = make_engine()
    cache = SemanticCache(engine=engine)
    llm = wrap(FakeLLM(), engine=cache.engine)
    assert llm.engine is engine
    assert wrap(FakeLLM(), engine).engine is engine  # positional, as before


@pytest.mark.parametrize(
    "settings",
    [
        {"threshold": 0.99},
        {"namespace": "other"},
        {"redis_url": "redis://elsewhere:6379/0"},
        {"ttl": 60},
        {"ttl": None},
        {"embed_model": MockEmbedding(embed_dim=8)},
        {"verify_strictness": "strict"},
        {"threshold": 0.99, "namespace": "other", "redis_url": "redis://elsewhere:6379/0"},
    ],
)
def test_engine_settings_with_a_shared_engine_raise(
    make_engine: Callable[..., CacheEngine], settings: dict[str, object]
) -> None:
    engine = make_engine()
    with pytest.raises(ConfigurationError, match="either engine= or engine settings") as err:
        wrap(FakeLLM(), engine, **settings)
    assert "CacheEngine" in str(err.value)  # says where to set them instead
    assert engine.config.threshold == CacheConfig().threshold  # untouched
    with pytest.raises(ConfigurationError, match="engine settings"):
        SemanticCacheLLM(FakeLLM(), engine, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("shared", [True, False])
def test_unknown_keywords_always_raise(
    make_engine: Callable[..., CacheEngine], redis_url: str, shared: bool
) -> None:
    where = {"engine": make_engine()} if shared else {"redis_url": redis_url}
    with pytest.raises(ConfigurationError, match="did you mean 'threshold'"):
        wrap(FakeLLM(), treshold=0.9, **where)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="unknown argument"):
        wrap(FakeLLM(), bogus=1, **where)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="embed_model=, not embedder="):
        wrap(FakeLLM(), embedder=MockEmbedding(embed_dim=8), **where)  # type: ignore[arg-type]


def test_direct_construction_rejects_unknown_keywords(
    make_engine: Callable[..., CacheEngine],
) -> None:
    with pytest.raises(ConfigurationError, match="unknown argument"):
        SemanticCacheLLM(FakeLLM(), make_engine(), bogus=1)


def test_wrap_options_and_llm_fields_still_pass(make_engine: Callable[..., CacheEngine]) -> None:
    llm = wrap(FakeLLM(), make_engine(), tenant="acme", system_prompt="Be brief.")
    assert llm.tenant == "acme" and llm.system_prompt == "Be brief."


def test_invalid_values_raise_configuration_errors(redis_url: str) -> None:
    with pytest.raises(ConfigurationError, match="threshold"):
        wrap(FakeLLM(), redis_url=redis_url, threshold=2.0)
    with pytest.raises(ConfigurationError):
        wrap(FakeLLM(), redis_url=redis_url, tenant="")


def test_query_engine_takes_embed_model_and_warns_on_embedder(
    redis_url: str, namespace: str, embeddings: SentenceTransformerEmbedder
) -> None:
    inner = CountingQueryEngine(retriever=None)  # type: ignore[arg-type]
    cached = SemanticCacheQueryEngine(
        inner, index_version="v1", redis_url=redis_url, namespace=namespace, embed_model=embeddings
    )
    assert cached.engine.embedder is not None
    with pytest.warns(DeprecationWarning, match="embed_model"):
        old = SemanticCacheQueryEngine(
            inner,
            index_version="v1",
            redis_url=redis_url,
            namespace=namespace,
            embedder=embeddings,
        )
    assert old.engine.embedder is not None
    with pytest.raises(ConfigurationError, match="embed_model= only"):
        SemanticCacheQueryEngine(
            inner, index_version="v1", embed_model=embeddings, embedder=embeddings
        )
    with pytest.raises(ConfigurationError, match="either engine="):
        SemanticCacheQueryEngine(
            inner, index_version="v1", engine=cached.engine, embed_model=embeddings
        )
    with pytest.raises(ConfigurationError, match="did you mean 'threshold'"):
        SemanticCacheQueryEngine(inner, index_version="v1", redis_url=redis_url, treshold=0.9)
    for engine in (cached.engine, old.engine):
        engine.drop_index()
        engine.close()


def test_cached_embedding_refuses_an_engine_and_a_redis_url(
    make_engine: Callable[..., CacheEngine], redis_url: str
) -> None:
    with pytest.raises(ConfigurationError, match="either engine="):
        CachedEmbedding(MockEmbedding(embed_dim=8), engine=make_engine(), redis_url=redis_url)
    with pytest.raises(ConfigurationError, match="BaseEmbedding"):
        CachedEmbedding(object(), redis_url=redis_url)  # type: ignore[arg-type]


def test_a_predict_hit_is_visible_through_last_lookup(
    make_engine: Callable[..., CacheEngine], embeddings: SentenceTransformerEmbedder
) -> None:
    fake = FakeLLM()
    llm = wrap(fake, make_engine(embedder=embeddings, threshold=0.8))
    prompt = PromptTemplate("Answer briefly.\nQuestion: {query_str}\nAnswer:")
    first = llm.predict(prompt, query_str=Q)
    found = last_lookup()
    assert found is not None and not found.hit
    again = llm.predict(prompt, query_str=PARAPHRASE)
    found = last_lookup()
    assert again == first and fake.calls == 1  # a bare string: no room for a marker
    assert found is not None and found.hit and found.layer == "semantic"
    assert found.question == Q and found.similarity is not None
