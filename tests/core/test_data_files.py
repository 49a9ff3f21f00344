"""Uploaded datasets (docs/data.md): read_dataset_files accepts one .npz or the IDX quartet, validates everything
before returning, caps sizes before inflating anything, and gives the same content address to the same data in
either format; the "upload" and "npz" datasets read those files back, with stratified subsets."""

from __future__ import annotations

import gzip
import io
import pickle
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from toroid.worker.landscape.data import (
    DatasetArrays,
    clear_cache,
    dataset_info,
    dataset_sizes,
    load_dataset,
    read_cifar_binary,
    read_cifar_python,
    read_dataset_files,
    read_idx,
    stratified_counts,
    stratified_indices,
    uploaded_path,
)

MB = 2**20


def idx_bytes(array: np.ndarray, gz: bool = False) -> bytes:
    """An IDX file of unsigned bytes (magic 00 00 08 ndim, big-endian dims, data), gzipped when ``gz``."""
    raw = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    raw += array.astype(np.uint8).tobytes()
    return gzip.compress(raw) if gz else raw


def small_set(seed: int = 0, n_train: int = 40, n_test: int = 12, side: int = 6, classes: int = 4):
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, (n_train, side, side), dtype=np.uint8)
    x_test = rng.integers(0, 256, (n_test, side, side), dtype=np.uint8)
    y_train = (np.arange(n_train) % classes).astype(np.uint8)
    y_test = (np.arange(n_test) % classes).astype(np.uint8)
    return x_train, y_train, x_test, y_test


def quartet(x_train, y_train, x_test, y_test, gz=(True, False, True, False), test_word="t10k") -> dict[str, bytes]:
    return {
        "train-images-idx3-ubyte" + (".gz" if gz[0] else ""): idx_bytes(x_train, gz[0]),
        "train-labels-idx1-ubyte" + (".gz" if gz[1] else ""): idx_bytes(y_train, gz[1]),
        f"{test_word}-images-idx3-ubyte" + (".gz" if gz[2] else ""): idx_bytes(x_test, gz[2]),
        f"{test_word}-labels-idx1-ubyte" + (".gz" if gz[3] else ""): idx_bytes(y_test, gz[3]),
    }


def npz_bytes(compressed: bool = False, **arrays) -> bytes:
    out = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(out, **arrays)
    return out.getvalue()


def valid_arrays(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.normal(size=(30, 3, 4)).astype(np.float32),
        "y_train": np.arange(30) % 3,
        "x_test": rng.normal(size=(9, 3, 4)).astype(np.float32),
        "y_test": np.arange(9) % 3,
    }


# --------------------------------------------------------------------------------------------- accepted uploads
def test_an_idx_quartet_and_the_same_data_as_npz_get_one_content_address():
    x_train, y_train, x_test, y_test = small_set()
    from_idx = read_dataset_files(quartet(x_train, y_train, x_test, y_test), max_bytes=MB)
    assert from_idx.x_train.shape == (40, 1, 6, 6) and from_idx.x_train.dtype == np.uint8
    assert from_idx.y_train.dtype == np.int64 and from_idx.num_classes == 4 and from_idx.class_names is None
    assert np.array_equal(from_idx.x_test[:, 0], x_test) and np.array_equal(from_idx.y_test, y_test)
    # raw files, "test-" names, other gzip choices: same content, same address
    other = read_dataset_files(quartet(x_train, y_train, x_test, y_test, gz=(False,) * 4, test_word="test"),
                               max_bytes=MB)
    assert other.sha256 == from_idx.sha256
    as_npz = npz_bytes(x_train=x_train[:, None], y_train=y_train, x_test=x_test[:, None], y_test=y_test)
    assert read_dataset_files({"mine.npz": as_npz}, max_bytes=MB).sha256 == from_idx.sha256
    # a different byte anywhere, or a different class count, is a different address
    changed = x_train.copy()
    changed[3, 2, 1] ^= 1
    assert read_dataset_files(quartet(changed, y_train, x_test, y_test), max_bytes=MB).sha256 != from_idx.sha256
    more_classes = npz_bytes(x_train=x_train[:, None], y_train=y_train, x_test=x_test[:, None], y_test=y_test,
                             num_classes=np.int64(5))
    assert read_dataset_files({"a.npz": more_classes}, max_bytes=MB).sha256 != from_idx.sha256


