"""Hostile dataset uploads (POST /api/datasets) and deletes on a real stack (Redis + API, a token, two users): every
refusal answers 4xx with a message that says what is wrong, and stores nothing (no row, no file under the data
root's uploads/). A pickle inside an .npz never runs; names never become paths; only the owner or an admin deletes,
and never while a minimum uses the dataset."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration.conftest import MINIMUM_CONFIG, ApiStack
from tests.security.stacks import api_only
from toroid.worker.landscape.io import state_dict_bytes

pytestmark = pytest.mark.integration

ADMIN = "admin-token-for-dataset-tests-0123"
LIMIT_MB = 1


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> ApiStack:
    for started in api_only(tmp_path_factory, "datasets", {"TOROID_API_TOKEN": ADMIN,
                                                            "TOROID_MAX_DATASET_MB": str(LIMIT_MB)}):
        started.tokens = {name: add_user(started, name) for name in ("alice", "bob")}
        yield started


def add_user(stack: ApiStack, name: str) -> str:
    done = subprocess.run([sys.executable, "-m", "toroid.cli", "users", "add", name], env=stack.env,
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def arrays(n_train: int = 60, n_test: int = 20, classes: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x_train": rng.normal(size=(n_train, 6)).astype(np.float32),
            "y_train": np.arange(n_train) % classes,
            "x_test": rng.normal(size=(n_test, 6)).astype(np.float32),
            "y_test": np.arange(n_test) % classes}


def good(seed: int = 0) -> bytes:
    return npz(**arrays(seed=seed))


def post(stack: ApiStack, name: str | None, data: bytes, *, user: str = "alice", filename: str = "data.npz",
         **kwargs) -> httpx.Response:
    fields = {} if name is None else {"name": name}
    return httpx.post(f"{stack.url}/api/datasets", data=fields, files={"file": (filename, data)},
                      headers=bearer(stack.tokens[user]), timeout=60, **kwargs)


def uploads(stack: ApiStack) -> set[str]:
    folder = stack.home / "datasets" / "uploads"
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def stored(stack: ApiStack) -> tuple[int, set[str]]:
    return stack.count("SELECT COUNT(*) FROM datasets"), uploads(stack)


def refused(response: httpx.Response, status: int, *phrases: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail, response.text
    for phrase in phrases:
        assert phrase in detail, detail
    assert str(Path.home()) not in detail and "/tmp/" not in detail, detail  # no server paths
    return detail


# --- authentication -------------------------------------------------------------------------------------------


def test_anonymous_and_wrong_tokens_are_401_and_store_nothing(stack):
    before = stored(stack)
    anonymous = httpx.post(f"{stack.url}/api/datasets", data={"name": "anon"}, files={"file": ("d.npz", good())})
    refused(anonymous, 401, "needs an API token")
    wrong = httpx.post(f"{stack.url}/api/datasets", data={"name": "anon"}, files={"file": ("d.npz", good())},
                       headers=bearer("not-a-token"))
    refused(wrong, 401, "wrong")
    refused(httpx.delete(f"{stack.url}/api/datasets/anon"), 401, "needs an API token")
    assert stored(stack) == before


# --- sizes ------------------------------------------------------------------------------------------------------


def test_an_upload_above_the_limit_is_413_while_it_streams(stack):
    before = stored(stack)
    refused(post(stack, "big", os.urandom(2 * 2**20)), 413, f"exceeds the limit of {LIMIT_MB} MiB",
            "TOROID_MAX_DATASET_MB")
    boundary = "toroidboundary"

    def body():  # no Content-Length: counted as it arrives
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbig\r\n--{boundary}\r\n"
               "Content-Disposition: form-data; name=\"file\"; filename=\"big.npz\"\r\n"
               "Content-Type: application/octet-stream\r\n\r\n").encode()
        for _ in range(64):  # 4 MiB
            yield b"\0" * 2**16
        yield f"\r\n--{boundary}--\r\n".encode()

    streamed = httpx.post(f"{stack.url}/api/datasets", content=body(), timeout=60,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                   **bearer(stack.tokens["alice"])})
    refused(streamed, 413, "TOROID_MAX_DATASET_MB")
    assert stored(stack) == before


def test_archives_that_inflate_past_the_limit_are_refused_before_inflating(stack):
    """A deflated run of zeros (an .npz of 64 MiB in a few hundred KiB; a gzipped IDX file likewise)."""
    before = stored(stack)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x_train=np.zeros((2**14, 1024), np.float32), y_train=np.zeros(2**14, np.int64),
                        x_test=np.zeros((10, 1024), np.float32), y_test=np.zeros(10, np.int64))
    assert len(buffer.getvalue()) < 2**20
    refused(post(stack, "bomb", buffer.getvalue()), 422, "declare 67,280,976 bytes", "TOROID_MAX_DATASET_MB")
    images = gzip.compress(struct.pack(">IIII", 0x803, 2**16, 32, 32) + bytes(2**16 * 1024), 9)
    assert len(images) < 2**20
    labels = gzip.compress(struct.pack(">II", 0x801, 2**16) + bytes(2**16))
    small_x = gzip.compress(struct.pack(">IIII", 0x803, 10, 32, 32) + bytes(10 * 1024))
    small_y = gzip.compress(struct.pack(">II", 0x801, 10) + bytes(10))
    files = [("files", ("train-images-idx3-ubyte.gz", images)), ("files", ("train-labels-idx1-ubyte.gz", labels)),
             ("files", ("t10k-images-idx3-ubyte.gz", small_x)), ("files", ("t10k-labels-idx1-ubyte.gz", small_y))]
    response = httpx.post(f"{stack.url}/api/datasets", data={"name": "gzbomb"}, files=files, timeout=60,
                          headers=bearer(stack.tokens["alice"]))
    refused(response, 422, "TOROID_MAX_DATASET_MB")
    assert stored(stack) == before


# --- malformed content ------------------------------------------------------------------------------------------


def bad_contents() -> list[tuple[str, bytes, str]]:
    ok = arrays()
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("readme.txt", "not arrays")
    return [
        ("random bytes", os.urandom(5000), ""),
        ("a zip of no arrays", inner.getvalue(), ""),
        ("missing arrays", npz(x_train=ok["x_train"], y_train=ok["y_train"]), "x_test"),
        ("mismatched lengths", npz(**{**ok, "y_train": ok["y_train"][:-5]}), "60 samples but y_train has 55"),
        ("negative label", npz(**{**ok, "y_train": ok["y_train"] - 1}), "labels must be in [0"),
        ("float labels", npz(**{**ok, "y_test": ok["y_test"] + 0.5}), "integer class labels"),
        ("NaN", npz(**{**ok, "x_train": np.where(np.arange(6) == 2, np.nan, ok["x_train"]).astype(np.float32)}),
         "NaN"),
        ("infinity", npz(**{**ok, "x_test": np.full((20, 6), np.inf, np.float32)}), "infinite"),
        ("other sample shapes", npz(**{**ok, "x_test": np.zeros((20, 7), np.float32)}), "sample shape"),
        ("an empty split", npz(**{**ok, "x_test": np.zeros((0, 6), np.float32), "y_test": np.zeros(0, np.int64)}),
         "empty"),
        ("strings as inputs", npz(**{**ok, "x_train": np.array([["a"] * 6] * 60)}), "real numbers"),
        ("unknown arrays", npz(**ok, extra=np.zeros(3)), "extra"),
    ]


@pytest.mark.parametrize("case", [c[0] for c in bad_contents()])
def test_malformed_datasets_are_422_and_store_nothing(stack, case):
    _case, data, phrase = next(c for c in bad_contents() if c[0] == case)
    before = stored(stack)
    refused(post(stack, "bad", data), 422, phrase)
    assert stored(stack) == before


class Payload:
    """Unpickling this creates the file ``marker`` (as any code would run): proof that no pickle is loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("where", ["x_train", "y_train", "class_names"])
