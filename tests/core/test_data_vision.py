"""The paper's image sets from local files, without torchvision (docs/data.md): Fashion-MNIST from the system folder
(the real data), MNIST-style IDX sets and CIFAR-10 batches in every folder layout, stratified subsets, and
downloads from a local HTTP server standing in for the upstream addresses (tests never reach the internet)."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import socket
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from toroid.worker.landscape.data import (
    DOWNLOADS,
    SYSTEM_FOLDERS,
    clear_cache,
    dataset_info,
    dataset_sizes,
    download_progress,
    downloads_allowed,
    load_dataset,
    set_allow_downloads,
)

FASHION = Path("/usr/share/datasets/fashion-mnist")
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_FILES = tuple(f"{n}.gz" for n in IDX_NAMES)
needs_fashion = pytest.mark.skipif(
    not all((FASHION / f).is_file() for f in FASHION_FILES),
    reason=f"Fashion-MNIST is not installed in {FASHION} (Debian/Ubuntu package dataset-fashion-mnist)",
)


@pytest.fixture(autouse=True)
def no_downloads_unless_asked(monkeypatch):
    """Every test starts with downloads off and no proxy (the local server is reached directly)."""
    for var in ("TOROID_ALLOW_DOWNLOADS", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    set_allow_downloads(None)
    clear_cache()
    yield
    set_allow_downloads(None)
    clear_cache()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes() + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, n_train: int = 50, n_test: int = 20, seed: int = 0, gz: bool = True):
    """A tiny MNIST-style set (28 x 28 images, 10 classes) in ``folder``; returns its arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.permutation(np.arange(n_test) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, array) in enumerate(arrays.items()):
        data = idx_bytes(array)
        if gz and i % 2 == 0:  # a mix of gzip and raw files
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.fixture
def serve():
    """``serve(folder)`` serves a folder over HTTP on 127.0.0.1 from a thread; returns the base URL and the list of
    requested paths."""
    servers = []

    def start(folder: Path) -> tuple[str, list[str]]:
        requested: list[str] = []

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                requested.append(self.path)
                super().do_GET()

        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", requested

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------- real Fashion-MNIST
@needs_fashion
def test_fashion_mnist_from_the_system_folder(tmp_path):
    assert dataset_sizes("fashion_mnist", root=str(tmp_path)) == (60_000, 10_000)  # from the IDX headers
    assert dataset_sizes("fashion_mnist", root=str(tmp_path), train_size=5000) == (5000, 10_000)
    ds = load_dataset("fashion_mnist", root=str(tmp_path))
    assert len(ds.y_train) == 60_000 and len(ds.y_test) == 10_000
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10 and ds.x_train.dtype == torch.float32
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10
    assert abs(float(ds.x_train.mean())) < 1e-4 and abs(float(ds.x_train.std()) - 1) < 1e-3  # channel standardized
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing downloaded
    clear_cache()
    sub = load_dataset("fashion_mnist", root=str(tmp_path), train_size=5000, test_size=1000)
    assert torch.bincount(sub.y_train).tolist() == [500] * 10
    assert torch.bincount(sub.y_test).tolist() == [100] * 10
    again = load_dataset("fashion_mnist", root=str(tmp_path), train_size=5000, test_size=1000, standardize="none")
    assert torch.equal(sub.y_train, again.y_train) and float(again.x_train.max()) <= 1.0


@needs_fashion
def test_lenet_learns_fashion_mnist_from_a_stratified_subset_in_one_epoch(tmp_path):
    """One epoch of SGD on 5,000 stratified images: under 25% test error (on the 1,000-image stratified test
    subset), evaluated by the project's evaluator."""
    from toroid.worker.landscape import train_minimum
    from toroid.worker.landscape.evaluate import Evaluator

    dataset = load_dataset("fashion_mnist", root=str(tmp_path), train_size=5000, test_size=1000)
    model, provenance = train_minimum("lenet", {}, dataset, sampler="sgd", hparams={"batch_size": 32}, seed=0,
                                      epochs=1, target_error=None)
    errors = Evaluator(model, dataset).evaluate_state(model, "test")
    assert provenance["epochs_run"] == 1
    assert errors["test_error"] < 0.25, errors


