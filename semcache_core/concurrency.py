"""The few primitives whose sync and async forms differ by more than ``await``.

The drivers call ``await async_sleep(...)``; their generated sync twins call
``sync_sleep(...)`` (scripts/unasync.py maps one name to the other, and `AsyncCheck` to
`SyncCheck`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

AsyncCheck = Callable[[], Awaitable[bool]]
"""A question a driver asks again and again (e.g. "does the lookup still miss?")."""
SyncCheck = Callable[[], bool]
"""The sync twin of `AsyncCheck`."""


async def async_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def sync_sleep(seconds: float) -> None:
    time.sleep(seconds)
