"""Pages and cheap polls of the list routes (docs/api.md, "Lists: pages and cheap polls") through the real API
(Redis + a Celery worker process + uvicorn + SQLite, a server token and two users): a walk over the pages sees every
record once while records are added, 304 answers while nothing changed and 200 once something did (a new minimum, a
deletion, a rename, a training's progress), ETags that never match another user's request, bad parameters refused
with a 422 that says what is wrong; and the dashboard's idle poll in a real headless Chromium, in bytes."""

from __future__ import annotations

import secrets

import httpx
import pytest

from bench.polls import TARGET_BYTES, idle_poll, make_minima, replay_api_calls, upload_minima, wait_until_idle
from tests.integration.conftest import ApiStack, wait_job
from toroid.store.models import new_id, utcnow
from toroid.store.users import hash_token

pytestmark = pytest.mark.integration

TOKEN = "pages-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
LISTS = ("minima", "jobs", "results", "studies")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Redis, one worker and the API with a server token (reads public); users alice and bob; six minima, each of
    its own family (so the server queues no map distances), evaluated."""
    root = tmp_path_factory.mktemp("pages")
    stack = ApiStack(root / "home", {"TOROID_API_TOKEN": TOKEN}, wait=False)
    try:
        files = make_minima(root, 11, own_families=True)  # while the processes boot
        stack.wait_api()
        stack.users = {}
        with stack.engine.begin() as connection:  # the rows `toroid users add` writes (its token's hash)
            for name in ("alice", "bob"):
                token = secrets.token_urlsafe(32)
                connection.exec_driver_sql(
                    "INSERT INTO users (id, name, role, token_sha256, created_at) VALUES (?, ?, 'user', ?, ?)",
                    (new_id(), name, hash_token(token), utcnow()))
                stack.users[name] = {"Authorization": f"Bearer {token}"}
        stack.spare = files[6:]
        upload_minima(stack.url, files[:6], headers=stack.users["alice"])
        stack.wait_worker()
        wait_until_idle(stack.url, 120, headers=ADMIN)
        yield stack
    finally:
        stack.stop()


def get(stack, path: str, headers: dict | None = None, **params) -> httpx.Response:
    return httpx.get(f"{stack.url}/api/{path}", params=params, headers=headers or ADMIN, timeout=30)


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()]


def walk(stack, path: str, limit: int, between) -> list[str]:
    """The ids of every page of ``path``, following the Link: rel="next" headers; ``between(n)`` after page n."""
    seen, url, pages = [], f"{stack.url}/api/{path}?limit={limit}", 0
    while url:
        page = httpx.get(url, headers=ADMIN, timeout=30)
        seen += ids(page)
        link, cursor = page.headers.get("link"), page.headers.get("x-next-cursor")
        assert (link is None) == (cursor is None) and (link is None or f"after={cursor}" in link)
        between(pages, page)
        pages += 1
        url = f"{stack.url}{link.split('>')[0].lstrip('<')}" if link else None
    return seen


def test_a_walk_over_the_pages_sees_each_record_once_while_minima_are_added(stack):
    before = ids(get(stack, "minima"))
    assert len(before) == 6
    spare = iter(stack.spare)

    def add_one(n: int, page: httpx.Response) -> None:
        if n == 0:
            assert int(page.headers["x-total-count"]) == len(before)
        upload_minima(stack.url, [next(spare)], headers=stack.users["bob"])  # a minimum and its evaluation job

    assert walk(stack, "minima", 2, add_one) == before  # once each, in order: new minima are newer than any cursor
    now = ids(get(stack, "minima"))
    assert len(now) == 9 and now[3:] == before
    jobs_before = ids(get(stack, "jobs", limit=1000))
    assert walk(stack, "jobs", 4, lambda n, page: add_one(1, page) if n < 2 else None) == jobs_before
    assert get(stack, "minima", limit=1000).headers.get("x-next-cursor") is None


def test_an_unchanged_list_answers_304_and_any_change_a_new_etag(stack):
    wait_until_idle(stack.url, 120, headers=ADMIN)
    first = get(stack, "minima")
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "private, no-cache" and "Authorization" in first.headers["vary"]
    unchanged = get(stack, "minima", {**ADMIN, "If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == etag
    assert get(stack, "minima", {**ADMIN, "If-None-Match": f'"other", W/{etag}'}).status_code == 304
    for name in LISTS:
        tag = get(stack, name).headers["etag"]
        assert get(stack, name, {**ADMIN, "If-None-Match": tag}).status_code == 304, name
    # a page has its own ETag, and the CSV table its own
    assert len({get(stack, "minima", limit=2).headers["etag"], etag,
                get(stack, "minima", format="csv").headers["etag"]}) == 3

    victim = ids(first)[-1]
    with stack.engine.begin() as connection:  # a rename, written as any writer of the database would
        connection.exec_driver_sql("UPDATE minima SET name = 'renamed' WHERE id = ?", (victim,))
    renamed = get(stack, "minima", {**ADMIN, "If-None-Match": etag})
    assert renamed.status_code == 200 and renamed.headers["etag"] != etag
    assert {r["id"]: r["name"] for r in renamed.json()}[victim] == "renamed"
    etag = renamed.headers["etag"]
    assert httpx.delete(f"{stack.url}/api/minima/{victim}", headers=ADMIN, timeout=30).status_code == 204
    deleted = get(stack, "minima", {**ADMIN, "If-None-Match": etag})
    assert deleted.status_code == 200 and victim not in ids(deleted)

    # a training: the job list changes while it runs (progress, durations), then stays; a minimum joins
    jobs_etag, minima_etag = get(stack, "jobs").headers["etag"], deleted.headers["etag"]
    job = httpx.post(f"{stack.url}/api/minima/train", headers=stack.users["alice"], timeout=30,
                     json={"config": {"widths": [5]}, "epochs": 3, "name": "fresh"}).json()
    queued = get(stack, "jobs", {**ADMIN, "If-None-Match": jobs_etag})
    assert queued.status_code == 200 and queued.json()[0]["id"] == job["id"]
    assert wait_job(stack.url, job["id"])["state"] == "succeeded"
    wait_until_idle(stack.url, 120, headers=ADMIN)
    done = get(stack, "jobs", {**ADMIN, "If-None-Match": queued.headers["etag"]})
    assert done.status_code == 200 and done.json()[0]["state"] == "succeeded"
    assert get(stack, "jobs", {**ADMIN, "If-None-Match": done.headers["etag"]}).status_code == 304
    joined = get(stack, "minima", {**ADMIN, "If-None-Match": minima_etag})
    assert joined.status_code == 200 and joined.json()[0]["name"] == "fresh"


def test_etags_are_per_user_and_anonymous_reads_follow_the_public_reads_rule(stack):
    tags = {}
    for who, headers in {"admin": ADMIN, **stack.users, "anonymous": {}}.items():
        answer = httpx.get(f"{stack.url}/api/minima", headers=headers, timeout=30)
        assert answer.status_code == 200  # reads are public on this server
        tags[who] = answer.headers["etag"]
    assert len(set(tags.values())) == 4  # the same records, but one user's ETag is never another's
    for who, headers in {**stack.users, "anonymous": {}}.items():
        for other, tag in tags.items():
            status = httpx.get(f"{stack.url}/api/minima", headers={**headers, "If-None-Match": tag}).status_code
            assert status == (304 if other == who else 200), (who, other)
    wrong = httpx.get(f"{stack.url}/api/minima", headers={"Authorization": "Bearer nope", "If-None-Match": "*"})
    assert wrong.status_code == 401  # credentials are checked before any 304


@pytest.mark.parametrize("name", LISTS)
def test_bad_page_parameters_are_refused_with_what_is_wrong(stack, name):
    cases = {"0": "greater than or equal to 1", "-3": "greater than or equal to 1",
             "1001": "less than or equal to 1000", "ten": "valid integer"}
    for limit, words in cases.items():
        answer = get(stack, name, limit=limit)
        assert answer.status_code == 422 and "limit" in answer.json()["message"] and words in answer.text, answer.text
    other = "minima" if name != "minima" else "jobs"
    foreign = get(stack, other, limit=1).headers["x-next-cursor"]
    for cursor, words in {"not-a-cursor": "is not a cursor of this API", "x" * 500: "characters long",
                          foreign: f"is one of GET /api/{other}"}.items():
        answer = get(stack, name, after=cursor)
        assert answer.status_code == 422 and words in answer.json()["detail"], answer.text
        assert "X-Next-Cursor" in answer.json()["detail"]  # and how to fix it


def test_the_dashboard_poll_asks_in_full_only_for_what_an_open_view_lacks(stack):
    """``poll_once`` (dashboard/app.py) against the real API as a signed-in user: an idle poll changes nothing; a
    view that opens asks for the job list in full once even though it did not change; another user's marks never
    earn a 304."""
    from dash import no_update

    from toroid.dashboard.app import poll_once
    from toroid.dashboard.client import ApiClient

    wait_until_idle(stack.url, 120, headers=ADMIN)
    token = {who: h["Authorization"].removeprefix("Bearer ") for who, h in stack.users.items()}
    alice = ApiClient(f"{stack.url}/api", token=token["alice"])
    outputs, marks = poll_once(alice, "map", None)
    assert outputs[0] == get(stack, "minima").json() and outputs[3] is no_update  # the job list: Jobs view only
    assert poll_once(alice, "map", marks)[0] is None  # nothing changed, nothing written
    outputs, opened = poll_once(alice, "jobs", marks)
    assert outputs[0] is no_update and [j["id"] for j in outputs[3]] == ids(get(stack, "jobs"))
    assert opened["jobs"] == marks["jobs"]  # the same list, asked for in full once for the view just opened
    assert poll_once(alice, "jobs", opened)[0] is None and poll_once(alice, "map", opened)[0] is None
    outputs, _ = poll_once(ApiClient(f"{stack.url}/api", token=token["bob"]), "map", opened)
    assert outputs is not None and outputs[0] is no_update  # answered in full (alice's ETags), stores unchanged


def test_an_idle_dashboard_poll_with_40_minima_moves_under_5_kb(stack, browser, tmp_path):
    """Bytes are a property, not a timing: with 40 minima on the server, a poll of the dashboard of a signed-in user
    in which nothing changed moves < 5 KB between the browser and the dashboard (request and response bodies, as
    Chromium counts them), and the dashboard server's own calls to the API answer 304 (docs/dashboard.md,
    "Polling"; ``python -m bench.polls`` measures the same with 500)."""
    have = len(ids(get(stack, "minima")))
    upload_minima(stack.url, make_minima(tmp_path, 40 - have, first_seed=100, own_families=True),
                  headers=stack.users["alice"])
    wait_until_idle(stack.url, 120, headers=ADMIN)
    token = stack.users["alice"]["Authorization"].removeprefix("Bearer ")
    cookie = {"name": "toroid_session", "value": token, "url": stack.url}
    log = stack.home / "logs" / "api.log"
    logged = len(log.read_bytes())
    measured = idle_poll(browser, stack.url, cookies=[cookie], whole_cycle=False)
    assert measured["poll_bytes"] < TARGET_BYTES, measured
    # the dashboard server's own calls during the page's life, as the API logged them: answered 304
    calls = log.read_bytes()[logged:].decode()
    assert '"GET /api/minima HTTP/1.1" 304' in calls and '"GET /api/jobs?limit=100 HTTP/1.1" 304' in calls, calls
    api = replay_api_calls(stack.url, measured["poll_request"], headers=stack.users["alice"])
    assert api["minima"]["records"] == 40 and (api["minima"]["status"], api["jobs"]["status"]) == (304, 304), api
    assert api["without_etag_bytes"] > 4 * TARGET_BYTES  # what each poll moved before, twice (the stores as states)
    other = replay_api_calls(stack.url, measured["poll_request"], headers=stack.users["bob"])
    assert (other["minima"]["status"], other["jobs"]["status"]) == (200, 200)  # the marks are alice's alone
    print(f"idle poll with 40 minima: {measured['poll_bytes']} B browser <-> dashboard, {api['bytes']} B dashboard "
          f"<-> API ({api['without_etag_bytes']} B without ETags)")