# --------------------------------------------------------------------------------------------- local layouts
@pytest.mark.parametrize("layout", ["mnist", "MNIST/raw", "."])
def test_mnist_from_idx_files_in_each_folder_layout(tmp_path, monkeypatch, layout):
    monkeypatch.setitem(SYSTEM_FOLDERS, "mnist", ())
    arrays = write_idx_set(tmp_path / layout, gz=layout != "MNIST/raw")
    assert dataset_sizes("mnist", root=str(tmp_path)) == (50, 20)
    ds = load_dataset("mnist", root=str(tmp_path), standardize="none")
    assert ds.x_train.shape == (50, 1, 28, 28) and ds.input_shape == (1, 28, 28)
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"][:, None].astype(np.float32) / 255)
    assert torch.equal(ds.x_train, expected)
    assert torch.equal(ds.y_test, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64)))
    std = load_dataset("mnist", root=str(tmp_path))
    assert abs(float(std.x_train.mean())) < 1e-5 and abs(float(std.x_train.std(unbiased=False)) - 1) < 1e-4


def test_fashion_mnist_in_its_own_folder_and_the_system_folder_after_the_root(tmp_path, monkeypatch):
    system = tmp_path / "system"
    write_idx_set(system, n_train=30, seed=1)
    monkeypatch.setitem(SYSTEM_FOLDERS, "fashion_mnist", (str(system),))
    root = tmp_path / "root"
    root.mkdir()
    assert len(load_dataset("fashion_mnist", root=str(root)).y_train) == 30  # found in the system folder
    write_idx_set(root / "fashion_mnist", n_train=40, seed=2)
    clear_cache()
    assert len(load_dataset("fashion_mnist", root=str(root)).y_train) == 40  # the root comes first
    write_idx_set(root / "FashionMNIST" / "raw", n_train=60, seed=3)
    clear_cache()
    assert len(load_dataset("fashion_mnist", root=str(root)).y_train) == 40


def test_idx_sets_of_the_wrong_shape_or_labels_are_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(SYSTEM_FOLDERS, "mnist", ())
    folder = tmp_path / "mnist"
    write_idx_set(folder, gz=False)
    (folder / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((20, 27, 28), np.uint8)))
    with pytest.raises(ValueError, match=r"images of shape \(27, 28\), expected \(28, 28\)"):
        load_dataset("mnist", root=str(tmp_path))
    write_idx_set(folder, gz=False)
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(50, 10, np.uint8)))
    with pytest.raises(ValueError, match="label 10"):
        load_dataset("mnist", root=str(tmp_path))
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(49, np.uint8)))
    with pytest.raises(ValueError, match="labels for 50 images"):
        load_dataset("mnist", root=str(tmp_path))


