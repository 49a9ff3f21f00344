"""Key mapping: read a state_dict whose names differ from the declared architecture's but whose tensors line up.

A researcher's network is often the same network under other names: an ``nn.Sequential`` numbers its layers
(``0.weight``, ``2.weight``), a class of their own calls them ``encoder.fc.weight``. When the upload's tensors, in
layer order, have exactly the shapes and kinds (floating or integer) of the architecture's, one after the other,
``propose_key_map`` proposes the renaming ``{upload key: architecture key}``. The API answers such an upload with a
422 that carries the proposal; sent again with ``key_map=auto`` (the same proposal, recomputed) or an explicit JSON
map, the upload is renamed and then checked key by key like any other (``toroid.store.loading.check_state_dict``).

Layer order. ``torch.save`` keeps a state_dict's order (module registration order), but safetensors stores its
tensors sorted, so the order of a file is not always the network's. Two orders are tried, the file's own first:
then the *natural* order of the names, where a name is split at its dots and numbers compare as numbers
(``2.weight`` before ``10.weight``) and, within one module, the tensors come in PyTorch's registration order
(``weight``, ``bias``, then BatchNorm's ``running_mean``, ``running_var``, ``num_batches_tracked``). A proposal is
made only when every tensor pairs up; nothing is guessed from shapes alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import torch

from toroid.store.errors import Invalid
from toroid.store.text import check_json_text

__all__ = ["AUTO", "apply_key_map", "natural_order", "parse_key_map", "propose_key_map"]

AUTO = "auto"
#: Where a module's tensors come in PyTorch's registration order (parameters, then buffers).
_ATTRIBUTE_RANK = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3, "num_batches_tracked": 4}
#: An explicit map may name at most this many keys (more than any architecture the server accepts).
MAX_MAP_ENTRIES = 100_000


def _signature(tensor: torch.Tensor) -> tuple[tuple[int, ...], bool]:
    return tuple(int(s) for s in tensor.shape), bool(tensor.is_floating_point())


def _natural_key(name: str) -> tuple:
    module, _, attribute = name.rpartition(".")
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"\.", module) if p != "")
    return parts, _ATTRIBUTE_RANK.get(attribute, len(_ATTRIBUTE_RANK)), attribute


def natural_order(names: list[str]) -> list[str]:
    """``names`` in layer order as their spelling tells it (see the module docstring)."""
    return sorted(names, key=_natural_key)


def propose_key_map(state: Mapping[str, torch.Tensor], template: Mapping[str, torch.Tensor]
                    ) -> dict[str, str] | None:
    """``{upload key: architecture key}`` when the upload's keys differ from ``template``'s but its tensors pair up
    one to one in layer order with the same shapes and kinds; ``None`` when the keys already match or no order
    pairs them up."""
    if set(state) == set(template) or len(state) != len(template):
        return None
    wanted = [_signature(t) for t in template.values()]
    for order in (list(state), natural_order(list(state))):
        if [_signature(state[k]) for k in order] == wanted:
            return dict(zip(order, template, strict=True))
    return None


def parse_key_map(text: str | None) -> str | dict[str, str] | None:
    """The ``key_map`` form field: empty (no renaming), ``auto``, or a JSON object of upload key -> architecture
    key."""
    if text is None or not text.strip():
        return None
    if text.strip() == AUTO:
        return AUTO
    check_json_text(text, "key_map")
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid(f"key_map must be 'auto' or a JSON object {{\"upload key\": \"architecture key\"}}: {exc}"
                      ) from exc
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise Invalid("key_map must be 'auto' or a JSON object mapping upload keys (strings) to architecture keys "
                      "(strings)")
    if len(value) > MAX_MAP_ENTRIES:
        raise Invalid(f"key_map names {len(value):,} keys; at most {MAX_MAP_ENTRIES:,} are accepted")
    return value


def apply_key_map(state: Mapping[str, torch.Tensor], key_map: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """``state`` with its keys renamed by ``key_map`` (keys it does not name keep theirs). Raises ``Invalid`` when
    the map names a key the upload lacks or two tensors would get one name."""
    missing = [k for k in key_map if k not in state]
    if missing:
        raise Invalid(f"key_map names {len(missing)} key(s) the upload does not have, e.g. {missing[0]!r}; the "
                      f"upload's keys are {list(state)[:8]}{' ...' if len(state) > 8 else ''}")
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        target = key_map.get(key, key)
        if target in renamed:
            raise Invalid(f"key_map gives two tensors the name {target!r}; each architecture key may be used once")
        renamed[target] = tensor
    return renamed
