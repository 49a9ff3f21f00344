"""Untrusted ``torch.export`` archives (``.pt2``): inspect without running anything, load only what was vouched for.

Threat model: anyone may upload a ``.pt2`` to the shared server, and a plain ``torch.export.load`` of hostile bytes
runs their code. Weights and constants marked ``use_pickle`` go through ``torch.load(weights_only=False)``, opaque
constants through ``pickle.loads``, custom objects through the torchbind unpickler, and the sample inputs fall back
to ``weights_only=False``. The graph JSON is no safer: shape expressions are parsed by ``sympy.sympify`` (``eval``),
tree specs may name modules to import, ``guards_code``, argument names, weight names and stack traces end up in
Python source that ``program.module()`` executes, and nodes may call custom ops, torchbind methods or higher-order
operators that run whatever the server registered under that name. AOTInductor entries are native libraries.

Defence: ``inspect_pt2`` reads the zip directory (``toroid.worker.landscape.io.inspect_archive``: entry count, total
size, zip bombs) and the JSON configs itself (``json.loads``, size capped) and refuses what it cannot vouch for: a
second model, pickled payloads, custom objects, ops outside ATen/prims and basic Python arithmetic, text that could
break out of generated code, unknown archive or schema versions, missing parts. Sample inputs are loaded with
``weights_only=True`` only. ``load_pt2`` then writes a fresh archive of the vouched entries alone (the checked JSON
re-serialized without guard code and debug metadata, the sample inputs re-saved from the safe load) and gives that,
never the upload, to ``torch.export.load``; the loaded weights are checked against the manifest. ``program_module``
builds the module without the generated guard function. Layout facts are those of torch 2.13: archive version 0,
export schema 8.x. This is a science-core module (docs/architecture.md): it imports torch and the standard library.
"""

from __future__ import annotations

import copy
import inspect
import io
import json
import keyword
import math
import operator
import re
import warnings
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch

from toroid.worker.landscape.io import check_storages, inspect_archive, is_torch_zip

ARCHIVE_VERSION, SCHEMA_MAJOR = "0", 8  # the archive_version entry and export schema major these checks know
MAX_JSON_BYTES = 64 << 20  # largest JSON config read (models/*.json, the weights and constants configs)
MAX_DEPTH = 200  # nesting of the JSON trees walked here
MAX_TEXT = 4096  # longest string accepted in the graph JSON
MAX_EXPR, MAX_EXPR_CHARS = 4000, 2 << 20  # longest shape expression; all of them (sympy parses each)

AGAIN = "save the program again with torch.export.save"
ADVICE = ("export a model built from standard torch layers on the CPU with torch.export.export(model.eval().cpu(), "
          "(x,)) and save it with torch.export.save(program, 'model.pt2')")

# The export schema's ScalarType codes of the dtypes accepted here (Layout 7 is strided).
_DTYPES: dict[int, torch.dtype] = {
    1: torch.uint8, 2: torch.int8, 3: torch.int16, 4: torch.int32, 5: torch.int64, 6: torch.float16,
    7: torch.float32, 8: torch.float64, 10: torch.complex64, 11: torch.complex128, 12: torch.bool, 13: torch.bfloat16,
}
_STRIDED = 7
_OP = re.compile(r"torch\.ops\.(aten|prims)\.(?!__)([A-Za-z_]\w*)\.(?!__)([A-Za-z_]\w*)", re.ASCII)  # no dunders
_DENIED_OPS = frozenset({"from_file", "_print", "set_"})  # ATen ops that read files, print, or alias raw storage
_PY_OPS = {f"{prefix}.{name}": getattr(module, name) for prefix, module, names in (  # as export names them
    ("_operator", operator, "getitem add sub mul truediv floordiv mod neg pos abs eq ne lt le gt ge and_ or_ xor"),
    ("torch", torch, "sym_int sym_float sym_max sym_min sym_not sym_ite"), ("math", math, "ceil floor trunc sqrt"))
    for name in names.split() if hasattr(module, name)}
