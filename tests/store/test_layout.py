"""The layers of docs/architecture.md, checked on the imports themselves (AST, not grep), and the one import name.

backend -> store -> core; worker -> store -> core; the dashboard reaches the rest over HTTP only (and shares
toroid.plots and toroid.mds with the backend); the core imports nothing of the platform; no route imports another
route; the backend reaches the worker by task name only.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"toroid": "toroid", "store": "toroid.store", "backend": "toroid.backend", "worker": "toroid.worker",
           "dashboard": "toroid.dashboard"}


def _modules() -> dict[str, tuple[Path, set[str]]]:
    """Every module of the distribution: dotted name -> (file, the toroid modules it imports)."""
    found: dict[str, tuple[Path, set[str]]] = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            imports: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    imports.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    imports.add(node.module)
                    imports.update(f"{node.module}.{a.name}" for a in node.names)
            found[name] = (path, {i for i in imports if i == "toroid" or i.startswith("toroid.")})
    return found


MODULES = _modules()


def _violations(prefix: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    out = []
    for name, (path, imports) in MODULES.items():
        if name == prefix or name.startswith(prefix + "."):
            for imported in imports:
                if imported.startswith(forbidden) and not imported.startswith(allowed):
                    out.append(f"{path.relative_to(ROOT)} imports {imported}")
    return sorted(out)


def test_the_core_imports_nothing_of_the_platform():
    assert _violations("toroid.worker.landscape", ("toroid.",), ("toroid.worker.landscape",)) == []


def test_the_store_stands_on_the_core_only():
    assert _violations("toroid.store", ("toroid.",), ("toroid.store", "toroid.worker.landscape")) == []


def test_the_worker_never_imports_the_backend_or_the_dashboard():
    assert _violations("toroid.worker", ("toroid.backend", "toroid.dashboard", "toroid.cli")) == []


def test_the_backend_reaches_the_worker_by_task_name_only():
    """(The app factory mounts the Dash app in the same server process: that one import is composition, the
    dashboard's code still reaches the API over HTTP.)"""
    bad = _violations("toroid.backend", ("toroid.worker", "toroid.dashboard", "toroid.cli"),
                      ("toroid.worker.landscape",))
    assert [b for b in bad if not b.startswith("backend/main.py imports toroid.dashboard.app")] == []


def test_no_route_imports_another_route():
    routes = [n for n in MODULES if n.startswith("toroid.backend.api.") and n != "toroid.backend.api.deps"]
    bad = [f"{MODULES[r][0].relative_to(ROOT)} imports {i}" for r in routes for i in MODULES[r][1]
           if any(i == o or i.startswith(o + ".") for o in routes if o != r)]
    assert bad == []


def test_the_dashboard_talks_http_only():
    """Besides itself it imports only the root's shared modules: the figures (toroid.plots) and the map's
    embedding (toroid.mds), which the backend uses too (the study report, GET /api/map)."""
    assert _violations("toroid.dashboard", ("toroid.",), ("toroid.dashboard", "toroid.plots", "toroid.mds")) == []


def test_every_package_folder_is_in_the_distribution():
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {n for n, (p, _) in MODULES.items() if p.name == "__init__.py"}
    assert on_disk == declared


def test_no_module_is_longer_than_600_lines():
    """Modules stay readable."""
    long = {str(p.relative_to(ROOT)): n for p, _ in MODULES.values()
            if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long


@pytest.mark.slow
def test_a_built_wheel_claims_only_the_name_toroid(tmp_path):
    """A non-editable build holds one top-level package, ``toroid`` (no global ``backend``, ``worker``, ...)."""
    source = tmp_path / "source"  # a copy: setuptools writes build/ and egg-info beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(source)], check=True, cwd=tmp_path)
    wheel = next(tmp_path.glob("toroid-*.whl"))
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith((".dist-info", ".data"))} == {"toroid"}
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"toroid/worker/landscape/symmetry.py", "toroid/store/ledger.py", "toroid/backend/main.py",
            "toroid/dashboard/app.py", "toroid/dashboard/assets/style.css"} <= names
