"""Toroid's worker: the Celery tasks (``toroid.worker.tasks``) and the science core (``toroid.worker.landscape``).

Deprecated alias for one release (docs/architecture.md): this folder used to be imported as the top-level package
``worker``. From a source checkout (the repository root on ``sys.path``), ``import worker`` and
``from worker.landscape import align`` still work: they warn (``DeprecationWarning``) and resolve to the
``toroid.worker`` modules themselves, never to a second copy. ``sys.modules["worker"]`` becomes ``toroid.worker``,
and a meta-path finder maps every ``worker.<sub>`` (``worker.landscape``, ``worker.landscape.symmetry``, ...) to
the module object ``toroid.worker.<sub>``. Under its real name, ``toroid.worker``, this file does nothing.
"""

if __name__ == "worker":
    import importlib
    import importlib.abc
    import importlib.util
    import sys
    import warnings

    class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        """Finder and loader of ``worker.<sub>``: the loaded module is ``toroid.worker.<sub>`` itself."""

        toroid_worker_alias = True

        def find_spec(self, fullname, path=None, target=None):
            if not fullname.startswith("worker."):
                return None
            return importlib.util.spec_from_loader(fullname, self)

        def exec_module(self, module):
            # Replace the placeholder module in sys.modules: the import system then hands out the real module
            # (and leaves its __spec__, __name__ and __path__ untouched).
            sys.modules[module.__name__] = importlib.import_module(f"toroid.{module.__name__}")

    warnings.warn(
        "the top-level package 'worker' is deprecated; import 'toroid.worker' (e.g. 'from toroid.worker.landscape "
        "import align', or 'from toroid import align') instead; the alias goes away in the next release "
        "(docs/architecture.md)",
        DeprecationWarning,
        stacklevel=2,
    )
    if not any(getattr(finder, "toroid_worker_alias", False) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Alias())
    sys.modules[__name__] = importlib.import_module("toroid.worker")
