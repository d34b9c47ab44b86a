"""`vector_model`: the embedding model an index records, by the model's own name."""

from __future__ import annotations

from types import SimpleNamespace

from semcache_core.embedding import CachedEmbedder, CallableEmbedder, as_embedder, vector_model


def test_the_models_own_name_casefolded() -> None:
    lc = SimpleNamespace(model_name="sentence-transformers/all-MiniLM-L6-v2", embed_query=len)
    li = SimpleNamespace(model_name="sentence-transformers/all-MiniLM-L6-v2")
    li.get_query_embedding = len
    # LangChain's and LlamaIndex's wrappers of one model record one model.
    assert vector_model(as_embedder(lc)) == "all-minilm-l6-v2"
    assert vector_model(as_embedder(li)) == "all-minilm-l6-v2"
    assert vector_model(CachedEmbedder(as_embedder(lc))) == "all-minilm-l6-v2"
    openai = SimpleNamespace(model="text-embedding-3-small", embed_query=len)
    assert vector_model(as_embedder(openai)) == "text-embedding-3-small"
    assert vector_model(CallableEmbedder(len, model_id=r"C:\\models\\bge-small")) == "bge-small"


def test_no_name_no_check() -> None:
    assert vector_model(None) is None
    assert vector_model(CallableEmbedder(len)) is None  # a bare function's name is no model
    assert vector_model(as_embedder(SimpleNamespace(embed_query=len))) is None
    assert (
        vector_model(as_embedder(SimpleNamespace(model_name="unknown", embed_query=len))) is None
    )
