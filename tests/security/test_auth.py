"""A shared server: tokens per user, owners, and a dashboard that never acts with more rights than its user.

Findings reproduced against the real stack (Redis, a Celery worker, uvicorn, Chromium), then shown fixed:
1. the dashboard acted with the server's own token: an anonymous ``POST /dashboard/_dash-update-component`` with
   the train form's callback queued a training job; with ``TOROID_PUBLIC_READS=false`` the polling callback
   returned every minimum and job to an anonymous caller; opening /dashboard/ anonymously queued a distances job;
11. an anonymous ``GET .../checkpoint?form=canonical`` computed and wrote a file and a row.
And the new rules: a user deletes and cancels only what they own, an admin all; tokens are stored hashed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.integration.conftest import ApiStack
from toroid.store.artifacts import state_dict_bytes

pytestmark = pytest.mark.browser

ADMIN = "admin-token-for-tests-0123456789"
CONFIG = {"widths": [16]}


def add_user(stack: ApiStack, name: str, *flags: str) -> str:
    done = subprocess.run([sys.executable, "-m", "toroid.cli", "users", "add", name, *flags], env=stack.env,
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def upload(stack: ApiStack, token: str, seed: int, name: str) -> str:
    from toroid.worker.landscape import build_model, load_dataset

    model = build_model("mlp", CONFIG, load_dataset("digits"), seed=seed)
    response = httpx.post(f"{stack.url}/api/minima", headers=bearer(token), timeout=60,
                          files={"file": (f"{name}.safetensors", state_dict_bytes(model.state_dict()))},
                          data={"architecture": "mlp", "config": json.dumps(CONFIG), "dataset": "digits",
                                "name": name})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def jobs_count(stack: ApiStack) -> int:
    """Jobs in the ledger, once the server's own work (the map's distances after uploads) has settled."""
    deadline = time.monotonic() + 60
    while stack.count("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')") and time.monotonic() < deadline:
        time.sleep(0.2)
    return stack.count("SELECT COUNT(*) FROM jobs")


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    """A server with an admin token and private reads, two users and two minima of alice's."""
    stack = ApiStack(tmp_path_factory.mktemp("private") / "home",
                     {"TOROID_API_TOKEN": ADMIN, "TOROID_PUBLIC_READS": "false", "TOROID_DEMO": "false"})
    try:
        stack.wait_worker()
        stack.tokens = {"alice": add_user(stack, "alice"), "bob": add_user(stack, "bob")}
        stack.minima = [upload(stack, stack.tokens["alice"], seed, f"alice-{seed}") for seed in (0, 1)]
        yield stack
    finally:
        stack.stop()


def test_tokens_are_stored_hashed_and_name_their_user(private):
    alice = private.tokens["alice"]
    assert private.count("SELECT COUNT(*) FROM users WHERE token_sha256 = :t", t=alice) == 0  # never in clear
    me = httpx.get(f"{private.url}/api/session", headers=bearer(alice)).json()
    assert me == {"auth": True, "public_reads": False, "user": "alice", "role": "user"}
    assert httpx.get(f"{private.url}/api/session").json()["role"] == "anonymous"
    wrong = httpx.get(f"{private.url}/api/minima", headers=bearer("nope"))
    assert wrong.status_code == 401 and "wrong" in wrong.json()["detail"]


def test_owners_and_roles(private):
    url, alice, bob = private.url, private.tokens["alice"], private.tokens["bob"]
    records = {m["id"]: m for m in httpx.get(f"{url}/api/minima", headers=bearer(bob)).json()}
    assert {records[i]["owner"] for i in private.minima} == {"alice"}
    job = httpx.post(f"{url}/api/minima/train", headers=bearer(alice), json={
        "config": CONFIG, "epochs": 2000, "seed": 5, "name": "alice-long"}).json()
    assert job["owner"] == "alice"
    for path in (f"/api/jobs/{job['id']}/cancel",):
        assert httpx.post(f"{url}{path}").status_code == 401  # anonymous
        refused = httpx.post(f"{url}{path}", headers=bearer(bob))
        assert refused.status_code == 403 and "alice" in refused.json()["detail"]
    assert httpx.post(f"{url}/api/jobs/{job['id']}/cancel", headers=bearer(alice)).json()["state"] == "cancelled"
    target = private.minima[1]
    refused = httpx.delete(f"{url}/api/minima/{target}", headers=bearer(bob))
    assert refused.status_code == 403 and "alice" in refused.json()["detail"]
    assert httpx.get(f"{url}/api/minima/{target}", headers=bearer(bob)).status_code == 200  # still there
    own = upload(private, bob, 7, "bob-7")
    assert httpx.delete(f"{url}/api/minima/{own}", headers=bearer(bob)).status_code == 204
    admin_made = upload(private, ADMIN, 8, "admin-8")
    assert httpx.delete(f"{url}/api/minima/{admin_made}", headers=bearer(ADMIN)).status_code == 204


def test_canonical_form_is_not_computed_for_anonymous_readers(tmp_path_factory):
    stack = ApiStack(tmp_path_factory.mktemp("public") / "home", {"TOROID_API_TOKEN": ADMIN}, worker=False)
    try:
        minimum = upload(stack, ADMIN, 0, "m")
        before = sorted(p.name for p in (stack.home / "artifacts").rglob("*") if p.is_file())
        anonymous = httpx.get(f"{stack.url}/api/minima/{minimum}/checkpoint", params={"form": "canonical"})
        assert anonymous.status_code == 401 and "sign in" in anonymous.json()["detail"]
        assert sorted(p.name for p in (stack.home / "artifacts").rglob("*") if p.is_file()) == before
        assert stack.count("SELECT COUNT(*) FROM minima WHERE canonical_sha256 IS NOT NULL") == 0
        signed = httpx.get(f"{stack.url}/api/minima/{minimum}/checkpoint", params={"form": "canonical"},
                           headers=bearer(ADMIN))
        assert signed.status_code == 200 and len(signed.content) > 100
        again = httpx.get(f"{stack.url}/api/minima/{minimum}/checkpoint", params={"form": "canonical"})
        assert again.status_code == 200 and again.content == signed.content  # stored once: now a plain read
    finally:
        stack.stop()


