"""The public API: ``from toroid import ...``, the names that moved between core modules, and the
deprecated top-level ``worker`` alias (docs/architecture.md)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import toroid
import toroid.worker.landscape as core

ROOT = Path(__file__).resolve().parents[2]

PUBLIC = [
    "normalize", "align", "geodesic_distance", "euclidean_distances", "hamming_distance", "path_profile", "one_bend",
    "local_energy", "hessian_sharpness", "torus_slice", "section_2d", "build_model", "load_dataset", "train_minimum",
    "ARCHITECTURES", "DATASETS", "SAMPLERS", "CODE_VERSION",
    # the domain facts (docs/method.md §4, §7)
    "ALL_PATH_KINDS", "path_kinds", "check_path_kind", "bend_kinds", "check_bend_kind", "is_binary_architecture",
    "to_json", "local_energy_at_largest_sigma",
]


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", PUBLIC)
def test_public_names_are_the_cores_objects(name):
    assert name in core.__all__
    value = getattr(toroid, name)
    assert value is getattr(core, name)
    module = core._EXPORTS.get(name)
    if module is not None:  # ... and the defining module's object, not a copy
        assert value is getattr(importlib.import_module(f"toroid.worker.landscape.{module}"), name)


def test_from_toroid_import_works_and_unknown_names_raise():
    from toroid import align, normalize, path_kinds, torus_slice

    assert (align, normalize, torus_slice, path_kinds) == (core.align, core.normalize, core.torus_slice,
                                                           core.path_kinds)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        toroid.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        from toroid import no_such_name  # noqa: F401
    assert set(core.__all__) <= set(dir(toroid))


def test_import_toroid_and_the_torch_free_names_do_not_import_torch():
    code = (
        "import sys, toroid\n"
        "assert 'torch' not in sys.modules, 'import toroid imported torch'\n"
        "from toroid import path_kinds, check_path_kind, bend_kinds, to_json, local_energy_at_largest_sigma\n"
        "assert path_kinds(True) and 'torch' not in sys.modules, 'a torch-free name imported torch'\n"
    )
    done = _run(code, ROOT)
    assert done.returncode == 0, done.stderr


def test_moved_names_stay_importable_from_their_old_modules():
    from toroid.worker.landscape import bend, combination, evaluate, graph, kinds, paths, states, symmetry, torus

    for name in ("unit_graph", "is_binary", "sphere_blocks", "SphereBlock", "UnitGraph", "UnitGroup", "Producer",
                 "Consumer", "MODULE_HANDLERS", "FUNCTION_HANDLERS"):
        assert getattr(symmetry, name) is getattr(graph, name), name
    for name in ("as_state", "load_state", "combine_states", "recalibrate_bn", "has_batchnorm", "batchnorm_modules"):
        assert getattr(evaluate, name) is getattr(states, name), name
    for name in ("CombinationEvaluator", "FirstLayer"):
        assert getattr(evaluate, name) is getattr(combination, name), name
    from toroid.worker.landscape.paths import torus_point, torus_slice

    assert (torus_slice, torus_point) == (torus.torus_slice, torus.torus_point)
    for name in ("PATH_KINDS", "ALL_PATH_KINDS", "path_kinds", "check_path_kind", "bend_kinds", "check_bend_kind"):
        assert getattr(paths, name) is getattr(kinds, name), name
    assert bend.BEND_KINDS is kinds.BEND_KINDS
    with pytest.raises(AttributeError):
        paths.no_such_name  # noqa: B018


def test_no_core_module_exceeds_600_lines():
    folder = ROOT / "worker" / "landscape"
    long = {p.name: n for p in folder.rglob("*.py") if (n := len(p.read_text().splitlines())) > 600}
    assert not long, f"split these modules: {long}"


def test_deprecated_worker_alias_warns_and_returns_the_same_modules():
    code = (
        "import sys, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from worker.landscape import align\n"
        "    import worker.landscape.symmetry as old\n"
        "import toroid.worker.landscape as core\n"
        "import toroid.worker.landscape.symmetry as new\n"
        "assert align is core.align\n"
        "assert old is new and old.normalize is new.normalize\n"
        "assert new.__name__ == new.__spec__.name == 'toroid.worker.landscape.symmetry'\n"
        "assert sys.modules['worker'] is sys.modules['toroid.worker']\n"
        "aliases = [m for m in list(sys.modules) if m.startswith('worker.')]\n"
        "assert aliases and all(sys.modules[m] is sys.modules['toroid.' + m] for m in aliases), aliases\n"
        "warned = [w for w in caught if issubclass(w.category, DeprecationWarning)\n"
        "          and 'toroid.worker' in str(w.message)]\n"
        "assert len(warned) == 1, [str(w.message) for w in caught]\n"
    )
    done = _run(code, ROOT)
    assert done.returncode == 0, done.stderr
