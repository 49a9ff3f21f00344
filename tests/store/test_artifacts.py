"""The artifact store's per-digest locks (store/artifacts.py, ``ArtifactStore.guard``), with real files and a real
second process: a held lock keeps another process out until it is released, and two digests of one first byte (one
lock file) are taken once, where a second ``flock`` from the same process on its own descriptor would wait forever
(an upload of a checkpoint and its exported program could hang that way)."""

from __future__ import annotations

import subprocess
import sys
import threading

from toroid.store.artifacts import ArtifactStore

TRY_LOCK = """
import fcntl, sys
with open(sys.argv[1], "a") as handle:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("busy")
    else:
        print("free")
"""


def _other_process_sees(lock_file) -> str:
    done = subprocess.run([sys.executable, "-c", TRY_LOCK, str(lock_file)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_digests_sharing_a_lock_file_are_locked_once_and_keep_other_processes_out(tmp_path):
    store = ArtifactStore(tmp_path)
    first, second, other = "ab" + "0" * 62, "ab" + "1" * 62, "cd" + "2" * 62
    entered = threading.Event()

    def hold() -> None:
        with store.guard(second, first, other):
            entered.set()
            release.wait(30)

    release = threading.Event()
    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert entered.wait(10), "guard() of two digests with one lock file never returned (a self-deadlock)"
    assert _other_process_sees(tmp_path / "locks" / "ab.lock") == "busy"
    assert _other_process_sees(tmp_path / "locks" / "cd.lock") == "busy"
    release.set()
    holder.join(10)
    assert not holder.is_alive()
    assert _other_process_sees(tmp_path / "locks" / "ab.lock") == "free"
    assert _other_process_sees(tmp_path / "locks" / "cd.lock") == "free"


def test_a_bad_digest_takes_no_lock(tmp_path):
    store = ArtifactStore(tmp_path)
    try:
        with store.guard("ab" + "0" * 62, "../../etc/passwd"):
            raise AssertionError("a malformed digest must be refused before any lock is taken")
    except ValueError as exc:
        assert "not a sha256" in str(exc)
    assert _other_process_sees(tmp_path / "locks" / "ab.lock") == "free"
