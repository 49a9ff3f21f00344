"""A map beyond the old 32-minimum limit, through the real stack (Redis, a Celery worker, the API): 34 distinct
minima of one family uploaded one after another are laid out by distance (GET /api/map: MDS, nothing pending) from
the server's own family job, aligned to a common reference (``TOROID_MAP_PAIRWISE_MAX=4`` here, so the family
passes it; docs/method.md §5 "Many minima"); a shuffled copy of a minimum is at distance ~0 from it in that frame
and pair by pair; one more minimum costs one new row (34 pairs computed, the rest reused); and what a user may ask
is bounded with messages that say how (pairwise beyond 64 minima, more than 2,000, an unknown alignment)."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import torch

from tests.integration.conftest import ApiStack, wait_job
from toroid.worker.landscape import build_model, load_dataset
from toroid.worker.landscape.io import state_dict_bytes

pytestmark = pytest.mark.integration

CONFIG = {"widths": [16]}
COUNT = 33


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    stack = ApiStack(tmp_path_factory.mktemp("map-many") / "home", {"TOROID_MAP_PAIRWISE_MAX": "4"}, wait=False)
    try:
        request.getfixturevalue("models")  # trained while the processes boot
        stack.wait_api()
        stack.wait_worker()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def models() -> list[torch.nn.Module]:
    """COUNT + 1 tiny digits MLPs (their own initializations, one epoch of SGD) and a copy of the first with its
    hidden units shuffled (the same function: distance 0 once aligned)."""
    torch.set_num_threads(1)
    data = load_dataset("digits")
    out = []
    for seed in range(COUNT + 1):
        torch.manual_seed(seed)
        model = build_model("mlp", CONFIG, data, seed=seed)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for start in range(0, len(data.x_train), 128):
            optimizer.zero_grad()
            x, y = data.x_train[start:start + 128], data.y_train[start:start + 128]
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        out.append(model.eval())
    shuffled = build_model("mlp", CONFIG, data, seed=0)
    shuffled.load_state_dict(out[0].state_dict())
    first, last = [m for m in shuffled.modules() if isinstance(m, torch.nn.Linear)][:2]
    perm = torch.randperm(CONFIG["widths"][0], generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        first.weight.copy_(first.weight[perm])
        first.bias.copy_(first.bias[perm])
        last.weight.copy_(last.weight[:, perm])
    return [*out[:COUNT], shuffled, out[COUNT]]


def upload(url: str, model: torch.nn.Module, name: str) -> dict:
    reply = httpx.post(f"{url}/api/minima", files={"file": (f"{name}.safetensors", state_dict_bytes(model))},
                       data={"architecture": "mlp", "config": json.dumps(CONFIG), "dataset": "digits", "name": name},
                       timeout=60)
    assert reply.status_code == 201, reply.text
    return reply.json()


def laid_out(url: str, family: str, count: int, timeout_s: float = 180) -> dict:
    """GET /api/map until it places ``count`` minima by MDS with none pending."""
    deadline = time.monotonic() + timeout_s
    answer: dict = {}
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/api/map", params={"family": family}, timeout=60).json()
        if answer.get("method") in ("classical", "smacof") and not answer["pending"] and len(answer["ids"]) == count:
            return answer
        time.sleep(0.5)
    raise AssertionError(f"the map of {count} minima is not laid out after {timeout_s} s: "
                         f"{ {k: answer.get(k) for k in ('method', 'pending', 'result_id')} }")


def result(url: str, result_id: str) -> dict:
    return httpx.get(f"{url}/api/results/{result_id}", timeout=60).json()["data"]


@pytest.fixture(scope="module")
def family(stack, models) -> dict:
    records = [upload(stack.url, m, f"m{k:02d}") for k, m in enumerate(models[:COUNT])]
    records.append(upload(stack.url, models[COUNT], "m00-shuffled"))
    answer = laid_out(stack.url, records[0]["family"], COUNT + 1)
    return {"records": records, "map": answer, "family": records[0]["family"]}


def test_a_family_beyond_32_is_laid_out_by_distance_to_a_common_reference(stack, family):
    answer = family["map"]
    assert answer["alignment"] == "reference"
    assert answer["reference"]["id"] == family["records"][0]["id"]  # the oldest minimum
    assert answer["stress"] is not None and 0 <= answer["stress"] < 1
    ids = sorted(r["id"] for r in family["records"])
    assert answer["ids"] == ids
    data = result(stack.url, answer["result_id"])
    assert data["alignment"] == "reference" and data["ids"] == ids
    original, copy = ids.index(family["records"][0]["id"]), ids.index(family["records"][-1]["id"])
    for metric in ("geodesic", "aligned", "normalized_aligned"):  # the shuffled copy aligns back onto the original
        assert data["matrices"][metric][original][copy] == pytest.approx(0.0, abs=1e-5), metric
    assert data["matrices"]["raw"][original][copy] > 1e-3  # unaligned, the copy is elsewhere
    other = next(i for i in range(len(ids)) if i not in (original, copy))
    assert data["matrices"]["geodesic"][original][other] > 1.0
    # a user asking for the same matrix gets the family's result: the request limit is not 32 any more
    asked = httpx.post(f"{stack.url}/api/analyses/distances", json={"minimum_ids": ids, "alignment": "reference"},
                       timeout=60)
    assert asked.status_code == 200, asked.text
    assert asked.json()["result"]["id"] == answer["result_id"]


def test_the_exact_pairwise_distance_of_a_pair_on_demand(stack, family):
    a, b = family["records"][0]["id"], family["records"][-1]["id"]
    asked = httpx.post(f"{stack.url}/api/analyses/distances", json={"minimum_ids": [a, b]}, timeout=60)
    assert asked.status_code == 202, asked.text
    job = wait_job(stack.url, asked.json()["job"]["id"])
    assert job["state"] == "succeeded", job
    data = result(stack.url, job["result_id"])
    assert data["alignment"] == "pairwise"
    assert data["matrices"]["geodesic"][0][1] == pytest.approx(0.0, abs=1e-5)


def test_one_more_minimum_costs_one_row(stack, models, family):
    added = upload(stack.url, models[-1], "m-late")
    answer = laid_out(stack.url, family["family"], COUNT + 2)
    data = result(stack.url, answer["result_id"])
    n = COUNT + 2
    assert data["computed_pairs"] == n - 1  # the new minimum's row
    assert data["reused_pairs"] == (n - 1) * (n - 2) // 2
    row = data["ids"].index(added["id"])
    assert all(data["matrices"]["geodesic"][row][j] > 0 for j in range(n) if j != row)


def test_what_a_user_may_ask_is_bounded_and_says_how(stack, family):
    ids = [r["id"] for r in family["records"]]
    url = f"{stack.url}/api/analyses/distances"
    too_many_pairs = httpx.post(url, json={"minimum_ids": ids * 2}, timeout=60)  # 66 ids, repeated
    assert too_many_pairs.status_code == 422
    assert "reference" in too_many_pairs.text and "64" in too_many_pairs.text
    over = httpx.post(url, json={"minimum_ids": [f"x{k}" for k in range(2001)], "alignment": "reference"},
                      timeout=60)
    assert over.status_code in (413, 422) and ("2000" in over.text or "too large" in over.text.lower())
    wrong = httpx.post(url, json={"minimum_ids": ids[:2], "alignment": "barycenter"}, timeout=60)
    assert wrong.status_code == 422 and "pairwise" in wrong.text
    repeated = httpx.post(url, json={"minimum_ids": ids + ids[:1], "alignment": "reference"}, timeout=60)
    assert repeated.status_code == 422 and "repeat" in repeated.text.lower()
    unknown = httpx.post(url, json={"minimum_ids": ["nope", ids[0]], "alignment": "reference"}, timeout=60)
    assert unknown.status_code == 404
