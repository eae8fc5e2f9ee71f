"""Temporary files for atomic writes that do not pile up when a writer is killed.

A file is written next to its destination under a name that records who writes it,
``.<name>.<host>.<pid>.<random><suffix>``, then moved into place with ``os.replace``. A
process killed in between (kill -9, power loss) leaves that file behind; the next write of
the same destination removes the ones whose writer, on this host, no longer runs. Files of
live processes, of this process and of other hosts are never touched.
"""
from __future__ import annotations

import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable, Tuple, Union


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64] or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def remove_orphans(dest: Union[str, Path], suffix: str) -> int:
    """Delete the temporary files of ``dest`` left by dead writers on this host; returns how many."""
    dest = Path(dest)
    pattern = re.compile(r"^\." + re.escape(dest.name) + r"\." + re.escape(_host()) + r"\.(\d+)\.[^.]+"
                         + re.escape(suffix) + r"$")
    removed = 0
    try:
        entries = list(os.scandir(dest.parent if str(dest.parent) else "."))
    except OSError:
        return 0
    for entry in entries:
        match = pattern.match(entry.name)
        if not match:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            os.unlink(entry.path)
            removed += 1
        except OSError:
            pass  # another process cleaned it first, or no permission: not ours to force
    return removed


def make_temp(dest: Union[str, Path], suffix: str) -> Tuple[int, str]:
    """``(fd, name)`` of a new temporary file next to ``dest``, after removing dead writers' ones."""
    dest = Path(dest)
    remove_orphans(dest, suffix)
    return tempfile.mkstemp(prefix=f".{dest.name}.{_host()}.{os.getpid()}.", suffix=suffix,
                            dir=os.path.dirname(os.path.abspath(dest)))


def write_atomically(path: str, write: Callable[[Any], None]) -> None:
    """``write(f)`` into a temporary file beside ``path`` (binary, seekable), fsync, then
    ``os.replace``: a reader sees the old file or the new one, never half of one."""
    fd, tmp = make_temp(path, ".tmp")  # also removes what killed writers left
    try:
        with os.fdopen(fd, "w+b") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