def test_summary_and_a_deterministic_npz_round_trip():
    arrays = valid_arrays()
    names = np.array(["cat", "dog", "bird"])
    data = read_dataset_files({"d.npz": npz_bytes(**arrays, class_names=names)}, max_bytes=MB)
    assert data.num_classes == 3 and data.class_names == ["cat", "dog", "bird"]
    assert data.x_train.dtype == np.float32
    summary = data.summary()
    assert summary == {
        "train": 30, "test": 9, "input_shape": [3, 4], "num_classes": 3, "class_names": ["cat", "dog", "bird"],
        "class_counts": {"train": [10, 10, 10], "test": [3, 3, 3]},
        "nbytes": 30 * 12 * 4 + 30 * 8 + 9 * 12 * 4 + 9 * 8,
    }
    stored = data.to_npz_bytes()
    assert stored == data.to_npz_bytes()  # no timestamps
    with np.load(io.BytesIO(stored), allow_pickle=False) as f:
        assert set(f.files) == {"x_train", "y_train", "x_test", "y_test", "num_classes", "class_names"}
        assert np.array_equal(f["x_train"], arrays["x_train"])
    again = read_dataset_files({"again.npz": stored}, max_bytes=MB)
    assert again.sha256 == data.sha256 and again.class_names == data.class_names
    direct = DatasetArrays.from_arrays(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                                       class_names=["cat", "dog", "bird"])
    assert direct.sha256 == data.sha256


# --------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.update(y_train=a["y_train"][:7]), "x_train has 30 samples but y_train has 7"),
        (lambda a: a.update(y_test=np.full(9, 3), num_classes=np.int64(3)), r"labels must be in \[0, 3\)"),
        (lambda a: a.update(y_train=np.full(30, -2)), r"labels must be in \[0, num_classes\)"),
        (lambda a: a.update(x_test=np.full((9, 3, 4), np.nan, np.float32)), "NaN or infinite"),
        (lambda a: a.update(x_train=np.full((30, 3, 4), np.inf)), "NaN or infinite"),
        (lambda a: a.update(x_test=np.zeros((9, 4, 3), np.float32)), "different sample shapes"),
        (lambda a: a.update(x_train=np.zeros(30, np.float32)), r"shaped \(samples, ...\)"),
        (lambda a: a.update(x_train=np.zeros((0, 3, 4)), y_train=np.zeros(0, np.int64)), "train split is empty"),
        (lambda a: a.update(y_test=np.full(9, 0.5)), "integer class labels"),
        (lambda a: a.pop("y_test"), r"lacks the arrays \['y_test'\].*np.savez"),
        (lambda a: a.update(extra=np.zeros(3)), r"unknown arrays \['extra'\].*x_train"),
        (lambda a: a.update(class_names=np.array(["a", "b"])), "2 class_names for num_classes=3|labels must be"),
        (lambda a: a.update(x_train=np.zeros((30, 3, 4), np.complex64)), "real numbers"),
    ],
)
def test_invalid_uploads_say_what_is_wrong(change, message):
    arrays = valid_arrays()
    change(arrays)
    with pytest.raises(ValueError, match=message):
        read_dataset_files({"bad.npz": npz_bytes(**arrays)}, max_bytes=MB)


def test_pickled_object_arrays_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    arrays = valid_arrays()
    arrays["x_train"] = np.array([Payload()] * 30, dtype=object)
    with pytest.raises(ValueError, match="pickles are refused"):
        read_dataset_files({"evil.npz": npz_bytes(**arrays)}, max_bytes=MB)
    assert not marker.exists()