def cifar_arrays(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def write_cifar(folder: Path, kind: str, protocol: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CIFAR-10 batches (5 training batches of 4 images, a test batch of 3) as binary records or python pickles."""
    folder.mkdir(parents=True, exist_ok=True)
    train = [cifar_arrays(i, 4) for i in range(5)]
    test = cifar_arrays(9, 3)
    for name, (x, y) in [*((f"data_batch_{i + 1}", b) for i, b in enumerate(train)), ("test_batch", test)]:
        if kind == "bin":
            records = np.concatenate([y[:, None], x.reshape(len(x), -1)], axis=1)
            (folder / f"{name}.bin").write_bytes(records.tobytes())
        else:
            batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in y],
                     b"data": x.reshape(len(x), -1), b"filenames": [b"img.png"] * len(x)}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]).astype(np.int64),
            test[0], test[1].astype(np.int64))


@pytest.mark.parametrize(("layout", "kind"), [("cifar-10-batches-bin", "bin"), ("cifar10/cifar-10-batches-py", "py"),
                                              ("cifar10/cifar-10-batches-bin", "bin"), ("cifar-10-batches-py", "py")])
def test_cifar10_from_binary_and_python_batches(tmp_path, layout, kind):
    x_train, y_train, x_test, y_test = write_cifar(tmp_path / layout, kind)
    ds = load_dataset("cifar10", root=str(tmp_path), standardize="none")
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32) and ds.num_classes == 10
    assert torch.equal(ds.x_train, torch.from_numpy(x_train.astype(np.float32) / 255))
    assert torch.equal(ds.y_train, torch.from_numpy(y_train)) and torch.equal(ds.y_test, torch.from_numpy(y_test))
    assert dataset_sizes("cifar10", root=str(tmp_path)) == ((20, 3) if kind == "bin" else (50_000, 10_000))
    assert dataset_info("cifar10", root=str(tmp_path)) == ((3, 32, 32), 10)


def test_a_malicious_cifar_python_batch_is_refused_and_runs_nothing(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, "py", protocol=4)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Payload(), b"labels": [1]}, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_3: .*global \S+ is refused"):
        load_dataset("cifar10", root=str(tmp_path))
    assert not marker.exists()


def test_missing_files_name_the_folders_searched_and_what_to_put_there(tmp_path, monkeypatch):
    monkeypatch.setitem(SYSTEM_FOLDERS, "mnist", (str(tmp_path / "sys"),))
    with pytest.raises(ValueError) as caught:
        load_dataset("mnist", root=str(tmp_path))
    message = str(caught.value)
    for part in ("dataset 'mnist' was not found", str(tmp_path / "MNIST" / "raw"), str(tmp_path / "sys"),
                 "train-images-idx3-ubyte.gz", f"in {tmp_path / 'mnist'}/", "TOROID_ALLOW_DOWNLOADS"):
        assert part in message, part
    with pytest.raises(ValueError, match="cifar-10-batches-bin/"):
        load_dataset("cifar10", root=str(tmp_path))


# --------------------------------------------------------------------------------------------- downloads
@pytest.fixture
def fashion_table(serve, monkeypatch):
    """The Fashion-MNIST download table pointed at a local server of the installed files."""
    if not all((FASHION / f).is_file() for f in FASHION_FILES):
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION} (package dataset-fashion-mnist)")
    base, requested = serve(FASHION)
    monkeypatch.setitem(DOWNLOADS, "fashion_mnist", [(f"{base}/{f}", md5(FASHION / f), f) for f in FASHION_FILES])
    monkeypatch.setitem(SYSTEM_FOLDERS, "fashion_mnist", ())
    return requested


def test_the_download_switch(monkeypatch):
    assert not downloads_allowed()
    monkeypatch.setenv("TOROID_ALLOW_DOWNLOADS", "true")
    assert downloads_allowed() and not downloads_allowed(False)
    set_allow_downloads(False)
    assert not downloads_allowed() and downloads_allowed(True)
    set_allow_downloads(None)
    monkeypatch.setenv("TOROID_ALLOW_DOWNLOADS", "0")
    assert not downloads_allowed()


def test_a_download_lands_verified_and_reports_progress(tmp_path, fashion_table):
    with pytest.raises(ValueError, match="was not found"):  # off by default: nothing is requested
        load_dataset("fashion_mnist", root=str(tmp_path))
    assert fashion_table == []
    calls: list[tuple[float, str]] = []
    with download_progress(lambda fraction, message: calls.append((fraction, message))):
        ds = load_dataset("fashion_mnist", root=str(tmp_path), download=True, train_size=1000, test_size=500)
    folder = tmp_path / "fashion_mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(FASHION_FILES)  # no .part left
    assert all(md5(folder / f) == md5(FASHION / f) for f in FASHION_FILES)
    assert torch.bincount(ds.y_train).tolist() == [100] * 10 and torch.bincount(ds.y_test).tolist() == [50] * 10
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(calls) > 8
    assert any("downloading fashion_mnist: train-images-idx3-ubyte.gz" in m for _, m in calls)
    assert len(fashion_table) == 4
    clear_cache()
    load_dataset("fashion_mnist", root=str(tmp_path), download=True, train_size=10)  # present: not fetched again
    assert len(fashion_table) == 4


def test_the_process_setting_allows_downloads(tmp_path, fashion_table):
    set_allow_downloads(True)
    assert dataset_sizes("fashion_mnist", root=str(tmp_path)) == (60_000, 10_000)  # sizes never download
    assert fashion_table == []
    load_dataset("fashion_mnist", root=str(tmp_path), train_size=20, test_size=20)
    assert len(fashion_table) == 4 and (tmp_path / "fashion_mnist" / FASHION_FILES[0]).is_file()


def test_a_wrong_md5_is_refused_and_leaves_nothing(tmp_path, fashion_table, monkeypatch):
    table = list(DOWNLOADS["fashion_mnist"])
    url, _, name = table[1]
    table[1] = (url, "0" * 32, name)
    monkeypatch.setitem(DOWNLOADS, "fashion_mnist", table)
    with pytest.raises(ValueError, match=f"{name} from .* has md5 [0-9a-f]{{32}}, expected 0{{32}}"):
        load_dataset("fashion_mnist", root=str(tmp_path), download=True)
    assert [p.name for p in (tmp_path / "fashion_mnist").iterdir()] == [FASHION_FILES[0]]  # the verified one


def test_a_progress_callback_that_raises_stops_the_download_cleanly(tmp_path, fashion_table):
    def cancel(fraction: float, message: str) -> None:
        if fraction > 0.05:
            raise KeyboardInterrupt("cancelled")

    with download_progress(cancel), pytest.raises(KeyboardInterrupt):
        load_dataset("fashion_mnist", root=str(tmp_path), download=True)
    assert list((tmp_path / "fashion_mnist").iterdir()) == []


def test_unreachable_or_missing_upstream_files_say_where_to_put_them(tmp_path, monkeypatch, serve):
    monkeypatch.setitem(SYSTEM_FOLDERS, "mnist", ())
    url = f"http://127.0.0.1:{closed_port()}/mnist/train-images-idx3-ubyte.gz"
    monkeypatch.setitem(DOWNLOADS, "mnist", [(url, "0" * 32, "train-images-idx3-ubyte.gz")])
    with pytest.raises(ValueError) as caught:
        load_dataset("mnist", root=str(tmp_path), download=True)
    message = str(caught.value)
    assert message.startswith(f"dataset 'mnist' could not be downloaded from {url} (")
    assert message.endswith(f"): put the files train-images-idx3-ubyte.gz in {tmp_path / 'mnist'}")
    base, _ = serve(tmp_path)
    monkeypatch.setitem(DOWNLOADS, "mnist", [(f"{base}/nothing.gz", "0" * 32, "train-images-idx3-ubyte.gz")])
    with pytest.raises(ValueError, match=r"(?i)could not be downloaded from .*nothing\.gz \(.*not found\)"):
        load_dataset("mnist", root=str(tmp_path), download=True)
    assert list((tmp_path / "mnist").iterdir()) == []


def tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def test_cifar10_downloads_as_an_archive_unpacked_safely(tmp_path, monkeypatch, serve):
    source = tmp_path / "upstream"
    x_train, y_train, _, _ = write_cifar(source / "cifar-10-batches-bin", "bin")
    members = []
    for path in sorted((source / "cifar-10-batches-bin").iterdir()):
        info = tarfile.TarInfo(f"cifar-10-batches-bin/{path.name}")
        info.size = path.stat().st_size
        members.append((info, path.read_bytes()))
    (source / "cifar-10-binary.tar.gz").write_bytes(tar_gz(members))
    base, _ = serve(source)
    root = tmp_path / "root"
    archive = source / "cifar-10-binary.tar.gz"
    monkeypatch.setitem(DOWNLOADS, "cifar10", [(f"{base}/cifar-10-binary.tar.gz", md5(archive), archive.name)])
    ds = load_dataset("cifar10", root=str(root), download=True, standardize="none")
    assert torch.equal(ds.x_train, torch.from_numpy(x_train.astype(np.float32) / 255))
    assert torch.equal(ds.y_train, torch.from_numpy(y_train))
    assert sorted(p.name for p in (root / "cifar10").iterdir()) == ["cifar-10-batches-bin"]  # archive removed

    evil_root = tmp_path / "evil"
    for bad in ("../escaped.bin", "/abs.bin", "link"):
        info = tarfile.TarInfo(bad)
        data: bytes | None = b"x"
        info.size = 1
        if bad == "link":
            info.type, info.linkname, info.size, data = tarfile.SYMTYPE, "/etc/passwd", 0, None
        (source / "evil.tar.gz").write_bytes(tar_gz([*members[:1], (info, data)]))
        monkeypatch.setitem(DOWNLOADS, "cifar10", [(f"{base}/evil.tar.gz", md5(source / "evil.tar.gz"),
                                                    "cifar-10-binary.tar.gz")])
        with pytest.raises(ValueError, match="holds"):
            load_dataset("cifar10", root=str(evil_root), download=True)
        assert list((evil_root / "cifar10").iterdir()) == []
    assert not (tmp_path / "escaped.bin").exists() and not Path("/abs.bin").exists()