# Names a symbolic shape expression (sympy's srepr, as torch writes it) may use: sympy constructors, the torch sympy
# functions the deserializer knows, and keyword arguments; srepr writes calls only, so the sole operator is the minus
# of a negative number. No attribute access, no lambda, no powers or shifts (an exact 10**10**10 never ends).
_EXPR_NAMES = frozenset((
    "Symbol Integer Float Rational Add Mul Max Min Abs Mod floor ceiling Eq Ne Lt Le Gt Ge Equality Unequality "
    "StrictLessThan StrictGreaterThan LessThan GreaterThan And Or Not true false True False oo zoo nan Infinity "
    "NegativeInfinity NaN ComplexInfinity NegativeOne One Zero Half positive negative nonnegative nonpositive integer "
    "real finite infinite nonzero zero commutative precision rational odd even extended_real FloorDiv "
    "ModularIndexing Where PythonMod CleanDiv CeilToInt FloorToInt CeilDiv FloatTrueDiv IntTrueDiv "
    "IsNonOverlappingAndDenseIndicator TruncToFloat TruncToInt RoundToInt ToFloat Identity").split())
_EXPR_TOKEN = re.compile(r"\s+|([A-Za-z][A-Za-z0-9_]*)|\d{1,30}(?:\.\d{1,30})?(?:[eE]-?\d{1,3})?(?![\d.])"
                         r"|'[A-Za-z0-9_.\-]{0,100}'|([(),=\-])")
_SYMBOL = re.compile(r"[a-z]{1,4}\d+")
_TREESPEC_TYPES = frozenset({None, "builtins.tuple", "builtins.list", "builtins.dict", "collections.OrderedDict",
                             "torch.fx.immutable_collections.immutable_list",
                             "torch.fx.immutable_collections.immutable_dict"})
_KEPT_METADATA = ("nn_module_stack",)  # the module path of each node; stack traces and the rest are left out
_META_ENTRIES = frozenset({"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"})
_REFUSED_DIRS = {"data/aotinductor/": "AOTInductor artifacts (compiled native code)", "data/executorch/":
                 "ExecuTorch artifacts", "data/mtia": "MTIA artifacts", "xl_model_weights/": "external weights"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # e.g. "float32"
    nbytes: int


@dataclass(frozen=True)
class UserInput:
    name: str  # the placeholder's name
    shape: tuple[int | str, ...]  # a dynamic dimension is its symbol (e.g. "s31") or expression
    dtype: str


@dataclass(frozen=True)
class Pt2Manifest:
    """What a ``.pt2`` archive holds, read from its JSON before any tensor is loaded."""

    model_name: str
    archive_version: str
    schema_version: str
    torch_version: str  # as written by the exporter (informational)
    parameters: tuple[TensorSpec, ...]
    buffers: tuple[TensorSpec, ...]  # persistent buffers (BatchNorm running stats, ...): part of the state_dict
    constants: tuple[TensorSpec, ...]  # lifted tensor constants and non-persistent buffers
    inputs: tuple[UserInput, ...]  # the user input placeholders
    num_nodes: int
    ops: frozenset[str]  # e.g. "aten.conv2d.default", "_operator.getitem"
    weight_bytes: int  # parameters and buffers
    total_bytes: int  # uncompressed size of all entries
    dropped: tuple[str, ...]  # what load_pt2 leaves out: extra files, guard code

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter and buffer names with their shapes: the keys of the program's state_dict."""
        return {t.name: t.shape for t in (*self.parameters, *self.buffers)}


def _dtype(code: Any) -> torch.dtype | None:
    return _DTYPES.get(code) if type(code) is int else None


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _plain(text: Any, where: str = "") -> bool:
    """Printable text without quotes or backslashes cannot leave a string literal or comment of generated code;
    with ``where``, other text is refused."""
    if isinstance(text, str) and len(text) <= MAX_TEXT and text.isprintable() and not set(text) & set("'\"\\`"):
        return True
    if where:
        raise ValueError(f"{where} holds the text {str(text)[:60]!r}, with quotes, backslashes, control characters or "
                         f"over {MAX_TEXT} characters; such text could turn into code and is refused: {ADVICE}")
    return False


def _identifier(text: Any) -> bool:
    return isinstance(text, str) and text.isidentifier() and text.isascii() and not keyword.iskeyword(text)


def is_pt2(data: bytes) -> bool:
    """Whether the bytes (never a file name) are a ``torch.export`` archive: a zip whose root/archive_format is pt2."""
    if not is_torch_zip(data):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            root = archive.infolist()[0].filename.split("/")[0]
            marker = [i for i in archive.infolist() if i.filename == f"{root}/archive_format"]
            return len(marker) == 1 and marker[0].file_size <= 16 and archive.read(marker[0]).strip() == b"pt2"
    except Exception:
        return False


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError, EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"the archive entry {info.filename!r} is unreadable ({type(exc).__name__}): {AGAIN}") from exc