def test_sizes_are_capped_before_anything_is_inflated():
    arrays = valid_arrays()
    blob = npz_bytes(**arrays)
    total = sum(a.nbytes for a in arrays.values())
    assert read_dataset_files({"ok.npz": blob}, max_bytes=total).num_classes == 3
    with pytest.raises(ValueError, match=f"declare {total:,} bytes, above the limit of {total - 1:,}"):
        read_dataset_files({"big.npz": blob}, max_bytes=total - 1)
    # a zip bomb: 256 MiB of zeros compress to a few hundred KB; refused from the headers, nothing allocated
    zeros = np.zeros(256 * MB, dtype=np.uint8)  # calloc'd: no memory is touched until written
    bomb = npz_bytes(compressed=True, x_train=zeros.reshape(-1, 1024), y_train=np.zeros(256 * 1024, np.uint8),
                     x_test=np.zeros((1, 1024), np.uint8), y_test=np.zeros(1, np.uint8))
    del zeros
    assert len(bomb) < 2 * MB
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="above the limit"):
            read_dataset_files({"bomb.npz": bomb}, max_bytes=64 * MB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MB


def lying_npz(declared: tuple[int, ...], actual_bytes: int) -> bytes:
    """An .npz whose x_train header declares ``declared`` uint8 but whose member holds ``actual_bytes`` zeros."""
    out = io.BytesIO()
    arrays = valid_arrays()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x_train.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": declared})
            chunk = bytes(MB)
            for start in range(0, actual_bytes, MB):
                fh.write(chunk[:min(MB, actual_bytes - start)])
        for key in ("y_train", "x_test", "y_test"):
            with zf.open(f"{key}.npy", "w") as fh:
                np.lib.format.write_array(fh, arrays[key] if key != "x_test" else np.zeros((9, 3, 4), np.uint8))
    return out.getvalue()


def test_a_member_holding_more_than_its_header_declares_is_refused_after_the_declared_bytes():
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="more data than its header"):
            read_dataset_files({"liar.npz": lying_npz((30, 3, 4), 200 * MB)}, max_bytes=MB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MB
    with pytest.raises(ValueError, match="truncated"):
        read_dataset_files({"short.npz": lying_npz((30, 3, 4), 100)}, max_bytes=MB)


def test_broken_idx_files_are_refused():
    x_train, y_train, x_test, y_test = small_set()
    good = quartet(x_train, y_train, x_test, y_test, gz=(False,) * 4)
    truncated = dict(good, **{"train-images-idx3-ubyte": good["train-images-idx3-ubyte"][:-5]})
    with pytest.raises(ValueError, match="truncated"):
        read_dataset_files(truncated, max_bytes=MB)
    longer = dict(good, **{"train-images-idx3-ubyte": good["train-images-idx3-ubyte"] + b"\0"})
    with pytest.raises(ValueError, match="more data than its IDX header"):
        read_dataset_files(longer, max_bytes=MB)
    wrong_magic = dict(good, **{"t10k-labels-idx1-ubyte": b"\x12\x34" + good["t10k-labels-idx1-ubyte"][2:]})
    with pytest.raises(ValueError, match="not an IDX file"):
        read_dataset_files(wrong_magic, max_bytes=MB)
    floats = b"\x00\x00\x0d\x01" + np.asarray([2], ">u4").tobytes() + np.zeros(2, ">f4").tobytes()
    with pytest.raises(ValueError, match="type code 0x0d"):
        read_idx(floats, "floats", max_bytes=MB)
    with pytest.raises(ValueError, match="declares .* above the limit"):
        read_dataset_files(good, max_bytes=1000)
    with pytest.raises(ValueError, match="not a valid gzip"):
        read_idx(b"\x1f\x8b" + b"garbage" * 10, "junk.gz", max_bytes=MB)
    labels_for_images = dict(good, **{"train-labels-idx1-ubyte": idx_bytes(y_train[:10])})
    with pytest.raises(ValueError, match="x_train has 40 samples but y_train has 10"):
        read_dataset_files(labels_for_images, max_bytes=MB)


def test_a_gzip_bomb_is_refused_having_inflated_only_what_the_header_declares():
    header = bytes([0, 0, 8, 3]) + np.asarray([40, 6, 6], ">u4").tobytes()
    compressor = gzip.GzipFile(fileobj=(buffer := io.BytesIO()), mode="wb", compresslevel=1)
    compressor.write(header + bytes(40 * 36))
    chunk = bytes(MB)
    for _ in range(512):  # 512 MiB of zeros after the declared data
        compressor.write(chunk)
    compressor.close()
    bomb = buffer.getvalue()
    x_train, y_train, x_test, y_test = small_set()
    files = quartet(x_train, y_train, x_test, y_test)
    files["train-images-idx3-ubyte.gz"] = bomb
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="more data than its IDX header"):
            read_dataset_files(files, max_bytes=64 * MB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MB
    # a header declaring a huge array is refused before its body is inflated
    huge = gzip.compress(bytes([0, 0, 8, 3]) + np.asarray([2**31, 28, 28], ">u4").tobytes())
    with pytest.raises(ValueError, match="above the limit"):
        read_idx(huge, "huge", max_bytes=64 * MB)


def test_file_sets_that_are_neither_one_npz_nor_an_idx_quartet():
    x_train, y_train, x_test, y_test = small_set()
    files = quartet(x_train, y_train, x_test, y_test)
    with pytest.raises(ValueError, match="no files"):
        read_dataset_files({}, max_bytes=MB)
    with pytest.raises(ValueError, match=r"IDX files for \['y_test'\] are missing"):
        read_dataset_files({k: v for k, v in files.items() if "t10k-labels" not in k}, max_bytes=MB)
    with pytest.raises(ValueError, match="cannot tell what 'notes.txt' is"):
        read_dataset_files({**files, "notes.txt": b"hi"}, max_bytes=MB)
    with pytest.raises(ValueError, match="upload one .npz file"):
        read_dataset_files({"a.npz": npz_bytes(**valid_arrays()), "b.npz": b""}, max_bytes=MB)
    with pytest.raises(ValueError, match="not a readable .npz"):
        read_dataset_files({"a.npz": b"PK not really"}, max_bytes=MB)


def test_uploaded_path_takes_a_sha256_and_nothing_else(tmp_path):
    sha = "ab" * 32
    assert uploaded_path(tmp_path, sha) == tmp_path / "uploads" / f"{sha}.npz"
    for bad in ("../" + "a" * 61, "AB" * 32, "ab" * 31, "ab" * 32 + "\n", "ab" * 31 + "/x", None):
        with pytest.raises(ValueError, match="64 lowercase hex"):
            uploaded_path(tmp_path, bad)


# --------------------------------------------------------------------------------------------- the upload dataset
def store(root: Path, data: DatasetArrays) -> str:
    path = uploaded_path(root, data.sha256)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.to_npz_bytes())
    return data.sha256


