"""Where carina keeps things."""

from __future__ import annotations

import os
from pathlib import Path


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
    repo = Path(__file__).resolve().parents[2] / "collections"
    if (repo / "ansible_collections" / "rax" / "carina").is_dir():
        return str(repo)
    return os.environ.get("ANSIBLE_COLLECTIONS_PATH", "")
