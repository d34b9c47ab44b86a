"""The ``semcache`` command line: ``semcache redis`` and ``semcache demo``.

Errors a user can fix (any `SemcacheError`) print as one red line and exit with code 1;
Ctrl-C exits with 130. LangChain is imported only when ``semcache demo`` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from .errors import ConfigurationError, SemcacheError

__all__ = ["app"]

app = typer.Typer(
    name="semcache",
    help="Tenant-isolated exact and semantic caching of LLM answers in Redis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")

_EXIT_ERROR = 1
_EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def _guarded(action: Callable[[], T]) -> T:
    """Run ``action``: a `SemcacheError` becomes one red line and exit 1, Ctrl-C exit 130."""
    try:
        return action()
    except SemcacheError as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]Error:[/] [red]{escape(message)}[/]"
        )
        raise typer.Exit(_EXIT_ERROR) from None
    except KeyboardInterrupt:
        Console(stderr=True).print("[yellow]Interrupted.[/]")
        raise typer.Exit(_EXIT_INTERRUPTED) from None


@app.command()
def redis(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Data directory (AOF, log, server.json). Default: $SEMCACHE_DATA_DIR, else "
            "the user data directory of semcache.",
            file_okay=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", help="TCP port on 127.0.0.1. Default: a free one.", min=1, max=65535
        ),
    ] = None,
) -> None:
    """Run the embedded Redis (with RediSearch) in the foreground until Ctrl-C.

    If a server is already running on the data directory, it is reused and left running.
    """
    from .embedded import run_foreground

    code = _guarded(lambda: run_foreground(data_dir, port=port))
    if code:
        raise typer.Exit(code)


@app.command()
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
            from langchain_semcache.demo import run_demo
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

    _guarded(run)


def main() -> None:
    """Run the CLI (what the ``semcache`` console script calls)."""
    app()


if __name__ == "__main__":
    main()
