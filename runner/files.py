"""Writing files so that a reader sees the old content or the new one, never a part.

Reports land in a user's directory while another run may read them, the cache's memo and state files are
shared by concurrent processes, and the timing cache by concurrent builds: all of them are written here,
to a temporary file next to the target (same filesystem) that is renamed over it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; the parent directory must exist."""
    path = Path(path)
    # Unique per writer: two threads or processes writing the same file never share a temporary.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
