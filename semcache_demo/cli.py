"""``semcache demo``: the command, added to the ``semcache`` CLI by the ``semcache.commands``
entry point ``demo = "semcache_demo.cli:register"``.

Importing this module imports no LLM framework: LangChain and the embeddings load only
when the demo runs (`semcache_demo.langchain_demo`).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from semcache_core.cli_base import Command, guarded
from semcache_core.errors import ConfigurationError

__all__ = ["demo", "register"]


def demo(
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            envvar="SEMCACHE_REDIS_URL",
            help="Redis with the search module. Default: start (or reuse) the embedded Redis.",
            show_default=False,
        ),
    ] = None,
    threshold: Annotated[
        float,
        typer.Option(help="Cosine similarity in [0, 1] a semantic hit needs."),
    ] = 0.85,
    latency: Annotated[
        float,
        typer.Option(help="Seconds the small model takes per call; the large one takes twice."),
    ] = 0.35,
    seed: Annotated[int, typer.Option(help="Order of the replayed questions.")] = 0,
    concurrency: Annotated[
        int,
        typer.Option(help="Requests in flight per (tenant, model) stream; 1 = strictly in order."),
    ] = 4,
    intents: Annotated[
        int | None,
        typer.Option(
            help="Replay only the first N of the 40 support intents.", show_default=False
        ),
    ] = None,
    namespace: Annotated[
        str, typer.Option(help="Cache namespace to use; it is cleared first.")
    ] = "demo",
) -> None:
    """Replay a customer-support workload through LangChain with the cache and show the savings.

    Two tenants ask two fake chat models every question twice; the tables show exact and
    semantic hits, wrong answers served, latency and the tokens and money saved.
    """

    def run() -> None:
        try:
            # langchain_semcache first: without LangChain it says which extra to install.
            import langchain_semcache  # noqa: F401

            from .langchain_demo import run_demo
        except ImportError as exc:  # the langchain extra is missing
            raise ConfigurationError(f"semcache demo: {exc}") from exc

        run_demo(
            redis_url,
            threshold=threshold,
            latency=latency,
            seed=seed,
            intents=intents,
            concurrency=concurrency,
            namespace=namespace,
            console=Console(),
        )

    guarded(run)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app`` (what the ``semcache.commands`` entry point calls)."""
    app.command("demo", cls=Command)(demo)