def _callbacks(page) -> list[dict]:
    """Record the dashboard's callback requests (their JSON bodies) as the page makes them."""
    seen: list[dict] = []

    def record(request) -> None:
        if "_dash-update-component" in request.url and request.method == "POST":
            seen.append(json.loads(request.post_data_buffer or b"{}"))

    page.on("request", record)
    return seen


def _with_output(seen: list[dict], fragment: str) -> dict:
    for body in seen:
        if fragment in json.dumps(body.get("output", "")):
            return body
    raise AssertionError(f"no callback with output {fragment!r} among {[b.get('output') for b in seen]}")


def test_the_dashboard_acts_with_its_users_token_never_the_servers(private, browser):
    url = private.url
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    try:
        # anonymous, private reads: the page offers only a way in, and loading it changes nothing
        before = jobs_count(private)
        page.goto(f"{url}/dashboard/")
        page.wait_for_selector("text=Sign in to see this server's minima", timeout=30_000)
        page.wait_for_timeout(3000)
        assert jobs_count(private) == before

        # sign in as bob through the page; the cookie is HttpOnly and SameSite=Strict
        page.goto(f"{url}/login")
        page.fill("#token", "wrong")
        page.click("button[type=submit]")
        page.wait_for_selector("text=That token is not valid", timeout=10_000)
        page.fill("#token", private.tokens["bob"])
        seen = _callbacks(page)
        page.click("button[type=submit]")
        page.wait_for_selector("text=bob (user)", timeout=30_000)
        cookie = next(c for c in context.cookies() if c["name"] == "toroid_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

        # bob's dashboard trains as bob
        page.locator("#tabs").get_by_text("Add minima", exact=True).click()
        page.click("#train-submit")
        deadline = time.monotonic() + 30
        while private.count("SELECT COUNT(*) FROM jobs WHERE owner = 'bob' AND kind = 'train'") == 0:
            assert time.monotonic() < deadline, "the signed-in train form queued nothing"
            page.wait_for_timeout(200)  # (lets Playwright deliver the page's request events meanwhile)
        page.wait_for_timeout(500)
        train_call = _with_output(seen, "train-message")
        poll_call = _with_output(seen, "jobs-badge")

        # the same callbacks replayed by an anonymous caller: nothing is queued, nothing is read
        before = jobs_count(private)
        replay = httpx.post(f"{url}/dashboard/_dash-update-component", json=train_call, timeout=30)
        assert replay.status_code == 200 and "token" in replay.text  # the form shows the API's 401 message
        assert jobs_count(private) == before
        poll = httpx.post(f"{url}/dashboard/_dash-update-component", json=poll_call, timeout=30)
        assert poll.status_code == 204 or "alice-0" not in poll.text  # no minimum reaches an anonymous caller
        with_cookie = httpx.post(f"{url}/dashboard/_dash-update-component", json=poll_call, timeout=30,
                                 cookies={"toroid_session": private.tokens["bob"]})
        assert with_cookie.status_code == 200 and "alice-0" in with_cookie.text  # bob may read

        # the upload form's layout panel (a read of the registry) follows the same rule
        layout_call = _with_output(seen, "upload-layout.data-state")
        anonymous = httpx.post(f"{url}/dashboard/_dash-update-component", json=layout_call, timeout=30)
        assert "weight" not in anonymous.text and "token" in anonymous.text, anonymous.text[:500]
        signed = httpx.post(f"{url}/dashboard/_dash-update-component", json=layout_call, timeout=30,
                            cookies={"toroid_session": private.tokens["bob"]})
        assert signed.status_code == 200 and ".weight" in signed.text, signed.text[:500]

        page.screenshot(path=str(private.home / "signed-in.png"))
        target = os.environ.get("TOROID_SCREENSHOTS")
        if target:
            page.screenshot(path=os.path.join(target, "signed-in.png"))
        page.click("text=Sign out")
        page.wait_for_selector("#token", timeout=10_000)
    finally:
        context.close()


def test_the_sign_in_form_refuses_oversized_and_wrong_input(private):
    url = private.url
    huge = httpx.post(f"{url}/login", content=b"token=" + b"x" * 100_000, timeout=30,
                      headers={"Content-Type": "application/x-www-form-urlencoded"}, follow_redirects=False)
    assert huge.status_code == 413 and "toroid_session" not in huge.headers.get("set-cookie", "")
    for body in (b"", b"token=", b"token=%00%ff", b"nothing=here"):
        refused = httpx.post(f"{url}/login", content=body, follow_redirects=False,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert refused.status_code == 401 and "set-cookie" not in refused.headers, body
    accepted = httpx.post(f"{url}/login", data={"token": private.tokens["alice"]}, follow_redirects=False)
    assert accepted.status_code == 303 and "HttpOnly" in accepted.headers["set-cookie"]
    assert "SameSite=strict" in accepted.headers["set-cookie"] or "SameSite=Strict" in accepted.headers["set-cookie"]
