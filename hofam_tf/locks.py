"""Folder locks: one process at a time writes a run directory or a predict output folder.

``folder_lock(folder, what)`` creates ``folder/.hofam.lock`` exclusively (``O_EXCL``), holding
the owner's pid, host, start time and command. A second process asking for the same folder gets a
HOFAMInputError naming the folder and the owner. A lock whose owner process is gone (same host,
pid no longer running: a crash, a kill -9) is stale and taken over, with a ``warning:`` line.
The lock is removed when the holder finishes, whether it succeeded or failed.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from hofam_tf.errors import HOFAMInputError

LOCK_NAME = ".hofam.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _owner(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _stale(owner: dict | None) -> bool:
    """An unreadable lock (a holder killed while writing it) or a dead pid on this host."""
    if owner is None or not isinstance(owner.get("pid"), int):
        return True
    return owner.get("host") == socket.gethostname() and not _alive(owner["pid"])


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[Path]:
    """Holds ``folder``'s lock while the block runs (``what``: "predict", "train", ... for the
    messages). Creates ``folder`` if needed."""
    from hofam_tf.messages import warn

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
          "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": " ".join(sys.argv)[:500]}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(path)
            if owner is not None and owner.get("pid") == os.getpid() and owner.get("host") == me["host"]:
                raise HOFAMInputError(f"{folder}: already locked by this process ({path})") from None
            if not _stale(owner):
                raise HOFAMInputError(
                    f"{folder}: in use by another {owner.get('what', 'run')} (pid {owner['pid']} on "
                    f"{owner.get('host', '?')}, since {owner.get('started', '?')}); wait for it to finish, or "
                    f"use another folder. If that process is gone, remove {path}") from None
            warn(f"{folder}: taking over the stale lock of pid {owner.get('pid') if owner else '?'} "
                 "(that process is no longer running)")
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise HOFAMInputError(f"{folder}: could not take the lock {path}")
    try:
        yield path
    finally:
        if (_owner(path) or {}).get("pid") == me["pid"]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
