"""``optout-gateway suppressions import|export`` (streaming CSV / JSONL)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_transfer_commands(sub: Any, common: Callable[[argparse.ArgumentParser],
                                                      argparse.ArgumentParser]) -> None:
    """Filled in by the import/export work."""
