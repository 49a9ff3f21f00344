"""The dashboard's own small HTTP client for the Toroid API (the dashboard never imports backend code).

One method per route the dashboard uses (see the API's OpenAPI page at /docs). Errors become :class:`ApiError` whose
``message`` is the backend's own ``detail``, shown verbatim in the UI. Result records are immutable (keyed by a hash
of their inputs), so :meth:`ApiClient.result` keeps the most recent ones in memory: figures re-render from the cache
without another round trip.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx


class ApiError(RuntimeError):
    """An API answer with status >= 400 (or no answer: status 0); ``message`` is the explanation, shown verbatim.

    ``body`` is the answer's JSON body when it had one (else None): what the API says beside ``detail``, e.g. the
    ``key_map`` it proposes for an upload whose keys differ from the architecture's (docs/api.md, upload).
    """

    def __init__(self, status: int, message: str, body: Any = None):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body


def format_detail(detail: Any) -> str:
    """FastAPI's ``detail``: a string as is; a validation error list as 'field: message' lines joined by '; '."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p not in ("body", "query", "path"))
                msg = item.get("msg", str(item))
                parts.append(f"{loc}: {msg}" if loc else str(msg))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


class ApiClient:
    """HTTP client of the Toroid API at ``base_url`` (ending in /api).

    ``token_provider``: called for every request, it returns the token of the user the request acts for (the
    dashboard mounted in the server reads the browser's session cookie), so each call carries that user's
    credentials and no one else's. Without it, the fixed ``token`` (default ``TOROID_API_TOKEN``) is sent: for a
    dashboard run on its own for one person.
    """

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0, cache_size: int = 128,
                 token_provider: Callable[[], str | None] | None = None):
        self.base_url = base_url.rstrip("/")
        if token_provider is None:
            fixed = token if token is not None else os.environ.get("TOROID_API_TOKEN")
            token_provider = lambda: fixed  # noqa: E731
        self._token = token_provider
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._results: OrderedDict[tuple[str, str], dict] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _headers(self) -> dict[str, str]:
        token = self._token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._body(self._send(method, path, **kwargs))

    def _send(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, headers={**self._headers(), **(headers or {})}, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach the API at {self.base_url}: {exc}") from exc
        return response

    def _body(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            body = None
            try:
                body = response.json()
                detail = body.get("detail", response.text) if isinstance(body, dict) else response.text
                if not isinstance(detail, str) and isinstance(body, dict) and isinstance(body.get("message"), str):
                    detail = body["message"]  # the API's one-line form of a validation error list
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, format_detail(detail), body)
        if response.status_code == 204 or not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def get_if_changed(self, path: str, etag: str | None, **params: Any) -> tuple[Any, str | None] | None:
        """GET with ``If-None-Match: etag`` (docs/api.md, "Lists: pages and cheap polls"): None when the API answers
        304 (the answer ``etag`` names is still current; nothing was sent), else the body and its new ETag. The ETag
        is the user's own: the API never matches it for a request with other credentials."""
        response = self._send("GET", path, headers={"If-None-Match": etag} if etag else None,
                              params={k: v for k, v in params.items() if v is not None})
        if response.status_code == 304:
            return None
        return self._body(response), response.headers.get("etag")

    def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return self._request("POST", path, json=json, **kwargs)

    def delete(self, path: str) -> Any:
        return self._request("DELETE", path)

    # --- system and registries -------------------------------------------------------------------------------------
    def health(self) -> dict:
        """GET /api/health: its body also when it answers 503 (a component is down: the body says which)."""
        try:
            response = self._http.get("/health", headers=self._headers())
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach the API at {self.base_url}: {exc}") from exc
        if response.status_code not in (200, 503):
            raise ApiError(response.status_code, response.text[:200])
        return response.json()

    def architectures(self) -> list[dict]:
        return self.get("/architectures")

    def datasets(self) -> list[dict]:
        return self.get("/datasets")

    def samplers(self) -> list[dict]:
        return self.get("/samplers")

    def architecture_layout(self, name: str, dataset: str, config: str = "{}", dataset_options: str = "{}") -> dict:
        """GET /api/architectures/{name}/layout: the keys, shapes and dtypes an upload of ``name`` on ``dataset`` must
        hold, with its input shape, classes and parameter count (``config``/``dataset_options``: JSON text)."""
        if name.strip(".") == "":  # '.' and '..' would walk the URL path instead of naming an architecture
            raise ApiError(422, f"unknown architecture {name!r}")
        return self.get(f"/architectures/{quote(name, safe=':')}/layout", dataset=dataset, config=config,
                        dataset_options=dataset_options)

    # --- minima ----------------------------------------------------------------------------------------------------
    def minima(self) -> list[dict]:
        return self.get("/minima")

    def upload_minimum(
        self,
        filename: str,
        content: bytes,
        *,
        sidecar: tuple[str, bytes] | None = None,
        fields: dict[str, str] | None = None,
        key_map: str | None = None,
    ) -> dict:
        """POST /api/minima (multipart): the checkpoint, plus either the sidecar JSON or the form ``fields``.

        ``key_map``: ``"auto"`` accepts the renaming of keys the API proposed in its 422 (``ApiError.body``), or a
        JSON object of one's own (docs/api.md, upload)."""
        files: dict[str, tuple[str, bytes, str]] = {"file": (filename, content, "application/octet-stream")}
        if sidecar is not None:
            files["sidecar"] = (sidecar[0], sidecar[1], "application/json")
        data = {k: v for k, v in {**(fields or {}), "key_map": key_map}.items() if v not in (None, "")}
        return self._request("POST", "/minima", files=files, data=data)

    def upload_dataset(self, name: str, files: list[tuple[str, bytes]]) -> dict:
        """POST /api/datasets (multipart): one .npz as ``file``, or the four IDX files as ``files`` (docs/data.md)."""
        if len(files) == 1:
            parts: Any = {"file": (files[0][0], files[0][1], "application/octet-stream")}
        else:
            parts = [("files", (n, content, "application/octet-stream")) for n, content in files]
        return self._request("POST", "/datasets", files=parts, data={"name": name})

    def delete_dataset(self, dataset: str) -> None:
        """DELETE /api/datasets/{id or name} (409 while a minimum uses it)."""
        self._request("DELETE", f"/datasets/{dataset}")

    def train(self, request: dict) -> dict:
        """POST /api/minima/train -> the job record of the training run."""
        return self.post("/minima/train", request)

    def delete_minimum(self, minimum_id: str) -> None:
        self.delete(f"/minima/{minimum_id}")

    # --- analyses, jobs, results -----------------------------------------------------------------------------------
    def analyze(self, kind: str, request: dict) -> dict:
        """POST /api/analyses/<kind>: {"cached": true, "job", "result"} or {"cached": false, "job"}."""
        return self.post(f"/analyses/{kind}", request)

    def lookup(self, kind: str, params: dict) -> dict:
        """GET /api/analyses/<kind>: the same answer as POST for a computation done or in flight, else 404; it
        never queues anything (what a page load may do)."""
        return self.get(f"/analyses/{kind}", **params)

    def jobs(self, limit: int = 100, state: str | None = None, kind: str | None = None) -> list[dict]:
        return self.get("/jobs", limit=limit, state=state, kind=kind)

    def job(self, job_id: str) -> dict:
        return self.get(f"/jobs/{job_id}")

    def cancel_job(self, job_id: str) -> dict:
        return self.post(f"/jobs/{job_id}/cancel")

    def map(self, family: str, metric: str = "geodesic") -> dict:
        """GET /api/map: the map of one family (its ``family`` key): ids, x, y, the MDS method, stress-1 and the
        share of variance in two dimensions, the pending ids and the distances result it comes from."""
        return self.get("/map", family=family, metric=metric)

    def map_csv(self, family: str, metric: str = "geodesic") -> str:
        """GET /api/map?format=csv: the map's coordinates as CSV (id, name, sampler, x, y, train_error, test_error)."""
        return self.get("/map", family=family, metric=metric, format="csv")

    def session(self) -> dict:
        """GET /api/session: whether the server needs tokens, and who this client acts as."""
        return self.get("/session")

    def result(self, result_id: str) -> dict:
        """GET /api/results/{id}, from memory when the same credentials asked before (results never change; the
        memory is per token, so a record read by one user is never handed to another)."""
        token = self._token() or ""
        key = (hashlib.sha256(token.encode()).hexdigest() if token else "", result_id)
        with self._lock:
            cached = self._results.get(key)
            if cached is not None:
                self._results.move_to_end(key)
                return cached
        record = self.get(f"/results/{result_id}")
        with self._lock:
            self._results[key] = record
            while len(self._results) > self._cache_size:
                self._results.popitem(last=False)
        return record
