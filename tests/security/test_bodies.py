"""Request bodies under /api on a real stack with a token: refused before they are read when they carry no
credentials (401) or exceed TOROID_MAX_JSON_KB (413, by Content-Length or counted while streaming), refused before
they are parsed when their JSON nests too deep (422), and non-finite numbers answered with a readable 422."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.integration.conftest import ApiStack
from tests.security.stacks import api_only

pytestmark = pytest.mark.integration

TOKEN = "bodies-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
MiB = 2**20


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> ApiStack:
    yield from api_only(tmp_path_factory, "bodies", {"TOROID_API_TOKEN": TOKEN})


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def api_pid(stack: ApiStack) -> int:
    return next(child for child in stack.supervisor.children if child.name == "api").process.pid


def send_and_read_early(url: str, head: str, total: int, first: int = 64 * 1024) -> tuple[bytes, int]:
    """Send the request head and ``first`` bytes of a ``total``-byte body, then read the answer; returns the answer
    and how many body bytes were sent when it arrived. Then sends the rest, as a client that does not listen would."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as sock:
        sock.sendall(head.encode() + f"Content-Length: {total}\r\n\r\n".encode())
        chunk = b" " * first
        sock.sendall(chunk)
        sent = first
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        try:  # the rest of the 50 MB: the server must not keep it
            block = b" " * MiB
            while sent < total:
                sock.sendall(block[: total - sent])
                sent += min(len(block), total - sent)
        except OSError:
            pass  # the server may close the connection once it has answered
        return answer, first


def test_an_anonymous_50_mb_body_is_refused_before_it_is_read(stack):
    pid = api_pid(stack)
    before = rss_kib(pid)
    head = (f"POST /api/minima/train HTTP/1.1\r\nHost: {urlparse(stack.url).netloc}\r\n"
            "Content-Type: application/json\r\n")
    started = time.perf_counter()
    answer, sent = send_and_read_early(stack.url, head, 50 * 10**6)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:300]
    assert sent == 64 * 1024  # the answer came after 64 KiB of the 50 MB
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert "Authorization: Bearer" in body["detail"]
    assert b"www-authenticate: bearer" in answer.lower()
    assert rss_kib(pid) - before < 20 * 1024, (before, rss_kib(pid))  # the 50 MB never landed in the API
    assert time.perf_counter() - started < 30
    assert stack.count("SELECT COUNT(*) FROM jobs") == 0


def test_an_oversized_json_body_is_refused_by_its_length(stack):
    head = (f"POST /api/minima/train HTTP/1.1\r\nHost: {urlparse(stack.url).netloc}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n")
    answer, sent = send_and_read_early(stack.url, head, 50 * 10**6)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    detail = json.loads(answer.split(b"\r\n\r\n", 1)[1])["detail"]
    assert "1024 KiB" in detail and "TOROID_MAX_JSON_KB" in detail


def test_a_streamed_json_body_is_counted(stack):
    """Chunked transfer has no Content-Length: the bytes are counted as they arrive and stop at the limit."""
    def chunks():
        yield b'{"name": "'
        for _ in range(40):  # 2.5 MiB in all
            yield b"x" * 64 * 1024
        yield b'"}'

    response = httpx.post(f"{stack.url}/api/minima/train", content=chunks(), timeout=30,
                          headers={**BEARER, "Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert "TOROID_MAX_JSON_KB" in response.json()["detail"]
    assert stack.count("SELECT COUNT(*) FROM jobs") == 0


def test_bodies_within_the_limits_pass_unchanged(stack):
    body = {"config": {"widths": [8]}, "epochs": 1, "name": "fits"}
    accepted = httpx.post(f"{stack.url}/api/minima/train", json=body, headers=BEARER, timeout=30)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["params"]["name"] == "fits"
    wrong = httpx.post(f"{stack.url}/api/minima/train", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401  # credentials are present: their validity is checked by the route


@pytest.mark.parametrize("levels", [40, 600, 200_000])
def test_deeply_nested_json_is_refused_before_parsing(stack, levels):
    nested = "[" * levels + "]" * levels
    content = '{"config": {"widths": [8]}, "hyperparameters": {"lr": ' + nested + "}}"
    response = httpx.post(f"{stack.url}/api/minima/train", content=content, timeout=30,
                          headers={**BEARER, "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert f"{levels + 2} levels deep; at most 32" in response.json()["detail"]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_get_a_readable_422(stack, value):
    content = '{"minimum_id": "m", "sigmas": [0.1, ' + value + "]}"
    response = httpx.post(f"{stack.url}/api/analyses/flatness", content=content, timeout=30,
                          headers={**BEARER, "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    body = response.json()
    assert "every sigma must be in [0, 10]" in body["message"], body
    assert body["detail"][0]["input"][1] in ("nan", "inf", "-inf"), body


def test_a_lone_surrogate_gets_a_422_not_a_500(stack):
    """JSON may escape half a UTF-16 pair ("\\ud800"): Python decodes it to a string UTF-8 cannot carry."""
    response = httpx.post(f"{stack.url}/api/minima/train", content=b'{"name": "x\\ud800", "epochs": 1}',
                          headers={**BEARER, "Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 422, response.text
    assert "name" in response.json()["message"]
