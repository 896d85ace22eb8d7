"""Where carina keeps things."""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import tempfile
from pathlib import Path

from carina.errors import CarinaError


def home() -> Path:
    """CARINA_HOME, default ~/.carina: the store, runs, and clusters/<name>/ state folders."""
    return Path(os.environ.get("CARINA_HOME") or "~/.carina").expanduser().resolve()


def state_dir(carina_home: Path, name: str) -> Path:
    return carina_home / "clusters" / name


def runs_dir(carina_home: Path) -> Path:
    return carina_home / "runs"


def collections_path() -> str:
    """The rax.carina collection: CARINA_COLLECTIONS_PATH, else the repository's collections/."""
    configured = os.environ.get("CARINA_COLLECTIONS_PATH")
    if configured:
        return configured
    return _repository_collections() or os.environ.get("ANSIBLE_COLLECTIONS_PATH", "")


@functools.cache
def _repository_collections() -> str:
    """The repository's collections/ when carina runs from a clone ('' when installed elsewhere)."""
    repo = Path(__file__).resolve().parents[2] / "collections"
    return str(repo) if (repo / "ansible_collections" / "rax" / "carina").is_dir() else ""


# ssh makes its control socket at <dir>/<10-character hash>.<16 random characters>, and a Unix socket
# path holds at most 107 bytes: a deeper folder makes every ssh connection fail.
CONTROL_PATH_DIR_MAX = 72


def control_path_dir(run_dir: Path) -> Path:
    """Where a run's ssh control sockets go: the run's own folder when its path is short enough, else a
    folder of the user's own under the system's temporary folder (made 0700, refused if anyone else's)."""
    own = run_dir / "cp"
    if len(str(own)) <= CONTROL_PATH_DIR_MAX:
        return own
    short = Path(tempfile.gettempdir()) / f"carina-{os.getuid()}" / "cp"
    for folder in (short.parent, short):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise CarinaError(f"{folder} is not a private folder of this user; remove it, or use a shorter "
                              f"CARINA_HOME (ssh control sockets need a path under {CONTROL_PATH_DIR_MAX} characters)")
    return short
