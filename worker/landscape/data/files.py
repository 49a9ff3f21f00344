"""Readers of dataset files that trust nothing they read (docs/data.md): IDX (MNIST's format, raw or gzip), CIFAR-10
batches (binary, or the python pickles through an unpickler that knows three numpy names only) and ``.npz``
archives (headers first, sizes summed and capped before any data is read, no pickles).

Every reader raises ``ValueError`` naming the file and what is wrong with it.
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

# --------------------------------------------------------------------------------------------------
# IDX

#: IDX type codes read (the third magic byte); MNIST-style files hold unsigned bytes only.
IDX_DTYPES = {0x08: np.dtype(np.uint8)}
IDX_MAX_DIMS = 4
#: How much of a file :func:`idx_shape` reads to find the header (gzip's own header comes first).
IDX_HEADER_PROBE = 1 << 20


class _Stream:
    """The bytes of an IDX file, gunzipped on the fly when they start with gzip's magic; never inflates more than
    it is asked for (a gzip bomb costs what its header declares, which is capped before the body is read)."""

    def __init__(self, raw: bytes, what: str):
        self.what = what
        self.gzip = raw[:2] == b"\x1f\x8b"
        self.raw = raw
        self.pos = 0
        self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if self.gzip else None

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the data)."""
        if self.inflate is None:
            chunk = self.raw[self.pos:self.pos + n]
            self.pos += len(chunk)
            return chunk
        parts, got = [], 0
        pending = self.raw
        try:
            while got < n and not self.inflate.eof:
                chunk = self.inflate.decompress(pending, n - got)
                left = self.inflate.unconsumed_tail
                if not chunk and len(left) == len(pending):
                    break  # the compressed input ran out
                pending = left
                parts.append(chunk)
                got += len(chunk)
        except zlib.error as exc:
            raise ValueError(f"{self.what}: not a valid gzip file ({exc})") from exc
        self.raw = pending
        return b"".join(parts)


def _idx_header(stream: _Stream, what: str) -> tuple[np.dtype, tuple[int, ...], int]:
    magic = stream.read(4)
    if len(magic) < 4:
        raise ValueError(f"{what}: the file is truncated (no IDX header)")
    if magic[:2] != b"\x00\x00":
        raise ValueError(f"{what}: not an IDX file (magic {magic.hex()}; IDX files start with 00 00, a type code "
                         "and the number of dimensions, e.g. 00 00 08 03 for MNIST images)")
    if magic[2] not in IDX_DTYPES:
        raise ValueError(f"{what}: IDX type code 0x{magic[2]:02x} is not supported (only 0x08, unsigned bytes)")
    ndim = magic[3]
    if not 1 <= ndim <= IDX_MAX_DIMS:
        raise ValueError(f"{what}: an IDX file with {ndim} dimensions (1 to {IDX_MAX_DIMS} are read)")
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError(f"{what}: the file is truncated (inside the IDX header)")
    shape = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
    return IDX_DTYPES[magic[2]], shape, 4 + 4 * ndim


def read_idx(raw: bytes, what: str, *, max_bytes: int) -> np.ndarray:
    """The array of an IDX file (raw or gzip), checked: magic, type code (unsigned bytes), dimensions, and a data
    size that is exactly what the header declares; refused when the header declares more than ``max_bytes``."""
    stream = _Stream(raw, what)
    dtype, shape, _ = _idx_header(stream, what)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_bytes:
        raise ValueError(f"{what}: the IDX header declares {shape} = {nbytes:,} bytes, above the limit of "
                         f"{max_bytes:,} bytes")
    body = stream.read(nbytes)
    if len(body) < nbytes:
        raise ValueError(f"{what}: the file is truncated ({len(body):,} of the {nbytes:,} data bytes its IDX header "
                         f"{shape} declares)")
    if stream.read(1):
        raise ValueError(f"{what}: the file holds more data than its IDX header {shape} declares")
    return np.frombuffer(bytearray(body), dtype=dtype).reshape(shape)


def idx_shape(path: Path) -> tuple[int, ...]:
    """The shape an IDX file (raw or gzip) declares, reading its header only."""
    with open(path, "rb") as fh:
        probe = fh.read(IDX_HEADER_PROBE)
    return _idx_header(_Stream(probe, str(path)), str(path))[1]


# --------------------------------------------------------------------------------------------------
# CIFAR-10

CIFAR_IMAGE = (3, 32, 32)
CIFAR_RECORD = 1 + 3 * 32 * 32


