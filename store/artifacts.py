"""The artifact store: content-addressed files (checkpoints, canonical forms) under ``settings.artifacts_dir``.

Layout: ``<artifacts_dir>/<sha256[:2]>/<sha256>`` where ``sha256`` is the hash of the file's bytes, so the same
content is stored once and a name can never collide with different content. Files are written atomically: the
bytes go to a temporary file in ``<artifacts_dir>/tmp`` on the same filesystem, are flushed to disk, and are
renamed into place with ``os.replace``; a reader sees either no file or the complete file, never a partial one.
Names supplied by users are never used to build paths: the only path component that varies is a validated
hexadecimal digest.

Checkpoints are safetensors files of a model's ``state_dict`` (the format of ``toroid.worker.landscape.nets``);
``toroid.store.loading`` reads uploads and builds models from stored checkpoints.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
from safetensors.torch import load as safetensors_load

__all__ = ["ArtifactStore", "get_store", "load_state_dict_bytes", "state_dict_bytes", "write_atomically"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ArtifactStore:
    """Content-addressed, atomically written files in one directory (see the module docstring)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def _check(self, sha256: str) -> str:
        if not isinstance(sha256, str) or not _SHA256.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return sha256

    def path(self, sha256: str) -> Path:
        """Where the artifact with this digest lives (whether or not it exists)."""
        sha256 = self._check(sha256)
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    @contextmanager
    def guard(self, *sha256s: str) -> Iterator[None]:
        """Hold the artifacts' locks (an exclusive ``flock`` each, across processes; 256 lock files, by the digest's
        first byte). Writers hold it from writing a file until the row that references it is committed, deleters
        from checking that no row references a file until it is removed: so a delete never removes a file that an
        upload of the same bytes is about to reference. Several digests take their lock files once each, in order:
        two digests of one first byte share a file, and a second ``flock`` on it from this process would wait
        forever for the first."""
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with ExitStack() as held:
            for prefix in sorted({self._check(sha)[:2] for sha in sha256s}):
                handle = held.enter_context(open(locks / f"{prefix}.lock", "a"))
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                held.callback(fcntl.flock, handle.fileno(), fcntl.LOCK_UN)
            yield

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` (idempotent) and return its sha256 hex digest."""
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(sha256)
        if target.is_file():
            return sha256
        write_atomically(target, data, self.root / "tmp")
        return sha256

    def get_bytes(self, sha256: str) -> bytes:
        """The stored bytes; ``FileNotFoundError`` names the digest when the artifact is missing."""
        target = self.path(sha256)
        try:
            return target.read_bytes()
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"artifact {sha256} is missing from the store at {self.root}") from exc

    def delete(self, sha256: str) -> bool:
        """Remove an artifact; returns whether a file was removed."""
        try:
            self.path(sha256).unlink()
            return True
        except FileNotFoundError:
            return False

    # -- checkpoints -------------------------------------------------------------------------------------------
    def put_state_dict(self, state: Mapping[str, torch.Tensor]) -> str:
        """Store a state_dict as safetensors; returns the digest of the file."""
        return self.put_bytes(state_dict_bytes(state))

    def get_state_dict(self, sha256: str) -> dict[str, torch.Tensor]:
        return load_state_dict_bytes(self.get_bytes(sha256))


def write_atomically(target: Path, data: bytes, tmp_dir: Path) -> None:
    """Write ``data`` to ``target`` so that a reader sees all of it or no file: a temporary file in ``tmp_dir`` (on
    the same filesystem), flushed to disk, renamed into place; a failure leaves neither file behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix=f"{target.name[:12]}-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)  # atomic on POSIX: readers see all bytes or no file
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def state_dict_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    """Serialize a state_dict to safetensors bytes (deterministic for equal tensors)."""
    from toroid.worker.landscape.io import state_dict_bytes as serialize

    return serialize(state)


def load_state_dict_bytes(data: bytes) -> dict[str, torch.Tensor]:
    return dict(safetensors_load(data))


def get_store() -> ArtifactStore:
    """The store of the current settings (``TOROID_ARTIFACTS_DIR``, default ``TOROID_HOME``/artifacts): hosts that
    mount one shared folder there share the artifacts (docs/operations.md, "Several hosts")."""
    from toroid.store.settings import get_settings

    return ArtifactStore(get_settings().artifacts_dir)
