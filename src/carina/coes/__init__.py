"""The COE registry: one plug-in per COE, found by name, so that every other part of carina is COE-agnostic.

A COE is supported when the collection has its driver (roles/coe_<name>/meta/contract.yml). Its
plug-in is the class registered here under that name (a module of this package decorated with
@register), else the base class Coe, which serves everything the contract declares and reports
health UNKNOWN. Adding a COE: a driver role with its contract in the collection, and a module
here with its health probe.

    from carina import coes
    coes.names()                      # ['swarm', ...]
    coe = coes.get(cluster.coe)       # CarinaError "coe 'x' is not supported; choose one of: ..."
    coe.api_url(cluster.endpoint); coe.shells(); coe.env(bundle, "fish"); coe.health(cluster, bundle)
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TypeVar

from carina import planning
from carina.coes.base import Coe, Health
from carina.errors import CarinaError

__all__ = ["Coe", "Health", "default", "get", "names", "plugins", "register"]

_PLUGINS: dict[str, type[Coe]] = {}
_DISCOVERED = False
C = TypeVar("C", bound=type[Coe])


def register(cls: C) -> C:
    """Class decorator: make `cls` the plug-in of the COE `cls.name`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name")
    _PLUGINS[cls.name] = cls
    return cls


_BOUND: dict[tuple[str, int], Coe] = {}


def plugins() -> dict[str, type[Coe]]:
    """{coe name: plug-in class} of every module of this package."""
    global _DISCOVERED  # noqa: PLW0603 - the package's modules are imported once
    if not _DISCOVERED:
        for module in pkgutil.iter_modules(__path__):
            if module.name != "base":
                importlib.import_module(f"{__name__}.{module.name}")
        _DISCOVERED = True
    return dict(_PLUGINS)


def names() -> list[str]:
    """The COEs carina can drive: those whose driver the collection has."""
    return sorted(planning.contracts())


def get(name: str) -> Coe:
    """The plug-in of a COE, bound to its contract (one per contract: they hold no state of their own)."""
    contracts = planning.contracts()
    if name not in contracts:
        raise CarinaError(f"coe {name!r} is not supported; choose one of: {', '.join(sorted(contracts)) or 'none'}")
    key = (name, id(contracts[name]))
    found = _BOUND.get(key)
    if found is None:
        found = _BOUND[key] = plugins().get(name, Coe)(contracts[name])
    return found


def default() -> str:
    """The COE a create makes when none is named: the one whose contract says `default` (the rule the
    playbooks use too), else the first COE."""
    available = names()
    if not available:
        raise CarinaError(f"the collection in {planning.collection_root()} has no COE driver")
    return planning.spec().default_coe(planning.contracts()) or available[0]