def read_cifar_binary(raw: bytes, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 3, 32, 32) uint8, labels (N,) int64)`` of a CIFAR-10 binary batch: records of one label byte
    and 3072 pixel bytes (red, green, blue planes of 32 x 32)."""
    if not raw or len(raw) % CIFAR_RECORD:
        raise ValueError(f"{what}: {len(raw):,} bytes is not a whole number of CIFAR-10 records of "
                         f"{CIFAR_RECORD} bytes (a label byte and 3072 pixel bytes)")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= 10:
        raise ValueError(f"{what}: label {int(labels.max())} is not a CIFAR-10 class (0 to 9)")
    return records[:, 1:].reshape(-1, *CIFAR_IMAGE).copy(), labels


_SIMPLE_DTYPES = frozenset({"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8", "b1"})
_REAL_RECONSTRUCT = np.zeros(0).__reduce__()[0]


class _NdarrayName:
    """Stands for ``numpy.ndarray`` inside a batch pickle: an argument of ``_reconstruct``, never called."""


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's pickle hook for an empty array, whose state (shape, dtype, bytes) the pickle sets next; an array of
    any other shape would be allocated here before its bytes exist, so only the empty one is made."""
    if subtype is not _NdarrayName or tuple(shape) != (0,):
        raise pickle.UnpicklingError("only numpy's own empty-array reconstruction is accepted")
    return _REAL_RECONSTRUCT(np.ndarray, (0,), b"b")


def _dtype(obj: Any, align: Any = False, copy: Any = False) -> np.dtype:
    name = obj.decode("ascii", "replace") if isinstance(obj, bytes) else obj
    if name not in _SIMPLE_DTYPES or not isinstance(align, bool | int) or not isinstance(copy, bool | int):
        raise pickle.UnpicklingError(f"dtype {name!r} is not accepted in a CIFAR batch")
    return np.dtype(name)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or order not in ("C", "F"):
        raise pickle.UnpicklingError("only plain numeric arrays are accepted")
    return np.frombuffer(bytes(buf), dtype=dtype).reshape(tuple(int(s) for s in shape), order=order).copy()


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is accepted for latin-1 byte strings only")
    return text.encode("latin1")


class _BatchUnpickler(pickle.Unpickler):
    """Resolves the few globals of a CIFAR-10 python batch (numpy's array reconstruction, dtypes, the latin-1
    byte strings of protocol 2) to guarded stand-ins, and refuses every other global: nothing else can run."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): _NdarrayName,
        ("numpy", "dtype"): _dtype,
        ("_codecs", "encode"): _latin1,
    }

    def find_class(self, module: str, name: str) -> Any:
        found = self.ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is refused")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are refused")


def _key(batch: dict, name: str) -> Any:
    for key in (name, name.encode()):
        if key in batch:
            return batch[key]
    raise ValueError(f"lacks the entry {name!r}")


def read_cifar_python(raw: bytes, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 3, 32, 32) uint8, labels (N,) int64)`` of a CIFAR-10 python batch (a pickled dict with
    ``data``, N x 3072 bytes, and ``labels``), unpickled by :class:`_BatchUnpickler`."""
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError, KeyError,
            OverflowError, MemoryError, RecursionError, UnicodeError) as exc:
        raise ValueError(f"{what}: not a CIFAR-10 python batch this reader accepts ({exc}); use the binary "
                         "version (cifar-10-batches-bin) instead") from exc
    try:
        if not isinstance(batch, dict):
            raise ValueError(f"holds a {type(batch).__name__}, not a dict")
        data, labels = _key(batch, "data"), _key(batch, "labels")
        data = np.asarray(data) if isinstance(data, np.ndarray) else np.frombuffer(bytes(data), np.uint8)
        if data.dtype != np.uint8 or data.size % (3 * 32 * 32) or data.size == 0:
            raise ValueError(f"its data is {data.dtype} of shape {data.shape}, not N x 3072 bytes")
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu" or labels.ndim != 1:
            raise ValueError(f"its labels are {labels.dtype} of shape {labels.shape}, not a list of integers")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what}: not a CIFAR-10 python batch: {exc}") from exc
    images = data.reshape(-1, *CIFAR_IMAGE)
    if len(labels) != len(images) or labels.min() < 0 or labels.max() >= 10:
        raise ValueError(f"{what}: {len(images)} images but {len(labels)} labels, or labels outside 0 to 9")
    return np.ascontiguousarray(images), labels.astype(np.int64)


# --------------------------------------------------------------------------------------------------
# .npz


