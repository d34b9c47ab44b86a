"""The LlamaIndex notebook runs top to bottom against the embedded Redis (nbclient, a real
kernel, as in test_notebooks.py), offline, from a directory holding nothing else, and
what it prints and draws holds up. The committed copy keeps its outputs, so a reader on
GitHub sees the plots."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.integration.notebook_output import outputs, summary

ROOT = Path(__file__).parents[2]
NOTEBOOK = ROOT / "notebooks" / "02_llamaindex.ipynb"


@pytest.fixture(scope="module")
def executed(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    where = tmp_path_factory.mktemp("nb02")
    shutil.copy(NOTEBOOK, where / NOTEBOOK.name)  # no ../shared, no data files next to it
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMCACHE_REDIS_URL", redis_url)  # the kernel inherits the env
        mp.setenv("HF_HUB_OFFLINE", "1")  # no network
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        # The kernel imports this checkout's packages (an editable install may point
        # at another one).
        mp.setenv(
            "PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        )
        notebook = nbformat.read(where / NOTEBOOK.name, as_version=4)
        client = NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": where}}
        )
        client.execute()
    return notebook


def _images(notebook: nbformat.NotebookNode) -> list[dict[str, Any]]:
    return [out for out in outputs(notebook) if "image/png" in out.get("data", {})]


def test_notebook_runs_without_errors(executed: nbformat.NotebookNode) -> None:
    errors = [out for out in outputs(executed) if out.get("output_type") == "error"]
    assert errors == []


def test_notebook_draws_the_latency_and_token_plots(executed: nbformat.NotebookNode) -> None:
    assert len(_images(executed)) == 2


def test_query_engine_figures(executed: nbformat.NotebookNode) -> None:
    s = summary(executed)
    assert s["llm_calls_uncached"] == s["questions"] == 72
    assert 0 < s["llm_calls_cached"] <= s["questions"] // 2  # every repeat hits at least
    assert 0 < s["tokens_cached"] < s["tokens_uncached"]
    # Half the traffic is repeats: the median cached query is a hit, far under the
    # model's latency (the fake sleeps 300 ms).
    assert s["median_ms_cached"] < s["median_ms_uncached"] / 2
    assert s["mean_ms_cached"] < s["mean_ms_uncached"]


def test_agent_chat_ingestion_and_tenant_figures(executed: nbformat.NotebookNode) -> None:
    s = summary(executed)
    assert s["agent_first_run_llm_calls"] == 2 and s["agent_second_run_llm_calls"] == 0
    assert s["conversations_shared"] == 0 and s["conversation_replay_hits"] > 0
    assert s["ingestion_first_run_embedded"] > 0 and s["ingestion_second_run_embedded"] == 0
    assert s["cross_tenant_serves"] == 0


def test_the_committed_notebook_keeps_itsoutputs() -> None:
    stored = nbformat.read(NOTEBOOK, as_version=4)
    assert len(_images(stored)) == 2
    assert summary(stored)["cross_tenant_serves"] == 0
    assert not [out for out in outputs(stored) if out.get("output_type") == "error"]