def test_a_pickle_inside_the_npz_never_runs(stack, tmp_path, where):
    marker = tmp_path / f"pwned-{where}"
    ok = arrays()
    evil = np.empty(len(ok[where]) if where in ok else 3, dtype=object)
    evil[:] = [Payload(marker)] * len(evil)
    with pytest.raises(FileNotFoundError):  # the payload does what it claims when unpickled: it must open a file
        pickle.loads(pickle.dumps(Payload(tmp_path / "no" / "such" / "dir")))
    buffer = io.BytesIO()
    np.savez(buffer, **{**ok, where: evil})  # object arrays are stored as pickles
    before = stored(stack)
    detail = refused(post(stack, "pickled", buffer.getvalue()), 422)
    assert "pickle" in detail.lower() or "object" in detail.lower(), detail
    assert not marker.exists(), "the pickle's code ran"
    assert stored(stack) == before


# --- names ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "phrase"), [
    ("../../etc/passwd", "not allowed"), ("a/b", "not allowed"), ("..", "not allowed"), (".hidden", "not allowed"),
    ("back\\slash", "not allowed"), ("nul\x00byte", "not allowed"), ("spa ce", "not allowed"),
    ("naïve", "not allowed"), ("evil\u202etxt", "not allowed"), ("x" * 65, "not allowed"),
    ("digits", "built-in dataset kind"), ("MNIST", "built-in dataset kind"), ("upload", "built-in dataset kind"),
    ("npz", "built-in dataset kind"), ("a" * 64, "looks like a dataset id"), ("", "give the dataset a name"),
    (None, "give the dataset a name"),
])
def test_bad_names_are_422_and_store_nothing(stack, name, phrase):
    before = stored(stack)
    refused(post(stack, name, good()), 422, phrase)
    assert stored(stack) == before


