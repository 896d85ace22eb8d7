"""The collection's planning rules and COE contracts, as the playbooks use them.

carina checks a spec with the very functions the module rax.carina.cluster_spec runs on every
playbook run (plugins/module_utils/spec.py) and reads the COE contracts the way the lookup
rax.carina.coe_contracts does (plugins/module_utils/contracts.py). Both files are loaded by file
path from the collection carina drives (carina.paths.collections_path()), so the
`ansible_collections` package need not be importable and carina never judges a spec by other
rules than the collection it runs.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

import yaml

from carina import paths
from carina.errors import CarinaError

COLLECTION = Path("ansible_collections", "rax", "carina")
MODULE_UTILS = Path("plugins", "module_utils")
RECORD = "cluster.json"


def collection_root() -> Path:
    """The rax.carina collection carina drives: the first entry of collections_path() that holds it."""
    return _collection_root(paths.collections_path())


@functools.cache
def _collection_root(configured: str) -> Path:
    for entry in filter(None, configured.split(os.pathsep)):
        root = Path(entry).expanduser() / COLLECTION
        if (root / MODULE_UTILS / "spec.py").is_file():
            return root.resolve()
    raise CarinaError(f"the rax.carina collection was not found in {configured or 'no path'}; "
                      f"set CARINA_COLLECTIONS_PATH to the folder that holds ansible_collections/")


@functools.cache
def _load(root: Path, name: str) -> ModuleType:
    path = root / MODULE_UTILS / f"{name}.py"
    module_spec = importlib.util.spec_from_file_location(f"carina._collection.{name}", path)
    if module_spec is None or module_spec.loader is None:
        raise CarinaError(f"cannot load {path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def spec() -> ModuleType:
    """plugins/module_utils/spec.py: PROVIDERS, plan(), check(), fill(), migrate_record(), api_url()..."""
    return _load(collection_root(), "spec")


def contracts_module() -> ModuleType:
    """plugins/module_utils/contracts.py: load_all(), problems()..."""
    return _load(collection_root(), "contracts")


def contracts() -> dict[str, dict]:
    """{coe name: contract} of every COE driver role of the collection."""
    return _contracts(collection_root())


@functools.cache
def _contracts(root: Path) -> dict[str, dict]:
    try:
        return _load(root, "contracts").load_all(yaml.safe_load, str(root))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise CarinaError(f"the COE contracts of {root} cannot be read: {exc}") from exc


def providers() -> tuple[str, ...]:
    return tuple(spec().PROVIDERS)


def read_record(state_dir: Path) -> dict:
    """The cluster record (<state>/cluster.json) migrated to the current schema; {} when there is none.

    Raises CarinaError when the record cannot be read or is newer than the collection reads.
    """
    path = Path(state_dir) / RECORD
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CarinaError(f"the cluster record {path} cannot be read: {exc}") from exc
    try:
        return spec().migrate_record(json.loads(text))
    except (TypeError, ValueError) as exc:
        raise CarinaError(f"the cluster record {path}: {exc}") from exc


def try_read_record(state_dir: Path) -> dict:
    """read_record, or {} when there is no readable record (for a process that must go on)."""
    with contextlib.suppress(CarinaError):
        return read_record(state_dir)
    return {}