def _json(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Any:
    if info.file_size > MAX_JSON_BYTES:
        raise ValueError(f"the archive entry {info.filename!r} holds {info.file_size:,} bytes of JSON, more than the "
                         f"{MAX_JSON_BYTES:,} allowed: {ADVICE}")
    raw = _read(archive, info)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"the archive entry {info.filename!r} is not JSON ({type(exc).__name__}): {AGAIN}") from exc


def _int(value: Any, what: str) -> int:
    if isinstance(value, dict) and set(value) == {"as_int"}:
        value = value["as_int"]
    if type(value) is not int or value < 0:
        raise ValueError(f"{what} is not a fixed non-negative integer ({str(value)[:40]!r}); weights must have "
                         f"static shapes: {ADVICE}")
    return value


def _tensor_meta(meta: Any, what: str) -> tuple[torch.dtype, tuple[int, ...], tuple[int, ...], int]:
    """dtype, shape, strides and storage offset of a weight or constant: a plain dense CPU tensor, or refused."""
    dtype = _dtype(meta.get("dtype")) if isinstance(meta, dict) else None
    if dtype is None or meta.get("layout") != _STRIDED:
        raise ValueError(f"{what} is not a dense tensor of a supported dtype (float, double, half, bfloat16, integer, "
                         f"bool; no sparse layouts): {ADVICE}")
    device = meta.get("device")
    if not (isinstance(device, dict) and device.get("type") == "cpu"):
        raise ValueError(f"{what} is stored for a device other than the CPU; move the model and the example input "
                         "to the CPU (model.cpu(), x.cpu()) before torch.export.export")
    sizes, strides = meta.get("sizes"), meta.get("strides")
    if not (isinstance(sizes, list) and isinstance(strides, list) and len(sizes) == len(strides) <= 64):
        raise ValueError(f"{what} has no valid sizes and strides: {AGAIN}")
    return (dtype, tuple(_int(s, f"a size of {what}") for s in sizes), tuple(_int(s, f"a stride of {what}")
            for s in strides), _int(meta.get("storage_offset"), f"the storage offset of {what}"))


def _check_op(target: Any) -> None:
    match = _OP.fullmatch(target) if isinstance(target, str) else None
    if (match and match.group(2) not in _DENIED_OPS) or target in _PY_OPS:
        return
    parts = str(target).split(".")
    name = "::".join(parts[2:4]) if len(parts) >= 4 and parts[:2] == ["torch", "ops"] else str(target)
    kind = "a higher-order op (control flow, torchbind calls)" if parts[2:3] == ["higher_order"] else "a custom op"
    raise ValueError(f"the graph calls {name[:120]!r} ({str(target)[:160]!r}), {kind}; only ATen/prims operators and "
                     "basic Python arithmetic are accepted, as any other name runs whatever code the server registered "
                     "under it. Replace custom ops (torch.library), torchbind classes and control flow with standard "
                     f"torch functions, then {ADVICE}")


def _check_expr(text: str, where: str) -> None:
    """A symbolic shape expression, as sympy's srepr writes it; torch parses it with ``sympy.sympify`` (eval)."""
    refuse = ValueError(f"{where} holds the shape expression {text[:80]!r}, which is not a plain sympy expression; "
                        f"the shape parser evaluates it as Python, so it is refused: {ADVICE}")
    pos, calls, lattice = 0, ["top"], 0  # the function of each open parenthesis; arguments of Max and Min
    while pos < len(text) <= MAX_EXPR:
        match = _EXPR_TOKEN.match(text, pos)
        name, punct = (match.group(1), match.group(2)) if match and match.end() > pos else ("_", None)
        if punct == "(":
            calls.append(re.search(r"\w*\s*$", text[max(0, pos - 40):pos]).group().strip())
        calls = calls[:-1] if punct == ")" else calls
        lattice += punct == "," and calls[-1:] in (["Max"], ["Min"])  # sympy's Max/Min cost grows as n**2 and more
        if (name is not None and name not in _EXPR_NAMES and not _SYMBOL.fullmatch(name)) or lattice > 8 or not (
                0 < len(calls) <= 100):
            raise refuse
        pos = match.end()
    if len(calls) != 1 or len(text) > MAX_EXPR or any(int(p) > 113 for p in re.findall(r"precision\s*=\s*(\d+)", text)):
        raise refuse


