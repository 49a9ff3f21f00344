"""Downloads of the paper's datasets, from fixed upstream addresses only, each file checked against its md5
(docs/data.md). Off unless asked: the option ``download=True``, :func:`set_allow_downloads` or the process setting
``TOROID_ALLOW_DOWNLOADS``.

A file arrives as ``<name>.<random>.part`` and is renamed once its md5 matches; a failed or refused download leaves
nothing behind, and files already there are not fetched again. :func:`download_progress` installs a callback
``(fraction, message)`` that hears how the bytes arrive.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

#: ``{dataset: [(url, md5 of the file, file name), ...]}``: the only addresses anything is downloaded from (the
#: mirror torchvision uses for MNIST, Zalando's bucket for Fashion-MNIST, the CIFAR authors' binary version).
DOWNLOADS: dict[str, list[tuple[str, str, str]]] = {
    "mnist": [
        ("https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
         "f68b3c2dcbeaaa9fbdd348bbdeb94873", "train-images-idx3-ubyte.gz"),
        ("https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
         "d53e105ee54ea40749a09fcbcd1e9432", "train-labels-idx1-ubyte.gz"),
        ("https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
         "9fb629c4189551a2d022fa330f9573f3", "t10k-images-idx3-ubyte.gz"),
        ("https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
         "ec29112dd5afa0611ce80d1b7f02629c", "t10k-labels-idx1-ubyte.gz"),
    ],
    "fashion_mnist": [
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz",
         "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "train-images-idx3-ubyte.gz"),
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-labels-idx1-ubyte.gz",
         "25c81989df183df01b3e8a0aad5dffbe", "train-labels-idx1-ubyte.gz"),
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-images-idx3-ubyte.gz",
         "bef4ecab320f06d8554ea6380940ec79", "t10k-images-idx3-ubyte.gz"),
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz",
         "bb300cfdad3c16e7a12a480ee83cd310", "t10k-labels-idx1-ubyte.gz"),
    ],
    "cifar10": [
        ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
         "c32a1d4ab5d03f1284b67883e8d87530", "cifar-10-binary.tar.gz"),
    ],
}

#: The largest file fetched (CIFAR-10's archive is 170 MB) and the most an archive may unpack to.
MAX_DOWNLOAD_BYTES = 512 * 2**20
MAX_EXTRACT_BYTES = 1024 * 2**20
CHUNK = 1 << 20
TIMEOUT_S = 60.0

Progress = Callable[[float, str], None]
_PROGRESS: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("toroid_download_progress", default=None)
_ALLOW: list[bool] = []


def set_allow_downloads(flag: bool | None) -> None:
    """Allow (or forbid) downloads in this process when a dataset's ``download`` option is ``None``; ``None``
    goes back to the environment (``TOROID_ALLOW_DOWNLOADS``)."""
    _ALLOW[:] = [] if flag is None else [bool(flag)]


def downloads_allowed(download: bool | None = None) -> bool:
    """Whether a missing dataset is downloaded: ``download`` when it is ``True``/``False``, else
    :func:`set_allow_downloads`'s flag, else ``TOROID_ALLOW_DOWNLOADS`` (1, true, yes, on), else no."""
    if download is not None:
        return bool(download)
    if _ALLOW:
        return _ALLOW[0]
    return os.environ.get("TOROID_ALLOW_DOWNLOADS", "").strip().lower() in ("1", "true", "yes", "on")


@contextlib.contextmanager
def download_progress(callback: Progress | None) -> Iterator[None]:
    """Within the block, downloads report to ``callback(fraction, message)`` (fraction of the dataset's files, 0
    to 1) while bytes arrive; an exception raised by the callback stops the download and leaves nothing behind."""
    token = _PROGRESS.set(callback)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def _report(fraction: float, message: str) -> None:
    callback = _PROGRESS.get()
    if callback is not None:
        callback(min(1.0, max(0.0, fraction)), message)


def _failed(name: str, url: str, reason: object, folder: Path) -> ValueError:
    files = ", ".join(f for _, _, f in DOWNLOADS.get(name, []))
    return ValueError(f"dataset {name!r} could not be downloaded from {url} ({reason}): put the files {files} "
                      f"in {folder}")


