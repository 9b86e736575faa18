"""Test helper (not a conftest): real redis-server child processes for fault tests.

Usage::

    proc = tcp_redis(tmp_path)          # RedisServerProcess on a fixed free TCP port
    proc.start(); ...; proc.kill(); proc.restart()   # same URL after restart
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

try:
    import gateway  # noqa: F401
except ModuleNotFoundError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.embedded_redis import (  # noqa: E402
    EmbeddedRedisError,
    RedisServerProcess,
    start_embedded,
)

__all__ = [
    "EmbeddedRedisError",
    "RedisServerProcess",
    "free_port",
    "start_embedded",
    "tcp_redis",
]


def free_port() -> int:
    """A currently unused TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tcp_redis(directory: Path, *, port: int | None = None) -> RedisServerProcess:
    """An (unstarted) RedisServerProcess on 127.0.0.1 with a fixed port, AOF in `directory`.

    The port is chosen once, so `restart()` after `kill()` comes back on the same URL.
    """
    return RedisServerProcess(directory, port=free_port() if port is None else port)