def _check_treespec(text: Any, where: str) -> None:
    """A pytree spec (JSON): only tuples, lists and dicts with identifier or integer keys (no enums or default
    factories, which make the loader import modules; no keys that could break out of the generated signature)."""
    refuse = ValueError(f"{where} holds an input/output structure (tree spec) other than tuples, lists and dicts "
                        f"keyed by identifiers; it is refused: {ADVICE}")

    def parse(text: Any) -> Any:
        try:
            return json.loads(text) if isinstance(text, str) and len(text) <= MAX_JSON_BYTES else {}
        except (ValueError, RecursionError):
            raise refuse from None

    spec = parse(text)
    stack = [(spec[1], 0)] if isinstance(spec, list) and len(spec) == 2 and spec[0] == 1 else [(None, 0)]
    while stack:
        node, depth = stack.pop()
        if (depth > MAX_DEPTH or not isinstance(node, dict) or set(node) != {"type", "context", "children_spec"}
                or node["type"] not in _TREESPEC_TYPES or not isinstance(node["children_spec"], list)):
            raise refuse
        context = None if node["context"] is None else parse(node["context"])
        keys = context if isinstance(context, list) else [] if context is None else [{}]
        if not all(type(key) is int or _identifier(key) for key in keys):
            raise refuse
        stack.extend((child, depth + 1) for child in node["children_spec"])


def _check_program_json(program: Any) -> None:
    """Walk the whole exported-program JSON (iteratively): every operator, expression, tree spec and string torch
    will interpret. Node metadata is filtered in place to the informative, harmless keys."""
    stack: list[tuple[Any, int]] = [(program, 0)]
    exprs = 0
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"the program JSON nests deeper than {MAX_DEPTH} levels: {ADVICE}")
        if isinstance(value, str):
            _plain(value, "the program graph")
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, dict):
            if "target" in value and isinstance(value.get("metadata"), dict):  # a graph node
                meta = value["metadata"]
                value["metadata"] = {k: meta[k] for k in _KEPT_METADATA if _plain(meta.get(k))}
            for key, item in value.items():
                _plain(key, "the program graph")
                if key in ("target", "as_operator"):
                    _check_op(item)
                elif key in ("as_custom_obj", "custom_obj") or (key == "custom_obj_values" and item):
                    raise ValueError("the program uses a custom object (a torchbind script object), whose methods run "
                                     f"native code registered on the loading machine; it is refused: {ADVICE}")
                elif key == "expr_str":
                    if (exprs := exprs + len(str(item))) > MAX_EXPR_CHARS or not isinstance(item, str):
                        raise ValueError(f"the shape expressions exceed {MAX_EXPR_CHARS:,} characters: {ADVICE}")
                    _check_expr(item, "the program graph")
                elif key in ("in_spec", "out_spec"):
                    _check_treespec(item, f"the program's {key}")
                elif key == "forward_arg_names" and item is not None:
                    if not (isinstance(item, list) and all(map(_identifier, item))):
                        raise ValueError("the program's argument names (forward_arg_names) are not all Python "
                                         f"identifiers; they would become code and are refused: {ADVICE}")
                else:
                    stack.append((item, depth + 1))


def _payloads(config: Any, kind: str, prefix: str) -> dict[str, tuple[str, torch.dtype, tuple[int, ...],
                                                                      tuple[int, ...], int]]:
    """fqn -> (path_name, dtype, shape, strides, offset) of a weights or constants config; no pickles, no objects."""
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict) or not all(isinstance(meta, dict) for meta in entries.values()):
        raise ValueError(f"the {kind} config of the archive is not a mapping of names to payloads: {AGAIN}")
    out = {}
    for fqn, meta in entries.items():
        _plain(fqn, f"the {kind} config")
        path = meta.get("path_name")
        if isinstance(path, str) and path.startswith(("custom_obj_", "opaque_obj_")):
            raise ValueError(f"the {kind} entry {fqn!r} is a custom or opaque Python object ({path[:40]!r}), which "
                             f"loads through pickle or the torchbind unpickler and can run code; it is refused: "
                             f"keep only tensors as module attributes, then {ADVICE}")
        if meta.get("use_pickle") is not False:
            raise ValueError(f"the {kind} entry {fqn!r} is stored with pickle (use_pickle), which can run code when "
                             f"loaded; it is refused. Pickled payloads come from tensor subclasses (quantized, "
                             f"wrapped or parametrized tensors): convert such weights to plain tensors, then {ADVICE}")
        if not (isinstance(path, str) and re.fullmatch(rf"{prefix}\d{{1,9}}", path)):
            raise ValueError(f"the {kind} entry {fqn!r} points to {str(path)[:40]!r}, not a {prefix}<n> file: {AGAIN}")
        out[fqn] = (path, *_tensor_meta(meta.get("tensor_meta"), f"the {kind} entry {fqn!r}"))
    return out


