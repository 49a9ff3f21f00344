"""HTTP side of the list routes' pages and cheap polls (docs/api.md, "Lists: pages and cheap polls"): the query
parameters ``limit`` and ``after``, the headers ``X-Total-Count``, ``X-Next-Cursor`` and ``Link: rel="next"``, and
the ETag with its 304 answer to ``If-None-Match``.

The ETag is an HMAC (keyed by the server's ``TOROID_API_TOKEN``, so replicas of one server agree and nobody can
forge another's) of who asks (role and name), the request's path and query, and the page's fingerprint
(``toroid.backend.services.pages``): it changes whenever the answer changes, one user's ETag never matches another
user's request, and it says nothing about the data or the user. Answers are ``Cache-Control: private, no-cache``
and ``Vary: Authorization, Cookie``: no shared cache may keep them, and a browser revalidates each time.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import Query, Request, Response

from toroid.backend.services.pages import MAX_LIMIT, Page
from toroid.store.settings import get_settings
from toroid.store.users import Principal

#: Answers of the list routes besides 200 (documented in the OpenAPI schema).
LIST_RESPONSES: dict[int | str, dict] = {
    304: {"description": "Not Modified: the If-None-Match ETag is the answer's current one (empty body)"},
    422: {"description": "limit outside 1-1000, or a malformed cursor (after); `detail` says which"},
}
LIMIT_DOC = f"At most this many records (1-{MAX_LIMIT}); the X-Next-Cursor header then names the next page."
AFTER_DOC = "The cursor of the next page: the X-Next-Cursor header of the previous page, unchanged."


def after_query() -> str | None:
    return Query(None, description=AFTER_DOC)


def limit_query(default: int | None = None) -> int | None:
    return Query(default, ge=1, le=MAX_LIMIT, description=LIMIT_DOC)


@dataclass
class Conditional:
    """The page of one request with its ETag: answer 304 when the client has it, else add the headers."""

    request: Request
    page: Page
    etag: str

    @classmethod
    def of(cls, request: Request, principal: Principal, page: Page, fingerprint: str) -> Conditional:
        return cls(request, page, etag_of(request, principal, fingerprint))

    @property
    def not_modified(self) -> bool:
        wanted = self.request.headers.get("if-none-match")
        if not wanted:
            return False
        tags = {t.strip().removeprefix("W/") for t in wanted.split(",")}
        return "*" in tags or self.etag in tags

    def unchanged(self) -> Response:
        """The 304 answer: no body, the same ETag and caching headers."""
        response = Response(status_code=304)
        self.decorate(response, with_page=False)
        return response

    def decorate(self, response: Response, *, with_page: bool = True) -> Response:
        headers = response.headers
        headers["ETag"] = self.etag
        headers["Cache-Control"] = "private, no-cache"
        headers["Vary"] = "Authorization, Cookie"
        if with_page:
            headers["X-Total-Count"] = str(self.page.total)
            if self.page.next_cursor is not None:
                headers["X-Next-Cursor"] = self.page.next_cursor
                query = [(k, v) for k, v in self.request.query_params.multi_items() if k != "after"]
                link = f"{self.request.url.path}?{urlencode([*query, ('after', self.page.next_cursor)])}"
                headers["Link"] = f'<{link}>; rel="next"'
        return response


def etag_of(request: Request, principal: Principal, fingerprint: str) -> str:
    key = (get_settings().api_token or "toroid").encode()
    query = sorted(request.query_params.multi_items())
    message = repr((principal.role, principal.name, request.url.path, query, fingerprint)).encode()
    return f'"{hmac.new(key, message, hashlib.sha256).hexdigest()[:32]}"'
