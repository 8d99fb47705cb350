"""Files that hold personal data (exports, their manifests, stored uploads): readable by their owner only.

They are created with mode 0600 whatever the process's umask, so another account on the machine (a web
server's, a backup agent's) cannot read them.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_MODE = 0o600


def create_private(path: Path | str) -> None:
    """Create ``path`` empty with mode 0600 (an existing file is emptied and made private). A writer that opens
    it afterwards for writing keeps that mode. Raises OSError when it cannot be created."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)
    finally:
        os.close(fd)


def write_private(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path``, created (or replaced in place) with mode 0600. Raises OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)
        with os.fdopen(fd, "wb", closefd=False) as fh:
            fh.write(data)
    finally:
        os.close(fd)


__all__ = ["PRIVATE_MODE", "create_private", "write_private"]
