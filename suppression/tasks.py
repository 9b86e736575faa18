"""Background-loop helpers."""

from __future__ import annotations

import asyncio


def cancel_requested() -> bool:
    """Whether the running task was asked to stop. A background loop checks it on every
    turn: on Python 3.11 an ``asyncio.wait_for`` inside a library (redis-py) can swallow
    the CancelledError meant for the loop, which would then run on for ever and hang
    whoever waits for it (a shutdown, ``asyncio.run``'s final cancellation)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
