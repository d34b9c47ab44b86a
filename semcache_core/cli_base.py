"""What every ``semcache`` command shares, the core's and those of plugins alike.

`Command` and `Group` give Rich help with reflowed docstring paragraphs and no value
type on flags; `guarded` turns the errors a user can fix into one red line. A package
adds commands to ``semcache`` through the ``semcache.commands`` entry-point group
(`COMMANDS_GROUP`): each entry names a ``register(app: typer.Typer) -> None`` that adds
its commands with ``app.command(cls=Command)`` and runs their work under `guarded`.
``semcache demo`` (`semcache_demo.cli`) is one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from .errors import SemcacheError

__all__ = ["COMMANDS_GROUP", "EXIT_ERROR", "EXIT_INTERRUPTED", "Command", "Group", "guarded"]

COMMANDS_GROUP = "semcache.commands"
"""The entry-point group whose ``register(app)`` functions add commands to ``semcache``."""

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

T = TypeVar("T")


def _reflow(text: str | None) -> str | None:
    """Join the lines of each paragraph: Rich help keeps a docstring's line breaks."""
    if not text:
        return text
    head, sep, tail = text.partition("\f")
    paragraphs = inspect.cleandoc(head).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs) + sep + tail


def _untyped_flags(params: list[Any]) -> list[Any]:
    """Flags take no value: show no ``<bool>`` type for them in the help."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """Help with reflowed paragraphs and no value type on flags (``--help``, ``--yes``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = _reflow(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        return _untyped_flags(super().get_params(ctx))


class Group(TyperGroup):
    """`Command`'s help fixes for groups (``semcache --help``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = _reflow(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        return _untyped_flags(super().get_params(ctx))


def guarded(action: Callable[[], T]) -> T:
    """Run ``action``: a `SemcacheError` becomes one red line and exit 1, Ctrl-C exit 130."""
    import redis as redis_py

    try:
        return action()
    except (SemcacheError, redis_py.RedisError) as exc:
        from .storage.errors import translate  # a path that did not translate its error

        error = translate(exc)
        message = " ".join(str(error).split()) or type(error).__name__
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]Error:[/] [red]{escape(message)}[/]"
        )
        raise typer.Exit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        Console(stderr=True).print("[yellow]Interrupted.[/]")
        raise typer.Exit(EXIT_INTERRUPTED) from None