def _check_records(payloads: dict, entries: dict[str, zipfile.ZipInfo], directory: str, kind: str) -> dict[str, int]:
    """Each payload file exists and holds exactly the bytes of every tensor that reads it (no hidden extra data,
    no tensor larger than its bytes); returns path -> size."""
    sizes: dict[str, int] = {}
    dtypes: dict[str, torch.dtype] = {}
    for fqn, (path, dtype, shape, stride, offset) in payloads.items():
        info = entries.get(directory + path)
        if info is None or dtypes.setdefault(path, dtype) != dtype:
            raise ValueError(f"the {kind} {fqn!r} points to {directory + path!r}, which the archive lacks or other "
                             f"tensors read with another dtype: {AGAIN}")
        numel, size = math.prod(shape), dtype.itemsize
        extent = 0 if numel == 0 else offset + sum((n - 1) * s for n, s in zip(shape, stride, strict=True)) + 1
        if info.file_size != numel * size or extent * size > info.file_size:
            raise ValueError(
                f"the {kind} {fqn!r} ({'x'.join(map(str, shape)) or 'scalar'}, {_name(dtype)}) needs "
                f"{numel * size:,} bytes but its file {path!r} holds {info.file_size:,}: a tensor must be stored "
                f"alone and whole; save standalone tensors (clone slices and tied views), then {ADVICE}")
        sizes[path] = info.file_size
    return sizes


def _sample_inputs(raw: bytes, max_bytes: int | None, max_entries: int | None) -> bytes:
    """Load the sample inputs with weights_only=True (safe) and return them re-saved by torch.save."""
    if not raw:
        return b""
    if is_torch_zip(raw):
        inspect_archive(raw, max_bytes, max_entries)
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]{1,120})", str(exc))
        why = f"it references {found.group(1)!r}" if found else type(exc).__name__
        raise ValueError(
            f"the archive's sample inputs cannot be loaded as plain tensors ({why}); pickled objects can run code "
            f"and are refused. Pass plain tensors as the example inputs of torch.export.export, then {ADVICE}") from exc
    stack = [obj]
    ok = isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], tuple | list) and isinstance(obj[1], dict)
    while ok and stack:
        item = stack.pop()
        ok = all(map(_identifier, item)) if isinstance(item, dict) else isinstance(item, tuple | list) or (
            type(item) in (torch.Tensor, int, float, bool) or item is None)
        stack.extend(item.values() if isinstance(item, dict) else item if isinstance(item, tuple | list) else ())
    if not ok:
        raise ValueError("the archive's sample inputs are not (args, kwargs) of plain tensors and numbers keyed by "
                         f"identifiers: {ADVICE}")
    torch.save(obj, buffer := io.BytesIO())  # benign bytes even for a loader that falls back to weights_only=False
    return buffer.getvalue()


def _display(size: Any) -> int | str:
    """A dimension of a user input: its size, the symbol of a dynamic one, or its expression."""
    if type(size.get("as_int")) is int:
        return size["as_int"]
    found = re.fullmatch(r"Symbol\('(\w+)'.*\)", expr := str(size.get("as_expr", {}).get("expr_str", "?")))
    return found.group(1) if found else expr[:80]


def _vouch(data: bytes, max_bytes: int | None, max_entries: int | None) -> tuple[Pt2Manifest, dict[str, bytes]]:
    """The manifest and the records of a sanitized archive (named as torch.export.save names them for "model")."""
    try:
        return _vouched(data, max_bytes, max_entries)
    except (TypeError, AttributeError, KeyError, IndexError, StopIteration, OverflowError) as exc:
        raise ValueError(f"the archive's JSON does not have the layout torch.export.save writes ({type(exc).__name__})"
                         f": it is damaged or was edited; {ADVICE}") from exc