def _fetch(name: str, url: str, md5: str, target: Path, done: float, share: float) -> Path:
    """Download ``url`` beside ``target`` into a ``<target>.<random>.part`` file of this process (two workers
    fetching at once never share one), check its size and md5, and return it; nothing remains on failure."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"dataset {name!r}: download address {url!r} is not http(s)")
    digest = hashlib.md5(usedforsecurity=False)
    label = f"downloading {name}: {target.name}"
    part: Path | None = None
    try:
        handle, raw_part = tempfile.mkstemp(dir=target.parent, prefix=f"{target.name}.", suffix=".part")
        part = Path(raw_part)
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else 0
            if total > MAX_DOWNLOAD_BYTES:
                raise ValueError(f"dataset {name!r}: {url} announces {total:,} bytes, above the limit of "
                                 f"{MAX_DOWNLOAD_BYTES:,}")
            got = 0
            _report(done, f"{label} (starting)")
            while chunk := response.read(CHUNK):
                got += len(chunk)
                if got > MAX_DOWNLOAD_BYTES:
                    raise ValueError(f"dataset {name!r}: {url} sent more than {MAX_DOWNLOAD_BYTES:,} bytes")
                digest.update(chunk)
                out.write(chunk)
                fraction = done + share * (got / total if total else 0.0)
                of = f" of {total / 1e6:.1f}" if total else ""
                _report(fraction, f"{label} {got / 1e6:.1f}{of} MB")
        if digest.hexdigest() != md5:
            raise ValueError(f"dataset {name!r}: {target.name} from {url} has md5 {digest.hexdigest()}, expected "
                             f"{md5}; the file was discarded")
        return part
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        if part is not None:
            part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise _failed(name, url, reason, target.parent) from exc
    except BaseException:
        if part is not None:
            part.unlink(missing_ok=True)
        raise


def _extract(archive: Path, folder: Path, name: str, label: str) -> None:
    """Unpack a ``.tar.gz`` into ``folder``: regular files and folders only, every path relative and inside
    (no ``..``, links or devices), at most ``MAX_EXTRACT_BYTES`` in all; written under a ``.part`` folder of this
    process and moved into place once complete (a folder another process put there first is kept)."""
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=f"{label}.", suffix=".part"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            written, tops = 0, set()
            for member in tar:
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts or not path.parts or member.name.startswith("/"):
                    raise ValueError(f"dataset {name!r}: {label} holds the path {member.name!r}")
                if member.isdir():
                    continue
                if not member.isfile():
                    raise ValueError(f"dataset {name!r}: {label} holds {member.name!r}, not a regular file")
                written += member.size
                if written > MAX_EXTRACT_BYTES:
                    raise ValueError(f"dataset {name!r}: {label} unpacks to more than {MAX_EXTRACT_BYTES:,} bytes")
                dest = staging.joinpath(*path.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise ValueError(f"dataset {name!r}: {label} entry {member.name!r} cannot be read")
                with source, open(dest, "wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
                tops.add(path.parts[0])
        for top in sorted(tops):
            if not (folder / top).exists():
                os.replace(staging / top, folder / top)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"dataset {name!r}: {label} is not a readable .tar.gz archive ({exc})") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(name: str, folder: Path) -> Path:
    """Fetch the files of ``DOWNLOADS[name]`` into ``folder`` (created), verify their md5 and unpack archives;
    returns ``folder``. Raises ``ValueError`` naming the dataset, the address and the folder on any failure."""
    resources = DOWNLOADS.get(name)
    if not resources:
        raise ValueError(f"dataset {name!r} has no download address")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"dataset {name!r}: cannot create the folder {folder} ({exc})") from exc
    share = 1.0 / len(resources)
    for i, (url, md5, filename) in enumerate(resources):
        if PurePosixPath(filename).name != filename or filename in ("", ".", ".."):
            raise ValueError(f"dataset {name!r}: download file name {filename!r} is not a plain name")
        target = folder / filename
        if target.exists():  # fetched before (a download that failed later on), or put there by hand
            continue
        part = _fetch(name, url, md5, target, i * share, share)
        if filename.endswith((".tar.gz", ".tgz")):
            _report((i + 1) * share, f"unpacking {name}: {filename}")
            try:
                _extract(part, folder, name, filename)
            finally:
                part.unlink(missing_ok=True)
        else:
            os.replace(part, target)
    _report(1.0, f"downloaded {name}")
    return folder