def test_the_upload_dataset_loads_standardizes_and_subsets(tmp_path):
    x_train, y_train, x_test, y_test = small_set(n_train=200, n_test=60)
    data = read_dataset_files(quartet(x_train, y_train, x_test, y_test), max_bytes=MB)
    sha = store(tmp_path, data)
    clear_cache()
    ds = load_dataset("upload", sha256=sha, root=str(tmp_path))
    assert ds.input_shape == (1, 6, 6) and ds.num_classes == 4 and len(ds.y_train) == 200
    assert ds.x_train.dtype == torch.float32
    flat = ds.x_train.flatten(1).double()
    assert float(flat.mean(0).abs().max()) < 1e-5 and float((flat.std(0, unbiased=False) - 1).abs().max()) < 1e-4
    raw = load_dataset("upload", sha256=sha, root=str(tmp_path), standardize="none")
    assert torch.equal(raw.x_train, torch.from_numpy(x_train[:, None].astype(np.float32)))
    assert dataset_info("upload", sha256=sha, root=str(tmp_path)) == ((1, 6, 6), 4)
    assert dataset_sizes("upload", sha256=sha, root=str(tmp_path)) == (200, 60)
    assert dataset_sizes("upload", sha256=sha, root=str(tmp_path), train_size=50, test_size=1000) == (50, 60)
    sub = load_dataset("upload", sha256=sha, root=str(tmp_path), train_size=50, seed=3)
    assert torch.bincount(sub.y_train).tolist() in ([13, 13, 12, 12], [13, 12, 13, 12], [12, 13, 12, 13],
                                                    [12, 12, 13, 13], [13, 12, 12, 13], [12, 13, 13, 12])
    assert len(sub.y_test) == 60