def _vouched(data: bytes, max_bytes: int | None, max_entries: int | None) -> tuple[Pt2Manifest, dict[str, bytes]]:
    from torch._export.serde.schema import SCHEMA_VERSION

    if SCHEMA_VERSION[0] != SCHEMA_MAJOR:  # the checks below describe schema 8; a new torch needs new checks
        raise ValueError(f"this server's torch ({torch.__version__}) uses export schema {SCHEMA_VERSION[0]}, not the "
                         f"{SCHEMA_MAJOR} its .pt2 checks know: .pt2 uploads are refused until they are updated")
    if not is_torch_zip(data):
        raise ValueError("the file is not a torch.export archive (a zip written by torch.export.save): " + ADVICE)
    try:
        total = inspect_archive(data, max_bytes, max_entries)
    except NotImplementedError as exc:  # zipfile's "unsupported zip version", which inspect_archive lets through
        raise ValueError(f"the file's zip directory is unreadable ({exc}): {AGAIN}") from exc
    archive = zipfile.ZipFile(io.BytesIO(data))
    infos = archive.infolist()
    if twice := sorted(n for n, c in Counter(i.filename for i in infos).items() if c > 1):
        raise ValueError(f"the archive holds the entries {twice[:5]} more than once; readers disagree on which copy "
                         f"counts, so it is refused: {AGAIN}")
    root = infos[0].filename.split("/")[0] if infos else ""
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        rel = info.filename[len(root) + 1:]
        if not root or not info.filename.startswith(root + "/") or any(p in ("", ".", "..") for p in rel.split("/")):
            raise ValueError(f"the entry {info.filename[:120]!r} lies outside the archive's folder {root!r}: {AGAIN}")
        _plain(rel, "an archive entry name")
        entries[rel] = info
    for rel in ("archive_format", "archive_version"):
        if rel not in entries or entries[rel].file_size > 64:
            raise ValueError(f"the archive lacks the marker {rel!r}: it is not a torch.export archive, or comes from "
                             f"a torch older than 2.7: {ADVICE}")
    if _read(archive, entries["archive_format"]).strip() != b"pt2":
        raise ValueError("the archive's archive_format is not 'pt2': it is not a torch.export archive; " + ADVICE)
    if (version := _read(archive, entries["archive_version"]).decode("utf-8", "replace").strip()) != ARCHIVE_VERSION:
        raise ValueError(f"the archive has version {version[:20]!r}; this server reads torch.export archives of "
                         f"version {ARCHIVE_VERSION} (export schema {SCHEMA_MAJOR}.x, torch {torch.__version__}) "
                         "only: save the program with that torch release")
    if "byteorder" in entries and _read(archive, entries["byteorder"]).strip() != b"little":
        raise ValueError("the archive stores big-endian tensors; save the program on a little-endian machine")

    models = sorted(rel.removeprefix("models/").removesuffix(".json") for rel in entries if rel.startswith("models/"))
    if len(models) != 1 or not re.fullmatch(r"[A-Za-z0-9_\-]{1,100}", models[0]):
        found = f"the models {models[:10]}" if models else "no model"
        raise ValueError(f"the archive holds {found} (models/*.json); upload exactly one exported program per file, "
                         "saved with torch.export.save(program, 'model.pt2')")
    name = models[0]
    required = {"models": f"models/{name}.json", "weights": f"data/weights/{name}_weights_config.json",
                "constants": f"data/constants/{name}_constants_config.json", "sample": f"data/sample_inputs/{name}.pt"}
    if missing := [rel for rel in required.values() if rel not in entries]:
        raise ValueError(f"the archive lacks {missing}: it is incomplete or was written by another tool; {AGAIN}")
    configs = {part: _json(archive, entries[required[part]]) for part in ("weights", "constants")}
    weights = _payloads(configs["weights"], "weights", "weight_")
    constants = _payloads(configs["constants"], "constants", "tensor_")
    weight_sizes = _check_records(weights, entries, "data/weights/", "weight")
    constant_sizes = _check_records(constants, entries, "data/constants/", "constant")

    dropped, expected = [], set(required.values()) | _META_ENTRIES
    expected |= {f"data/weights/{p}" for p in weight_sizes} | {f"data/constants/{p}" for p in constant_sizes}
    for rel in sorted(set(entries) - expected):
        base = rel.split("/")[-1]
        if rel.startswith("extra/"):
            dropped.append(f"extra file {rel[len('extra/'):]!r}")
            continue
        what = ("a custom object, loaded through pickle or the torchbind unpickler (which can run code)"
                if base.startswith(("custom_obj_", "opaque_obj_")) else "weights in the legacy pickled format (which "
                "can run code)" if base == f"{name}.pt" else next((v for k, v in _REFUSED_DIRS.items()
                                                                    if rel.startswith(k)), "not a torch.export part"))
        raise ValueError(f"the archive holds {rel!r}: {what}; it is refused. Upload the exported program alone: "
                         f"{ADVICE}")

    program = _json(archive, entries[required["models"]])
    module = program.get("graph_module") if isinstance(program, dict) else None
    graph = module.get("graph") if isinstance(module, dict) else None
    signature = module.get("signature") if isinstance(module, dict) else None
    if not (isinstance(graph, dict) and isinstance(graph.get("nodes"), list) and isinstance(signature, dict)
            and isinstance(signature.get("input_specs"), list) and isinstance(graph.get("tensor_values"), dict)):
        raise ValueError(f"the archive's models/{name}.json is not an exported program: {AGAIN}")
    schema = program.get("schema_version")
    if not (isinstance(schema, dict) and schema.get("major") == SCHEMA_MAJOR and type(schema.get("minor")) is int):
        raise ValueError(f"the program has export schema {str(schema)[:40]!r}; this server reads schema "
                         f"{SCHEMA_MAJOR}.x only (torch {torch.__version__}): save the program with that release")
    if guards := program.get("guards_code"):  # Python source program.module() would exec; input ranges stay checked
        dropped.append(f"{len(guards)} guard expression(s) (guards_code)")
    program["guards_code"] = []
    module["metadata"], module["treespec_namedtuple_fields"] = {}, {}
    if not isinstance(ranges := program.get("range_constraints"), dict) or not all(map(_SYMBOL.fullmatch, ranges)):
        raise ValueError("the program's range constraints name something other than shape symbols: " + ADVICE)
    _check_program_json(program)

    params, buffers, consts, inputs = [], [], [], []
    for spec in signature["input_specs"]:
        kind, body = next(iter(spec.items())) if isinstance(spec, dict) and len(spec) == 1 else ("?", None)
        body = body if isinstance(body, dict) else {}
        if kind == "parameter":
            params.append(str(body.get("parameter_name")))
        elif kind == "buffer":
            (buffers if body.get("persistent", True) else consts).append(str(body.get("buffer_name")))
        elif kind == "tensor_constant":
            consts.append(str(body.get("tensor_constant_name")))
        elif kind == "user_input":
            tensor = body.get("arg", {}).get("as_tensor") if isinstance(body.get("arg"), dict) else None
            meta = graph["tensor_values"].get(tensor.get("name")) if isinstance(tensor, dict) else None
            if not isinstance(meta, dict) or _dtype(meta.get("dtype")) is None:
                raise ValueError("the program takes an input that is not a tensor of a supported dtype; only tensor "
                                 f"inputs are accepted: {ADVICE}")
            sizes = meta.get("sizes") if isinstance(meta.get("sizes"), list) else []
            inputs.append(UserInput(str(tensor["name"]), tuple(_display(s) for s in sizes),
                                    _name(_DTYPES[meta["dtype"]])))
        elif kind != "constant_input":
            raise ValueError(f"the program has an input of kind {kind[:40]!r} (tokens of effectful ops or custom "
                             f"objects), which is refused: {ADVICE}")
    for expected_names, payload, kind in ((params + buffers, weights, "weights"), (consts, constants, "constants")):
        missing, extra = sorted(set(expected_names) - set(payload)), sorted(set(payload) - set(expected_names))
        if missing or extra or len(set(expected_names)) != len(expected_names):
            raise ValueError(f"the archive's {kind} do not match its graph (missing {missing[:5]}, unused "
                             f"{extra[:5]}): the file is incomplete or was edited; {AGAIN}")

    def specs(names: list[str], pay: dict) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(n, pay[n][2], _name(pay[n][1]), math.prod(pay[n][2]) * pay[n][1].itemsize)
                     for n in names)

    manifest = Pt2Manifest(
        model_name=name, archive_version=version, schema_version=f"{schema['major']}.{schema['minor']}",
        torch_version=str(program.get("torch_version", "?"))[:40], parameters=specs(params, weights),
        buffers=specs(buffers, weights), constants=specs(consts, constants), inputs=tuple(inputs),
        num_nodes=len(graph["nodes"]), ops=frozenset(n["target"].removeprefix("torch.ops.") for n in graph["nodes"]),
        weight_bytes=sum(weight_sizes.values()), total_bytes=total, dropped=tuple(dropped))

    records = {"models/model.json": json.dumps(program).encode(),
               "data/weights/model_weights_config.json": json.dumps(configs["weights"]).encode(),
               "data/constants/model_constants_config.json": json.dumps(configs["constants"]).encode(),
               "data/sample_inputs/model.pt": _sample_inputs(_read(archive, entries[required["sample"]]),
                                                             max_bytes, max_entries)}
    for rel in [f"data/weights/{p}" for p in weight_sizes] + [f"data/constants/{p}" for p in constant_sizes]:
        records[rel] = _read(archive, entries[rel])
    return manifest, records


