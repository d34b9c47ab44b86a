"""The few primitives whose sync and async forms differ by more than ``await``.

The drivers call ``await async_sleep(...)``; their generated sync twins call
``sync_sleep(...)`` (scripts/unasync.py maps one name to the other).
"""

from __future__ import annotations

import asyncio
import time


async def async_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def sync_sleep(seconds: float) -> None:
    time.sleep(seconds)