def test_file_parts_other_than_file_or_files_are_422(stack):
    before = stored(stack)
    headers = bearer(stack.tokens["alice"])
    response = httpx.post(f"{stack.url}/api/datasets", data={"name": "x"}, headers=headers, timeout=60,
                          files={"other": ("d.npz", good())})
    refused(response, 422, "unexpected file field(s) ['other']")
    refused(httpx.post(f"{stack.url}/api/datasets", data={"name": "x"}, headers=headers, timeout=60,
                       files={"dummy": ("", b"")}), 422)
    five = [("files", (f"f{i}.npz", good(i))) for i in range(5)]
    refused(httpx.post(f"{stack.url}/api/datasets", data={"name": "x"}, files=five, headers=headers, timeout=60),
            422, "got 5 files")
    same = [("files", ("train-images-idx3-ubyte", b"1")), ("files", ("a/train-images-idx3-ubyte", b"2"))] * 2
    refused(httpx.post(f"{stack.url}/api/datasets", data={"name": "x"}, files=same, headers=headers, timeout=60),
            422, "named")
    refused(httpx.post(f"{stack.url}/api/datasets", json={"name": "x"}, headers=headers), 415, "multipart/form-data")
    refused(post(stack, "x" * (2**20 + 10), good()), 413, "exceeds the limit of 1 MiB for a form field")
    assert stored(stack) == before


def test_a_name_held_by_other_content_is_409_and_the_same_content_is_200(stack):
    first = post(stack, "taken", good(1))
    assert first.status_code == 201, first.text
    before = stored(stack)
    refused(post(stack, "taken", good(2), user="bob"), 409, "belongs to another dataset", "choose another name")
    assert stored(stack) == before
    again = post(stack, "other-name", good(1), user="bob")  # the same content: the existing record, unchanged
    assert again.status_code == 200 and again.json() == first.json()
    assert stored(stack) == before