def inspect_pt2(data: bytes, *, max_bytes: int | None = None, max_entries: int | None = None) -> Pt2Manifest:
    """Describe a ``.pt2`` archive, checked without unpickling or deserializing anything with torch (the sample inputs
    are loaded with ``torch.load(weights_only=True)``, which is safe). Raises ValueError, worded as advice, for what
    could run code or cannot be vouched for (module docstring), above ``max_bytes`` uncompressed, with more than
    ``max_entries`` entries, or with zip bombs (``toroid.worker.landscape.io.inspect_archive``)."""
    return _vouch(data, max_bytes, max_entries)[0]


def _verify(program: torch.export.ExportedProgram, manifest: Pt2Manifest) -> None:
    state = dict(program.state_dict)
    wanted = {t.name: t for t in (*manifest.parameters, *manifest.buffers)}
    if set(state) != set(wanted):
        raise ValueError(f"the loaded weights {sorted(set(state) ^ set(wanted))[:5]} differ from the manifest's")
    for key, tensor in state.items():
        if tuple(tensor.shape) != wanted[key].shape or _name(tensor.dtype) != wanted[key].dtype:
            raise ValueError(f"the loaded weight {key!r} has shape {tuple(tensor.shape)} ({tensor.dtype}), not the "
                             f"{wanted[key].shape} ({wanted[key].dtype}) its manifest declares")
    if not all(isinstance(v, torch.Tensor) for v in program.constants.values()):
        raise ValueError("the loaded program holds constants that are not tensors")
    check_storages({**state, **{f"constant {k}": v for k, v in program.constants.items()}})
    for gm in program.graph_module.modules():
        for node in getattr(gm, "graph", torch.fx.Graph()).nodes:
            target = node.target
            ok = node.op in ("placeholder", "output") or (node.op == "call_function" and (
                any(target is f for f in _PY_OPS.values()) or (isinstance(target, torch._ops.OpOverload)
                                                               and target.namespace in ("aten", "prims")
                                                               and str(target).split(".")[1] not in _DENIED_OPS)))
            if not ok:
                raise ValueError(f"the loaded graph has the node {node.name!r} ({node.op} {str(target)[:80]!r}), "
                                 f"which is refused: {ADVICE}")


