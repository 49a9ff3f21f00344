"""Dataset registry (the data package): digits, Hidden Manifold Model, npz validation, the image sets' options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toroid.worker.landscape.data import DATASETS, clear_cache, dataset_info, load_dataset


def test_digits_split_shapes_and_standardization():
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    assert set(ds.y_train.tolist()) == set(range(10)) == set(ds.y_test.tolist())
    # stratified 80/20: each class is split in (nearly) the same proportion
    train_counts = torch.bincount(ds.y_train, minlength=10).double()
    test_counts = torch.bincount(ds.y_test, minlength=10).double()
    assert torch.all((test_counts / (train_counts + test_counts) - 0.2).abs() < 0.01)
    # per-pixel standardization with training statistics (constant pixels only centred)
    flat = ds.x_train.flatten(1).double()
    assert flat.mean(0).abs().max() < 1e-5
    std = flat.std(0, unbiased=False)
    assert torch.all(((std - 1).abs() < 1e-4) | (std < 1e-6))
    assert (std < 1e-6).sum() <= 4  # the few always-blank border pixels of the training split
    assert ds.x_test.flatten(1).mean(0).abs().max() > 1e-3  # test statistics were not used


def test_digits_split_is_fixed_and_cached():
    a = load_dataset("digits")
    assert load_dataset("digits") is a
    assert load_dataset("digits", standardize="feature") is a  # defaults are part of the key
    clear_cache()
    b = load_dataset("digits")
    assert b is not a
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    raw = load_dataset("digits", standardize="none")
    assert float(raw.x_train.max()) == 16.0


def test_hmm_is_seeded_reproducible_and_follows_the_generative_model():
    options = {"D": 21, "N": 41, "P_train": 300, "P_test": 100}
    a = load_dataset("hmm", seed=3, **options)
    clear_cache()
    b = load_dataset("hmm", seed=3, **options)
    c = load_dataset("hmm", seed=4, **options)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_train, c.x_train)
    assert a.x_train.shape == (300, 41) and a.x_test.shape == (100, 41)
    assert a.input_shape == (41,) and a.num_classes == 2
    assert set(a.x_train.unique().tolist()) == {-1.0, 1.0}
    assert set(a.y_train.tolist()) == {0, 1}
    # inputs live on a D-dimensional manifold: the +-1 patterns of 400 points in N=41 dims
    # come from only D=21 latent dimensions, so the label is predictable by a linear rule of x
    x = torch.cat([a.x_train, a.x_test]).double()
    y = torch.cat([a.y_train, a.y_test]).double() * 2 - 1
    w = torch.linalg.lstsq(x[:300], y[:300, None]).solution
    accuracy = float(((x[300:] @ w).squeeze(1).sign() == y[300:]).double().mean())
    assert accuracy > 0.7
    assert dataset_info("hmm", **options) == ((41,), 2)


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def valid_arrays(rng):
    return {
        "x_train": rng.normal(size=(20, 3, 4)).astype(np.float32),
        "y_train": rng.integers(0, 3, size=20),
        "x_test": rng.normal(size=(8, 3, 4)).astype(np.float32),
        "y_test": rng.integers(0, 3, size=8),
    }


def test_npz_loads_a_valid_file(tmp_path):
    rng = np.random.default_rng(0)
    arrays = valid_arrays(rng)
    arrays["y_train"][0] = 2
    path = write_npz(tmp_path / "ok.npz", **arrays)
    ds = load_dataset("npz", path=path)
    assert ds.input_shape == (3, 4) and ds.num_classes == 3
    assert torch.equal(ds.x_train, torch.from_numpy(arrays["x_train"]))
    assert dataset_info("npz", path=path) == ((3, 4), 3)
    assert load_dataset("npz", path=path, num_classes=5).num_classes == 5
    std = load_dataset("npz", path=path, standardize="feature").x_train.flatten(1)
    assert float(std.mean(0).abs().max()) < 1e-5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.pop("y_test"), r"lacks the arrays \['y_test'\]"),
        (lambda a: a.update(y_train=a["y_train"][:5]), "x_train has 20 samples but y_train has 5"),
        (lambda a: a.update(x_test=np.zeros((8, 4, 3), np.float32)), "different sample shapes"),
        (lambda a: a.update(y_train=np.full(20, -1)), r"labels must be in \[0, num_classes\)"),
        (lambda a: a.update(y_test=np.full(8, 0.5)), "integer class labels"),
        (lambda a: a.update(y_test=np.zeros((8, 2), np.int64)), "must be 1-D"),
        (lambda a: a.update(x_train=np.full((20, 3, 4), np.nan, np.float32)), "NaN"),
        (lambda a: a.update(x_train=np.zeros(20, np.float32)), r"shaped \(samples, ...\)"),
    ],
)
def test_npz_errors_say_what_is_wrong(tmp_path, change, message):
    arrays = valid_arrays(np.random.default_rng(1))
    change(arrays)
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load_dataset("npz", path=path)


def test_npz_label_range_against_num_classes_and_bad_paths(tmp_path):
    arrays = valid_arrays(np.random.default_rng(2))
    arrays["y_test"][0] = 7
    path = write_npz(tmp_path / "range.npz", **arrays)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\).*found label 7"):
        load_dataset("npz", path=path, num_classes=3)
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset("npz", path=str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match="needs the option path"):
        load_dataset("npz")
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_dataset("npz", path=str(junk))


def test_unknown_names_and_options():
    with pytest.raises(ValueError, match="choose one of.*digits"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match=r"valid options: \['standardize'\]"):
        load_dataset("digits", size=3)
    with pytest.raises(ValueError, match="standardize"):
        load_dataset("digits", standardize="minmax")
    with pytest.raises(ValueError, match="integer >= 1"):
        load_dataset("hmm", N=0)
    assert set(DATASETS) == {"digits", "hmm", "npz", "upload", "mnist", "fashion_mnist", "cifar10"}


def test_image_sets_without_files_or_download(tmp_path, monkeypatch):
    """The image sets need no torchvision: their shapes are known without files, and an empty root (no system
    folder either) fails clearly, naming the folders searched, instead of downloading."""
    from toroid.worker.landscape.data import SYSTEM_FOLDERS, set_allow_downloads

    set_allow_downloads(None)

    assert dataset_info("cifar10") == ((3, 32, 32), 10)
    assert dataset_info("mnist") == ((1, 28, 28), 10)
    monkeypatch.setitem(SYSTEM_FOLDERS, "fashion_mnist", ())
    monkeypatch.delenv("TOROID_ALLOW_DOWNLOADS", raising=False)
    with pytest.raises(ValueError, match=r"'fashion_mnist' was not found \(searched .*TOROID_ALLOW_DOWNLOADS"):
        load_dataset("fashion_mnist", root=str(tmp_path))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="download=.* must be true, false or null"):
        dataset_info("mnist", download="yes")