def test_concurrent_identical_uploads_store_one_dataset(stack):
    before_rows, before_files = stored(stack)
    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(post(stack, "twins", good(7)))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    rows, files = stored(stack)
    assert rows == before_rows + 1 and files - before_files == {f"{answers[0].json()['id']}.npz"}


# --- requests that name datasets -------------------------------------------------------------------------------


def test_requests_naming_unknown_uploads_or_downloads_are_422(stack):
    headers = bearer(stack.tokens["alice"])
    jobs = stack.count("SELECT COUNT(*) FROM jobs")
    for body, phrase in [
        ({"dataset": "upload", "dataset_options": {"sha256": "f" * 64}}, "no uploaded dataset has the id"),
        ({"dataset": "upload", "dataset_options": {"sha256": "../../x"}}, "64 lowercase hex digits"),
        ({"dataset": "upload"}, "needs the option sha256"),
        ({"dataset": "no-such-data"}, "unknown dataset"),
        ({"dataset": "mnist", "dataset_options": {"download": True}}, "does not download"),
    ]:
        response = httpx.post(f"{stack.url}/api/minima/train", json={**body, "epochs": 1}, headers=headers)
        refused(response, 422, phrase)
    assert stack.count("SELECT COUNT(*) FROM jobs") == jobs
    refused(httpx.get(f"{stack.url}/api/datasets/no-such-data"), 404, "GET /api/datasets")


# --- deletes ----------------------------------------------------------------------------------------------------


def upload_minimum(stack: ApiStack, dataset: str, user: str = "alice") -> str:
    from toroid.worker.landscape.nets import build_model

    model = build_model("mlp", MINIMUM_CONFIG, ((6,), 3), seed=0)
    response = httpx.post(f"{stack.url}/api/minima", headers=bearer(stack.tokens[user]), timeout=60,
                          files={"file": ("m.safetensors", state_dict_bytes(model))},
                          data={"architecture": "mlp", "config": json.dumps(MINIMUM_CONFIG), "dataset": dataset})
    assert response.status_code == 201, response.text
    assert response.json()["dataset"] == "upload"
    return response.json()["id"]


def test_only_the_owner_or_an_admin_deletes_and_never_while_in_use(stack):
    created = post(stack, "alices", good(11))
    assert created.status_code == 201, created.text
    sha = created.json()["id"]
    assert created.json()["owner"] == "alice"

    refused(httpx.delete(f"{stack.url}/api/datasets/alices", headers=bearer(stack.tokens["bob"])), 403,
            "belongs to 'alice'")
    minimum = upload_minimum(stack, "alices", user="bob")  # anyone may use it
    detail = refused(httpx.delete(f"{stack.url}/api/datasets/{sha}", headers=bearer(stack.tokens["alice"])), 409,
                     "used by 1 minimum", minimum, "DELETE /api/minima/")
    assert "alices" in detail
    assert f"{sha}.npz" in uploads(stack) and httpx.get(f"{stack.url}/api/datasets/alices").status_code == 200

    deleted = httpx.delete(f"{stack.url}/api/minima/{minimum}", headers=bearer(stack.tokens["bob"]))
    assert deleted.status_code == 204, deleted.text
    refused(httpx.delete(f"{stack.url}/api/datasets/alices", headers=bearer(stack.tokens["bob"])), 403)
    assert httpx.delete(f"{stack.url}/api/datasets/alices", headers=bearer(stack.tokens["alice"])).status_code == 204
    assert f"{sha}.npz" not in uploads(stack)
    assert httpx.get(f"{stack.url}/api/datasets/{sha}").status_code == 404
    refused(httpx.delete(f"{stack.url}/api/datasets/alices", headers=bearer(stack.tokens["alice"])), 404)

    bobs = post(stack, "bobs", good(12), user="bob")
    assert bobs.status_code == 201
    assert httpx.delete(f"{stack.url}/api/datasets/bobs", headers=bearer(ADMIN)).status_code == 204  # an admin may
    assert f"{bobs.json()['id']}.npz" not in uploads(stack)