def _open_zip(source: bytes | Path, what: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes | bytearray) else source)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{what} is not a readable .npz file ({exc})") from exc


def _member_key(info: zipfile.ZipInfo) -> str:
    return info.filename[:-4] if info.filename.endswith(".npy") else info.filename


def _read_header(fh: BinaryIO, what: str, key: str) -> tuple[np.dtype, tuple[int, ...], bool]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise ValueError(f"array {key!r} uses .npy format version {version}; save it with numpy's np.savez")
    if dtype.hasobject:
        raise ValueError(f"{what}: array {key!r} holds Python objects (dtype {dtype}); pickles are refused: store "
                         "numbers (and class names as a unicode string array)")
    return dtype, tuple(int(s) for s in shape), bool(fortran)


def npz_headers(source: bytes | Path, what: str) -> dict[str, tuple[np.dtype, tuple[int, ...], bool]]:
    """``{key: (dtype, shape, fortran_order)}`` of every array of an ``.npz`` archive, read from the ``.npy``
    headers only (a few hundred bytes of each member are inflated)."""
    out: dict[str, tuple[np.dtype, tuple[int, ...], bool]] = {}
    with _open_zip(source, what) as zf:
        try:
            for info in zf.infolist():
                key = _member_key(info)
                if key in out:
                    raise ValueError(f"{what}: array {key!r} appears twice in the archive")
                with zf.open(info) as fh:
                    out[key] = _read_header(fh, what, key)
        except ValueError as exc:
            if str(exc).startswith(what):
                raise
            raise ValueError(f"{what} is not a readable .npz file ({exc})") from exc
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as exc:
            raise ValueError(f"{what} is not a readable .npz file ({exc})") from exc
    return out


def npz_nbytes(headers: dict[str, tuple[np.dtype, tuple[int, ...], bool]]) -> int:
    """The bytes the arrays of :func:`npz_headers` declare (shape x itemsize, summed)."""
    return sum(math.prod(shape) * dtype.itemsize for dtype, shape, _ in headers.values())


def _read_exactly(fh: BinaryIO, nbytes: int) -> bytearray:
    buf = bytearray(nbytes)
    view, got = memoryview(buf), 0
    while got < nbytes:
        n = fh.readinto(view[got:])
        if not n:
            break
        got += n
    if got < nbytes:
        raise ValueError(f"the array data is truncated ({got:,} of {nbytes:,} bytes)")
    return buf


def read_npz(source: bytes | Path, what: str, *, max_bytes: int, keys: set[str] | None = None) -> dict[str, Any]:
    """The arrays of an ``.npz`` archive, never pickles: the headers are read first and the bytes they declare
    summed, refused above ``max_bytes`` before any data is inflated; each member then yields exactly the bytes its
    header declares (one more is an error), so a zip bomb inflates no more than the cap. ``keys``: read only
    these arrays (the others are not inflated)."""
    headers = npz_headers(source, what)
    if keys is not None:
        headers = {k: v for k, v in headers.items() if k in keys}
    total = npz_nbytes(headers)
    if total > max_bytes:
        sizes = ", ".join(f"{k} {shape} {dtype}" for k, (dtype, shape, _) in headers.items())
        raise ValueError(f"{what}: its arrays ({sizes}) declare {total:,} bytes, above the limit of "
                         f"{max_bytes:,} bytes")
    arrays: dict[str, Any] = {}
    with _open_zip(source, what) as zf:
        try:
            for info in zf.infolist():
                key = _member_key(info)
                if key not in headers:
                    continue
                dtype, shape, fortran = headers[key]
                with zf.open(info) as fh:
                    _read_header(fh, what, key)
                    buf = _read_exactly(fh, math.prod(shape) * dtype.itemsize)
                    if fh.read(1):
                        raise ValueError(f"array {key!r} holds more data than its header {shape} declares")
                flat = np.frombuffer(buf, dtype=dtype)
                array = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
                arrays[key] = np.ascontiguousarray(array)
        except ValueError as exc:
            if str(exc).startswith(what):
                raise
            raise ValueError(f"{what}: {exc}") from exc
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as exc:
            raise ValueError(f"{what} is not a readable .npz file ({exc})") from exc
    return arrays


def write_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """An uncompressed ``.npz`` archive of ``arrays`` in the given order whose bytes depend on the arrays only
    (fixed member dates), readable by ``np.load(..., allow_pickle=False)``."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(array), allow_pickle=False)
    return out.getvalue()
