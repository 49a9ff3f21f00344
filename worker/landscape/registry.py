"""Where an architecture name leads: Toroid's built-ins, a lab's own package, or a model library by name.

Three kinds of names (docs/models.md):

* a built-in (``mlp``, ``lenet``, ``vgg``, ``resnet``, the binary ones): ``toroid.worker.landscape.nets``;
* a plugin: an installed package declares builders in the entry-point group ``toroid.architectures``, e.g. in its
  ``pyproject.toml``::

      [project.entry-points."toroid.architectures"]
      tiny_cnn = "lab_models.toroid:tiny_cnn"

  The object is an ``ArchSpec``, a mapping with ``builder`` (and optionally ``description``, ``defaults``,
  ``binary``), or a plain callable ``builder(config, input_shape, num_classes) -> nn.Module``; a plain callable
  takes any config keys (its own signature checks them). Plugin names are lower-case identifiers and never
  replace a built-in;
* a library model: ``torchvision:<name>`` (``torchvision.models.get_model``) or ``timm:<name>``
  (``timm.create_model``), when that library is installed. The config holds the builder's keyword arguments, e.g.
  ``torchvision:resnet18`` with ``{"num_classes": 10}``; ``num_classes`` (and timm's ``in_chans``) default to the
  dataset's. Pretrained weights are refused: the server never downloads, and an upload brings its own weights.

Every non-built-in network is checked when it is built: a forward pass on the meta device (no memory, no compute)
must map one input of the dataset's shape to ``num_classes`` logits, so a torchvision ImageNet model on 1-channel
8x8 digits is a clear error, not a crash in a worker.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

import torch
from torch import nn

from toroid.worker.landscape.nets import ARCHITECTURES, ArchSpec

__all__ = [
    "ENTRY_POINT_GROUP",
    "LIBRARIES",
    "architecture_source",
    "available_architectures",
    "get_architecture",
    "library_available",
    "library_defaults",
    "plugin_architectures",
]

log = logging.getLogger("toroid.registry")
ENTRY_POINT_GROUP = "toroid.architectures"
#: Library prefixes: the module to import and how to build ``name`` with keyword arguments.
LIBRARIES = ("torchvision", "timm")
#: Keyword arguments that would download or read files: never passed to a library builder.
FORBIDDEN_KWARGS = frozenset({"weights", "pretrained", "weights_backbone", "pretrained_cfg", "pretrained_cfg_overlay",
                              "checkpoint_path", "pretrained_strict", "cache_dir"})
_PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_LIBRARY_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,56}$")
_lock = threading.Lock()
_plugins: dict[str, ArchSpec] | None = None
_plugin_problems: list[str] = []


# --------------------------------------------------------------------------------------------- libraries
def library_available(library: str) -> bool:
    """Whether ``torchvision`` / ``timm`` imports in this process."""
    try:
        importlib.import_module(library)
    except Exception:  # not installed, or built for another torch (torchvision's C++ ops then fail to load)
        return False
    return True


def _library_models(library: str) -> list[str]:
    module = importlib.import_module(library if library == "timm" else "torchvision.models")
    return sorted(module.list_models())


def _library_builder(library: str, model_name: str) -> Callable[[dict, tuple[int, ...], int], nn.Module]:
    def build(config: dict, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        kwargs = dict(config)
        forbidden = sorted(set(kwargs) & FORBIDDEN_KWARGS)
        if forbidden:
            raise ValueError(f"{library}:{model_name}: {forbidden} would load pretrained weights; the server never "
                             "downloads: upload the weights as a checkpoint instead")
        if kwargs.setdefault("num_classes", num_classes) != num_classes:
            raise ValueError(f"{library}:{model_name} with num_classes={kwargs['num_classes']} cannot be read on a "
                             f"dataset of {num_classes} classes")
        if library == "timm":
            import timm

            kwargs.setdefault("in_chans", int(input_shape[0]))
            return timm.create_model(model_name, pretrained=False, **kwargs)
        import torchvision

        return torchvision.models.get_model(model_name, weights=None, **kwargs)

    return build


def library_defaults(spec: ArchSpec, input_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    """The keyword arguments a library model takes from the dataset (recorded in the minimum's config)."""
    if spec.source == "timm":
        return {"num_classes": num_classes, "in_chans": int(input_shape[0])}
    return {"num_classes": num_classes} if spec.source == "torchvision" else {}


def _library_spec(name: str) -> ArchSpec:
    library, _, model_name = name.partition(":")
    if not _LIBRARY_NAME.match(model_name):
        raise ValueError(f"architecture {name!r}: give a model name after '{library}:', e.g. "
                         f"{'torchvision:resnet18' if library == 'torchvision' else 'timm:resnet18'}")
    if not library_available(library):
        raise ValueError(f"architecture {name!r} needs the {library} package, which this server does not have "
                         f"(install the 'vision' extra: pip install 'toroid[vision]', docs/models.md)")
    models = _library_models(library)
    if model_name not in models:
        close = [m for m in models if model_name.lower() in m.lower()][:8]
        raise ValueError(f"{library} has no model {model_name!r}" + (f"; similar: {close}" if close else ""))
    return ArchSpec(f"{library} model {model_name} (keyword arguments as config; no pretrained weights)", {}, False,
                    _library_builder(library, model_name), open_config=True, source=library)


# --------------------------------------------------------------------------------------------- plugins
def _plugin_spec(name: str, obj: Any) -> ArchSpec:
    if isinstance(obj, ArchSpec):
        return ArchSpec(obj.description, dict(obj.defaults), obj.binary, obj.builder, open_config=obj.open_config,
                        source="plugin")
    if isinstance(obj, Mapping) and callable(obj.get("builder")):
        defaults = dict(obj.get("defaults") or {})
        return ArchSpec(str(obj.get("description") or f"plugin architecture {name}"), defaults,
                        bool(obj.get("binary", False)), obj["builder"], open_config=not defaults, source="plugin")
    if callable(obj):
        doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
        return ArchSpec(doc[0] if doc else f"plugin architecture {name}", {}, False, obj, open_config=True,
                        source="plugin")
    raise TypeError(f"is a {type(obj).__name__}, not an ArchSpec, a mapping with a 'builder' or a callable")


def plugin_architectures(*, reload: bool = False) -> dict[str, ArchSpec]:
    """The architectures installed packages declare in the ``toroid.architectures`` entry-point group (loaded once
    per process; a broken plugin is left out and named in ``plugin_problems()``, never fatal)."""
    global _plugins
    with _lock:
        if _plugins is not None and not reload:
            return _plugins
        found: dict[str, ArchSpec] = {}
        problems: list[str] = []
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            where = f"entry point {entry.name!r} ({entry.value})"
            if not _PLUGIN_NAME.match(entry.name) or entry.name in ARCHITECTURES or entry.name in found:
                problems.append(f"{where}: the name must be a new lower-case identifier (a-z, 0-9, _), not a "
                                "built-in or another plugin's")
                continue
            try:
                found[entry.name] = _plugin_spec(entry.name, entry.load())
            except Exception as exc:  # an import error in someone's package must not take the server down
                problems.append(f"{where}: {type(exc).__name__}: {exc}")
        _plugins = found
        _plugin_problems[:] = problems
        for problem in problems:
            log.warning("architecture plugin left out: %s", problem)
        return found


def plugin_problems() -> list[str]:
    """Why declared plugins were left out (after ``plugin_architectures``)."""
    plugin_architectures()
    return list(_plugin_problems)


# --------------------------------------------------------------------------------------------- lookup
def available_architectures() -> dict[str, ArchSpec]:
    """The architectures a user can pick by a plain name: the built-ins, then the plugins."""
    return {**ARCHITECTURES, **plugin_architectures()}


def architecture_source(name: str) -> str:
    """``builtin``, ``plugin``, ``torchvision`` or ``timm`` (from the name alone; unknown names say ``builtin``)."""
    library = name.partition(":")[0] if ":" in name else ""
    if library in LIBRARIES:
        return library
    return "plugin" if name in plugin_architectures() else "builtin"


def get_architecture(name: str) -> ArchSpec:
    """The registry entry of ``name`` (built-in, plugin or ``library:model``); ValueError naming the choices."""
    if not isinstance(name, str) or len(name) > 64:
        raise ValueError(f"an architecture name is a string of at most 64 characters, got {str(name)[:80]!r}")
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    library = name.partition(":")[0]
    if ":" in name and library in LIBRARIES:
        return _library_spec(name)
    plugins = plugin_architectures()
    if name in plugins:
        return plugins[name]
    choices = sorted(available_architectures())
    raise ValueError(f"unknown architecture {name!r}; choose one of {choices}, or a library model such as "
                     "'torchvision:resnet18' or 'timm:resnet18' (docs/models.md)")


def check_output(model: nn.Module, name: str, input_shape: tuple[int, ...], num_classes: int) -> None:
    """A forward pass on the meta device: one input of ``input_shape`` must give ``num_classes`` logits."""
    try:
        with torch.no_grad():
            meta = _on_meta(model)
            meta.eval()
            out = meta(torch.empty((1, *input_shape), device="meta"))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"architecture {name!r} cannot read inputs of shape {tuple(input_shape)}: {first}") from exc
    shape = tuple(getattr(out, "shape", ()))
    if shape != (1, num_classes):
        raise ValueError(f"architecture {name!r} maps an input of shape {tuple(input_shape)} to an output of shape "
                         f"{shape[1:] if shape else type(out).__name__}, not {num_classes} class logits")


def _on_meta(model: nn.Module) -> nn.Module:
    import copy

    if any(t.device.type != "meta" for t in model.state_dict().values()):
        return copy.deepcopy(model).to("meta")
    return model
