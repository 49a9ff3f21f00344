"""Bring your own data, end to end on a real stack (Redis, a Celery worker, uvicorn): a dataset made here (four
digit classes of scikit-learn's digits, as an .npz; all ten as the four gzipped IDX files) is uploaded through the
API and then used like a built-in one, by its name: two minima trained on it, a path between them, a checkpoint
uploaded for it; and `toroid dataset add | list | rm` from a terminal."""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import ROOT
from tests.integration.conftest import MINIMUM_CONFIG, wait_job

pytestmark = pytest.mark.integration

CLASSES = ("zero", "one", "two", "three")


def digits_split(classes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A stratified 75/25 split of scikit-learn's digits of the first ``classes`` classes; images (n, 8, 8), pixel
    values 0-16, labels int64."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = digits.target < classes
    x, y = digits.images[keep], digits.target[keep].astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), bool)
    for c in range(classes):
        members = rng.permutation(np.flatnonzero(y == c))
        test[members[: len(members) // 4]] = True
    return {"x_train": x[~test], "y_train": y[~test], "x_test": x[test], "y_test": y[test]}


@pytest.fixture(scope="module")
def four() -> dict[str, np.ndarray]:
    return digits_split(len(CLASSES))


@pytest.fixture(scope="module")
def four_npz(four) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x_train=four["x_train"][:, None].astype(np.float32), y_train=four["y_train"],
             x_test=four["x_test"][:, None].astype(np.float32), y_test=four["y_test"],
             class_names=np.array(CLASSES))
    return buffer.getvalue()


def idx(array: np.ndarray) -> bytes:
    """IDX bytes of an unsigned-byte array (magic 0x08 = ubyte, then the number of dimensions and each size)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def idx_quartet(folder: Path) -> list[Path]:
    split = digits_split(10, seed=1)
    images = {k: np.clip(split[k] * 16, 0, 255).astype(np.uint8) for k in ("x_train", "x_test")}
    files = {"train-images-idx3-ubyte.gz": images["x_train"], "train-labels-idx1-ubyte.gz": split["y_train"],
             "t10k-images-idx3-ubyte.gz": images["x_test"], "t10k-labels-idx1-ubyte.gz": split["y_test"]}
    paths = []
    for name, array in files.items():
        (folder / name).write_bytes(gzip.compress(idx(array)))
        paths.append(folder / name)
    return paths


def upload_dataset(url: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{url}/api/datasets", data={"name": name}, files={"file": (f"{name}.npz", data)}, timeout=60)


@pytest.fixture(scope="module")
def dataset(api_stack, four_npz) -> dict:
    response = upload_dataset(api_stack.url, "digits4", four_npz)
    assert response.status_code == 201, response.text
    return response.json()


def test_an_uploaded_dataset_is_listed_with_its_shapes_and_classes(api_stack, dataset, four, four_npz):
    url = api_stack.url
    assert (dataset["name"], dataset["kind"], dataset["dataset"]) == ("digits4", "upload", "upload")
    assert dataset["dataset_options"] == {"sha256": dataset["id"]} and len(dataset["id"]) == 64
    assert (dataset["train"], dataset["test"]) == (len(four["y_train"]), len(four["y_test"]))
    assert (dataset["input_shape"], dataset["num_classes"], dataset["class_names"]) == ([1, 8, 8], 4, list(CLASSES))
    assert dataset["class_counts"] == {"train": np.bincount(four["y_train"]).tolist(),
                                       "test": np.bincount(four["y_test"]).tolist()}
    assert (api_stack.home / "datasets" / "uploads" / f"{dataset['id']}.npz").is_file()

    listed = {d["name"]: d for d in httpx.get(f"{url}/api/datasets").json()}
    assert listed["digits4"] == dataset
    assert listed["digits"]["available"] and listed["digits"]["kind"] == "digits"  # the built-ins stay
    assert "upload" not in listed
    assert httpx.get(f"{url}/api/datasets/digits4").json() == dataset
    assert httpx.get(f"{url}/api/datasets/{dataset['id']}").json() == dataset
    again = upload_dataset(url, "digits4", four_npz)  # the same content: 200, one dataset
    assert again.status_code == 200 and again.json() == dataset
    assert api_stack.count("SELECT COUNT(*) FROM datasets") >= 1


@pytest.fixture(scope="module")
def trained(api_stack, dataset) -> list[dict]:
    """Two minima trained on the uploaded dataset through the API, by its name."""
    url = api_stack.url
    jobs = []
    for seed in (0, 1):
        response = httpx.post(f"{url}/api/minima/train", json={
            "architecture": "mlp", "config": MINIMUM_CONFIG, "dataset": "digits4", "sampler": "sgd", "seed": seed,
            "epochs": 20, "name": f"digits4-sgd-{seed}"})
        assert response.status_code == 202, response.text
        params = response.json()["params"]  # stored as the registry's kind, never by the name
        assert params["dataset"] == "upload" and params["dataset_options"]["sha256"] == dataset["id"]
        jobs.append(response.json())
    minima = []
    for job in jobs:
        done = wait_job(url, job["id"], timeout_s=300)
        assert done["state"] == "succeeded", done
        minima.append(httpx.get(f"{url}/api/minima/{done['minimum_id']}").json())
    return minima


def test_minima_train_on_the_uploaded_dataset(trained, dataset):
    for minimum in trained:
        assert minimum["dataset"] == "upload" and minimum["dataset_options"]["sha256"] == dataset["id"]
        assert minimum["evaluation"] == "done"
        assert minimum["train_error"] < 0.05 and minimum["test_error"] < 0.15, minimum  # four digits: easy
    assert trained[0]["family"] == trained[1]["family"]


def test_a_path_between_minima_of_the_uploaded_dataset(api_stack, trained):
    a, b = trained
    response = httpx.post(f"{api_stack.url}/api/analyses/path",
                          json={"a": a["id"], "b": b["id"], "kind": "linear", "points": 5})
    assert response.status_code in (200, 202), response.text
    job = wait_job(api_stack.url, response.json()["job"]["id"], timeout_s=300)
    assert job["state"] == "succeeded", job
    data = httpx.get(f"{api_stack.url}/api/results/{job['result_id']}").json()["data"]
    assert data["x"][0] == 0.0 and data["x"][-1] == 1.0 and len(data["x"]) == 5
    assert data["train_error"][0] == pytest.approx(a["train_error"], abs=1e-9)  # the ends are the minima
    assert data["train_error"][-1] == pytest.approx(b["train_error"], abs=1e-9)
    assert data["test_error"][0] == pytest.approx(a["test_error"], abs=1e-9)
    for values in (data["train_error"], data["test_error"]):
        assert all(0.0 <= v <= 1.0 for v in values), values
    assert 0.0 <= data["barrier"] <= 1.0 and data["length"] > 0


def test_a_checkpoint_uploaded_for_the_dataset_evaluates(api_stack, trained, dataset):
    url, a = api_stack.url, trained[0]
    weights = httpx.get(f"{url}/api/minima/{a['id']}/checkpoint").content
    response = httpx.post(f"{url}/api/minima", files={"file": ("mine.safetensors", weights)}, timeout=60,
                          data={"architecture": "mlp", "config": json.dumps(MINIMUM_CONFIG), "dataset": "digits4",
                                "name": "uploaded for digits4"})
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["dataset"] == "upload" and record["dataset_options"] == a["dataset_options"]
    assert record["family"] == a["family"]  # the name resolves to exactly the options a training stores
    assert wait_job(url, record["evaluation_job_id"])["state"] == "succeeded"
    evaluated = httpx.get(f"{url}/api/minima/{record['id']}").json()
    assert (evaluated["train_error"], evaluated["test_error"]) == (a["train_error"], a["test_error"])


def test_a_study_names_the_uploaded_dataset(api_stack, dataset):
    """A study spec names the dataset like a request does; its minimum is stored with the canonical options."""
    spec = {"name": "digits4 study", "dataset": "digits4", "config": {"widths": [16]}, "samplers": ["sgd"],
            "seeds": [5], "epochs": 3, "flatness": {"enabled": False}, "distances": False,
            "paths": {"kinds": []}, "one_bend": {"enabled": False}}
    response = httpx.post(f"{api_stack.url}/api/studies", json=spec)
    assert response.status_code == 202, response.text
    job = wait_job(api_stack.url, response.json()["job_id"], timeout_s=300)
    assert job["state"] == "succeeded", job
    study = httpx.get(f"{api_stack.url}/api/studies/{response.json()['id']}").json()
    (minimum_id,) = study["minimum_ids"]
    minimum = httpx.get(f"{api_stack.url}/api/minima/{minimum_id}").json()
    assert minimum["dataset"] == "upload" and minimum["dataset_options"]["sha256"] == dataset["id"]


def test_a_dataset_in_use_is_not_deleted(api_stack, trained, dataset):
    response = httpx.delete(f"{api_stack.url}/api/datasets/digits4")
    assert response.status_code == 409, response.text
    assert "used by 4 minima" in response.json()["detail"] and trained[0]["id"] in response.json()["detail"]
    assert httpx.get(f"{api_stack.url}/api/datasets/digits4").status_code == 200


def test_the_idx_quartet_uploads_with_its_shapes_and_class_counts(api_stack, tmp_path):
    url = api_stack.url
    paths = idx_quartet(tmp_path)
    files = [("files", (p.name, p.read_bytes())) for p in paths]
    response = httpx.post(f"{url}/api/datasets", data={"name": "digits-idx"}, files=files, timeout=60)
    assert response.status_code == 201, response.text
    split = digits_split(10, seed=1)
    listed = {d["name"]: d for d in httpx.get(f"{url}/api/datasets").json()}["digits-idx"]
    assert (listed["train"], listed["test"]) == (len(split["y_train"]), len(split["y_test"]))
    assert (listed["input_shape"], listed["num_classes"], listed["class_names"]) == ([1, 8, 8], 10, None)
    assert listed["class_counts"] == {"train": np.bincount(split["y_train"]).tolist(),
                                      "test": np.bincount(split["y_test"]).tolist()}
    assert listed["file_name"] == ", ".join(p.name for p in paths)
    assert listed["file_size"] == sum(p.stat().st_size for p in paths)
    layout = httpx.get(f"{url}/api/architectures/mlp/layout", params={"dataset": "digits-idx"})
    assert layout.status_code == 200 and layout.json()["input_shape"] == [1, 8, 8], layout.text
    assert httpx.delete(f"{url}/api/datasets/digits-idx").status_code == 204
    assert not (api_stack.home / "datasets" / "uploads" / f"{listed['id']}.npz").exists()


# --- the CLI ----------------------------------------------------------------------------------------------------


def toroid(*args: str, server: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("TOROID_TOKEN", "TOROID_API_TOKEN", "TOROID_SERVER")}
    environ.update(OMP_NUM_THREADS="1", COLUMNS="200", TOROID_SERVER=server)
    return subprocess.run([sys.executable, "-m", "toroid.cli", *args], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=120)


def test_the_cli_adds_lists_and_removes_datasets(api_stack, tmp_path):
    url = api_stack.url
    split = digits_split(3, seed=2)
    path = tmp_path / "three.npz"
    np.savez(path, **split)

    added = toroid("dataset", "add", str(path), "--name", "three", "--json", server=url)
    assert added.returncode == 0, added.stderr
    record = json.loads(added.stdout)
    assert (record["name"], record["num_classes"], record["train"]) == ("three", 3, len(split["y_train"]))
    again = toroid("dataset", "add", str(path), "--name", "three", server=url)
    assert again.returncode == 0 and again.stdout.startswith("already there: three"), again.stdout + again.stderr
    assert "--dataset three" in again.stdout

    quartet = toroid("dataset", "add", *map(str, idx_quartet(tmp_path)), "--name", "cli-idx", server=url)
    assert quartet.returncode == 0, quartet.stderr
    assert quartet.stdout.startswith("added cli-idx") and "10 classes" in quartet.stdout, quartet.stdout

    listed = toroid("dataset", "list", server=url)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert "upload" in lines["three"] and "3 classes" in lines["three"] and record["id"][:12] in lines["three"]
    assert "built-in" in lines["digits"]
    as_json = toroid("dataset", "list", "--json", server=url)
    assert {"three", "cli-idx", "digits"} <= {d["name"] for d in json.loads(as_json.stdout)}

    bad = toroid("dataset", "add", str(path), "--name", "../etc", server=url)
    assert bad.returncode == 2 and "not allowed" in bad.stderr, bad.stderr
    other = tmp_path / "other.npz"
    np.savez(other, **digits_split(2, seed=3))
    taken = toroid("dataset", "add", str(other), "--name", "three", server=url)
    assert taken.returncode == 2 and "answered 409" in taken.stderr, taken.stderr
    three_files = toroid("dataset", "add", str(path), str(path), "--name", "x", server=url)
    assert three_files.returncode == 2 and "one .npz or the four IDX files" in three_files.stderr

    for name in ("three", "cli-idx"):
        removed = toroid("dataset", "rm", name, server=url)
        assert removed.returncode == 0 and removed.stdout.strip() == f"deleted {name}", removed.stderr
    gone = toroid("dataset", "rm", "three", server=url)
    assert gone.returncode == 2 and "answered 404" in gone.stderr


def test_toroid_up_allows_downloads_unless_the_setting_is_given(monkeypatch, tmp_path):
    """A local `toroid up` may fetch the built-in image sets; TOROID_ALLOW_DOWNLOADS, in the environment or in
    .env, is kept as given (docker compose and the tests set it off)."""
    from toroid.cli import up_environment
    from toroid.store.settings import Settings

    monkeypatch.delenv("TOROID_ALLOW_DOWNLOADS", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    settings = Settings(home=tmp_path)
    assert not settings.allow_downloads  # the server's default
    env = up_environment(settings, "127.0.0.1", 8123)
    assert env["TOROID_ALLOW_DOWNLOADS"] == "true" and env["TOROID_PORT"] == "8123"
    assert Settings(_env_file=None, **{"allow_downloads": env["TOROID_ALLOW_DOWNLOADS"]}).allow_downloads

    monkeypatch.setenv("TOROID_ALLOW_DOWNLOADS", "false")
    assert up_environment(Settings(home=tmp_path), "127.0.0.1", 8123)["TOROID_ALLOW_DOWNLOADS"] == "false"
    monkeypatch.delenv("TOROID_ALLOW_DOWNLOADS")
    (tmp_path / ".env").write_text("TOROID_ALLOW_DOWNLOADS=0\n")
    assert "TOROID_ALLOW_DOWNLOADS" not in up_environment(Settings(home=tmp_path), "127.0.0.1", 8123)
