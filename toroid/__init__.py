"""Toroid: the error landscape of neural networks with their parameter symmetries removed, after Pittorino et al.,
"Deep Networks on Toroids" (ICML 2022).

The distribution claims this one import name. Its parts live in folders at the top of the repository and are
mapped under it by pyproject.toml (docs/architecture.md has the layers and the allowed import directions):

* ``toroid.worker.landscape``: the science core, pure functions over torch modules (usable from a notebook);
* ``toroid.store``: settings, database, migrations, artifact store, job ledger, the Celery app;
* ``toroid.backend``: the FastAPI app, request services and the ``toroid`` CLI;
* ``toroid.worker``: the Celery tasks; ``toroid.dashboard``: the Dash UI (HTTP only).

The core's public API (``toroid.worker.landscape.__all__``) is re-exported here, lazily (PEP 562): ``from toroid
import normalize, align, geodesic_distance, path_profile, local_energy, torus_slice`` imports only the core modules it
needs, and ``import toroid`` alone imports no torch (the dashboard's container does not need it); neither do the
torch-free names (``path_kinds``, ``check_path_kind``, ``bend_kinds``, ``check_bend_kind``, ``to_json``,
``local_energy_at_largest_sigma``). The names resolve to the core's own objects.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_CORE = "toroid.worker.landscape"
#: The root's own modules and the mapped packages: ``from toroid import plots`` imports them, not the core.
_SUBMODULES = frozenset({"plots", "plot_units", "mds", "cli", "cli_study", "store", "backend", "worker", "dashboard"})


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    core = importlib.import_module(_CORE)
    if name == "__all__":  # ``from toroid import *``: the core's API
        return list(core.__all__)
    if name not in core.__all__:
        raise AttributeError(f"module 'toroid' has no attribute {name!r}; the core's API: {sorted(core.__all__)}")
    value = getattr(core, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(importlib.import_module(_CORE).__all__))
