"""The Data view's pure parts: what the dropped files are, the dataset table, the dataset fields' options."""

from __future__ import annotations

import json

from toroid.dashboard.views.common import dataset_options
from toroid.dashboard.views.data import dataset_rows, staged_kind

IDX = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
       "t10k-labels-idx1-ubyte.gz"]


def test_staged_files_are_one_npz_or_an_idx_quartet():
    assert staged_kind([]) == (None, [])
    assert staged_kind(["scans.npz"]) == ("npz", [])
    assert staged_kind(IDX) == ("idx", [])
    assert staged_kind([n.replace("t10k", "test") for n in IDX]) == ("idx", [])
    kind, problems = staged_kind(IDX[:3])
    assert kind is None and "t10k-labels" in problems[0] and "3 file(s)" in problems[0]
    kind, problems = staged_kind(["a.npz", "b.npz"])
    assert kind is None and "one .npz alone" in problems[0]
    kind, problems = staged_kind(["model.safetensors"])
    assert kind is None and "four files" in problems[0]


def test_the_table_lists_builtins_then_uploads_with_class_counts_and_a_delete_button():
    catalog = [
        {"name": "mine", "kind": "upload", "id": "ab" * 32, "train": 90, "test": 30, "input_shape": [1, 4, 4],
         "num_classes": 3, "class_names": ["cat", "dog", "eel"], "class_counts": {"train": [30, 30, 30]},
         "owner": "alice"},
        {"name": "digits", "description": "sklearn digits", "available": True, "train": 1437, "test": 360},
        {"name": "cifar10", "available": False, "train": 50000, "test": 10000},
        {"name": "npz", "description": "Your own data: an .npz file", "available": True, "train": None,
         "test": None, "num_classes": None},  # as the API lists it
    ]
    text = json.dumps(dataset_rows(catalog).to_plotly_json(), default=lambda o: o.to_plotly_json())
    assert text.index('"digits"') < text.index('"mine"')  # built-ins first
    assert "cat: 30, dog: 30, eel: 30" in text and "1 \\u00d7 4 \\u00d7 4" in text
    assert "built-in (files missing)" in text and "alice" in text
    assert text.count('"Delete"') == 1 and "ab" * 32 in text
    # a built-in whose sizes its options set (npz: a file) says so instead of leaving its row blank
    assert text.count("built-in: the file its options name") == 1
    npz = json.dumps(dataset_rows(catalog[-1:]).to_plotly_json(), default=lambda o: o.to_plotly_json())
    assert npz.count("\\u2014") == 4  # train, test, input, classes: a dash each, not a blank


def test_dataset_fields_offer_uploads_by_name_and_disable_missing_builtins():
    options = dataset_options({"datasets": [{"name": "digits"}, {"name": "cifar10", "available": False},
                                            {"name": "mine", "kind": "upload", "train": 90, "test": 30}]})
    by_value = {o["value"]: o for o in options}
    assert by_value["mine"]["label"] == "mine (uploaded: 90 / 30)" and not by_value["mine"]["disabled"]
    assert by_value["cifar10"]["disabled"] and by_value["cifar10"]["label"] == "cifar10 (not installed)"
    assert dataset_options(None) == []


def test_a_family_on_an_uploaded_dataset_is_labelled_with_the_datasets_name():
    from toroid.dashboard.state import families

    sha = "cd" * 32
    minima = [{"id": f"m{i}", "architecture": "mlp", "config": {}, "dataset": "upload", "family": "f",
               "dataset_options": {"sha256": sha}} for i in range(2)]
    assert families(minima, {}, {sha: "lab-scans"})[0]["label"] == "mlp on lab-scans · 2 minima"
    assert families(minima)[0]["label"] == f"mlp on upload {sha[:12]} · 2 minima"