def load_pt2(data: bytes, *, max_bytes: int | None = None, max_entries: int | None = None,
             with_manifest: bool = False) -> Any:
    """The program of a ``.pt2`` archive, loaded only after ``inspect_pt2`` vouched for it, from a fresh archive of
    the vouched entries, its weights then checked against the manifest (names, shapes, dtypes, no views into larger
    storages); ValueError for anything refused. ``with_manifest``: ``(manifest, program)``, one inspection."""
    from torch.export.pt2_archive import PT2ArchiveWriter

    manifest, records = _vouch(data, max_bytes, max_entries)
    with PT2ArchiveWriter(buffer := io.BytesIO()) as writer:
        for rel, payload in records.items():
            writer.write_bytes(rel, payload)
    buffer.seek(0)
    try:
        program = torch.export.load(buffer)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        text = "" if "weights_only" in text else "".join(c for c in text if c.isprintable())[:200]
        raise ValueError(f"torch could not rebuild the exported program ({type(exc).__name__}: {text}); it may come "
                         f"from another torch release (this server runs {torch.__version__}): {ADVICE}") from exc
    _verify(program, manifest)
    return (manifest, program) if with_manifest else program


def program_module(program: torch.export.ExportedProgram) -> torch.nn.Module:
    """The runnable module of a program (``program.module()`` without the generated guard function) on copies of its
    tensors (``module()`` shares them: loading weights would change the program). Its ``state_dict()`` keys are the
    program's parameter and buffer names, so weights saved as safetensors load back with ``load_state_dict(strict=
    True)``. Do not deepcopy the module: GraphModule's deepcopy makes tensor constants persistent buffers."""
    with warnings.catch_warnings(action="ignore", category=FutureWarning):  # torch's pytree deprecation notes
        program = copy.deepcopy(program)
    guards = "check_guards" in inspect.signature(program.module).parameters  # where module() may generate guards
    module = program.module(check_guards=False) if guards else program.module()
    if set(module.state_dict()) != set(program.state_dict):
        raise ValueError("the program's module does not expose its parameters and buffers under their names")
    return module


def save_pt2_bytes(program: torch.export.ExportedProgram) -> bytes:
    """The bytes ``torch.export.save`` writes for a program (for tests, and for the server to store a program)."""
    torch.export.save(program, buffer := io.BytesIO())
    return buffer.getvalue()