def test_the_upload_dataset_refuses_missing_and_altered_files(tmp_path):
    sha = "0" * 64
    with pytest.raises(ValueError, match=f"uploaded dataset 000000000000 not found under {tmp_path}/uploads"):
        load_dataset("upload", sha256=sha, root=str(tmp_path))
    with pytest.raises(ValueError, match="needs the option sha256"):
        dataset_info("upload", root=str(tmp_path))
    with pytest.raises(ValueError, match="64 lowercase hex"):
        load_dataset("upload", sha256="../../etc/passwd", root=str(tmp_path))
    data = read_dataset_files({"d.npz": npz_bytes(**valid_arrays())}, max_bytes=MB)
    other = read_dataset_files({"d.npz": npz_bytes(**valid_arrays(seed=2))}, max_bytes=MB)
    path = uploaded_path(tmp_path, data.sha256)
    path.parent.mkdir(parents=True)
    path.write_bytes(other.to_npz_bytes())  # someone else's content under this address
    with pytest.raises(ValueError, match="does not match its address"):
        load_dataset("upload", sha256=data.sha256, root=str(tmp_path))


def test_the_upload_root_defaults_to_the_data_root(tmp_path, monkeypatch):
    data = read_dataset_files({"d.npz": npz_bytes(**valid_arrays())}, max_bytes=MB)
    monkeypatch.delenv("TOROID_DATA_ROOT", raising=False)
    monkeypatch.setenv("TOROID_HOME", str(tmp_path / "home"))
    store(tmp_path / "home" / "datasets", data)
    assert dataset_sizes("upload", sha256=data.sha256) == (30, 9)
    monkeypatch.setenv("TOROID_DATA_ROOT", str(tmp_path / "elsewhere"))
    store(tmp_path / "elsewhere", data)
    clear_cache()
    assert load_dataset("upload", sha256=data.sha256).num_classes == 3


def test_the_npz_dataset_takes_stratified_subsets(tmp_path):
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(3), [60, 30, 10])
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.normal(size=(100, 4)), y_train=labels, x_test=rng.normal(size=(20, 4)),
             y_test=np.arange(20) % 2)
    assert dataset_sizes("npz", path=str(path), train_size=10) == (10, 20)
    sub = load_dataset("npz", path=str(path), train_size=10, test_size=4, seed=1)
    assert torch.bincount(sub.y_train).tolist() == [6, 3, 1] and torch.bincount(sub.y_test).tolist() == [2, 2]
    again = load_dataset("npz", path=str(path), train_size=10, test_size=4, seed=1, standardize="feature")
    assert torch.equal(sub.y_train, again.y_train)


# --------------------------------------------------------------------------------------------- stratified subsets
def test_stratified_subsets_keep_the_class_proportions_within_one():
    rng = np.random.default_rng(0)
    labels = rng.choice(7, size=5000, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.04, 0.01])
    classes, counts = np.unique(labels, return_counts=True)
    for size in (1, 7, 50, 333, 1234, 4999):
        idx = stratified_indices(labels, size, seed=3)
        assert len(idx) == size and np.all(np.diff(idx) > 0)
        got = np.array([(labels[idx] == c).sum() for c in classes])
        assert np.all(np.abs(got - counts * size / len(labels)) < 1), (size, got)
        assert np.array_equal(stratified_counts(labels, size)[1], got)
    assert stratified_indices(labels, None, 0) is None and stratified_indices(labels, 5000, 0) is None
    assert np.array_equal(stratified_indices(labels, 100, 1), stratified_indices(labels, 100, 1))
    assert not np.array_equal(stratified_indices(labels, 100, 1), stratified_indices(labels, 100, 2))


# --------------------------------------------------------------------------------------------- CIFAR readers
def test_cifar_readers_refuse_what_is_not_a_cifar_batch(tmp_path):
    with pytest.raises(ValueError, match="whole number of CIFAR-10 records"):
        read_cifar_binary(bytes(3073 * 2 + 1), "short.bin")
    record = bytes([11]) + bytes(3072)
    with pytest.raises(ValueError, match="label 11"):
        read_cifar_binary(record, "label.bin")
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    for protocol in (2, 4):
        evil = pickle.dumps({b"data": Payload(), b"labels": [0]}, protocol=protocol)
        with pytest.raises(ValueError, match="is refused"):
            read_cifar_python(evil, "evil")
    assert not marker.exists()
    with pytest.raises(ValueError, match="dtype 'O8' is not accepted"):
        read_cifar_python(pickle.dumps({b"data": np.array([None] * 3072, dtype=object), b"labels": [0]}, 2), "o")
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        read_cifar_python(pickle.dumps([1, 2, 3]), "list")
