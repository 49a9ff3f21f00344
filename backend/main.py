"""The FastAPI application factory: JSON API under /api, the Dash UI mounted under /dashboard, the API's pages at
/docs and /redoc (their scripts served by this server, so they work offline).

Before a route runs, ``RequestGuard`` (pure ASGI) looks at each /api request: a mutating request without any
credentials on a server that needs them gets 401, and a body other than a checkpoint upload gets 413 above
``TOROID_MAX_JSON_KB`` (by its Content-Length, or counted while it streams in) and 422 when its JSON nests deeper
than ``toroid.store.text.MAX_JSON_DEPTH``, all before a byte of it is parsed.
"""

from __future__ import annotations

import math
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import toroid
from toroid.backend.api import analyses, datasets, demo, health, jobs, maps, minima, registry, results, session, studies
from toroid.store.db import init_db
from toroid.store.errors import Invalid, ToroidError
from toroid.store.settings import Settings, get_settings
from toroid.store.text import check_json_text, relative_paths

DASHBOARD_PREFIX = "/dashboard/"
#: Methods that change data: without credentials they are refused before their body is read.
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: The dashboard's session cookie (``toroid.backend.auth.SESSION_COOKIE``).
SESSION_COOKIE = "toroid_session"
#: Routes whose multipart body streams in under its own limit (checkpoints: TOROID_MAX_UPLOAD_MB; datasets:
#: TOROID_MAX_DATASET_MB).
STREAMED_UPLOADS = frozenset({"/api/minima", "/api/datasets"})
#: Where this server serves the files of Swagger UI (/docs) and ReDoc (/redoc): the package fastapi-offline ships
#: them, so the API's pages work on a machine without internet (FastAPI's own pages load them from a CDN).
DOCS_ASSETS = "/static/docs"
#: The docs pages may load only from this server (ReDoc's sidebar would fetch its maker's logo from a CDN).
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'")


def create_app(*, with_dashboard: bool = True) -> FastAPI:
    settings = get_settings()
    settings.ensure_dirs()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        init_db()
        yield

    app = FastAPI(
        title="Toroid",
        version=toroid.__version__,
        description="Error landscapes of neural networks without symmetries (Pittorino et al., ICML 2022).",
        lifespan=lifespan,
        docs_url=None,  # served from this server's own files below (_serve_api_docs), never from a CDN
        redoc_url=None,
    )
    for module in (health, session, registry, datasets, minima, analyses, jobs, results, demo, studies, maps):
        app.include_router(module.router, prefix="/api")
    app.include_router(session.pages)
    _serve_api_docs(app)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ToroidError, _domain_error)
    app.add_middleware(RequestGuard, settings=settings)
    _declare_optional_auth(app, settings)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(DASHBOARD_PREFIX if with_dashboard else "/docs")

    if with_dashboard:
        from a2wsgi import WSGIMiddleware

        from toroid.dashboard.app import create_dash, session_token

        api_url = settings.dashboard_api_url or f"{_local_base_url(settings)}/api"
        dash_app = create_dash(api_url=api_url, prefix=DASHBOARD_PREFIX, public_api_url=settings.public_api_url,
                               token_provider=session_token)
        app.mount(DASHBOARD_PREFIX.rstrip("/"), WSGIMiddleware(dash_app.server))
    return app


def _serve_api_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc (ReDoc) with their scripts, styles and icon from ``DOCS_ASSETS``: nothing on
    these pages is fetched from another host (Swagger UI's online validator badge is off, and ``DOCS_CSP`` keeps
    the browser from asking any other host)."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} API",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} API", with_google_fonts=False,
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page


def _local_base_url(settings: Settings) -> str:
    """This server as its own dashboard reaches it: the host and port it listens on (``toroid api`` puts the port
    it bound into the settings); a wildcard address is reached over the loopback interface."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(settings.host, settings.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"


class RequestGuard:
    """Refuses, before the body is read or parsed, what no /api route should read: a mutating request without
    credentials where the server needs them (401; the auth dependencies still check the credentials' validity
    later), and a body other than a streamed checkpoint upload that exceeds ``TOROID_MAX_JSON_KB`` (413) or nests
    its JSON deeper than ``MAX_JSON_DEPTH`` (422). An accepted body is read once here and handed on unchanged."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["method"] in MUTATING and self.settings.api_token and not _has_credentials(headers):
            await _refuse(scope, receive, send, 401, (
                "this request changes data and needs an API token: send 'Authorization: Bearer <token>' "
                "(TOROID_API_TOKEN, or a user's token from `toroid users add`)"), {"WWW-Authenticate": "Bearer"})
            return
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        streamed = media_type == "multipart/form-data" and scope["path"].rstrip("/") in STREAMED_UPLOADS
        if streamed or not (headers.get("content-length", "0").strip() not in ("", "0")
                            or "transfer-encoding" in headers):
            await self.app(scope, receive, send)
            return
        limit = self.settings.max_json_kb * 1024
        too_large = (f"the request body exceeds the limit of {self.settings.max_json_kb} KiB for JSON bodies "
                     "(TOROID_MAX_JSON_KB); checkpoints go to POST /api/minima as multipart/form-data")
        declared = headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            await _refuse(scope, receive, send, 413, too_large)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nobody to answer
            body += message.get("body", b"")
            if len(body) > limit:
                await _refuse(scope, receive, send, 413, too_large)
                return
            if not message.get("more_body", False):
                break
        if media_type in ("", "application/json") or media_type.endswith("+json"):
            try:  # a large body is scanned off the event loop (tens of milliseconds per MiB)
                if len(body) > 64 * 1024:
                    await run_in_threadpool(check_json_text, bytes(body), "the JSON body")
                else:
                    check_json_text(body, "the JSON body")
            except Invalid as exc:
                await _refuse(scope, receive, send, 422, str(exc))
                return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


def _has_credentials(headers: Headers) -> bool:
    """Whether a request carries any credentials at all (their validity is the auth dependencies' business)."""
    return bool(headers.get("authorization", "").strip()) or bool(
        cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE))


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str,
                  headers: dict[str, str] | None = None) -> None:
    await JSONResponse(status_code=status, content={"detail": detail}, headers=headers)(scope, receive, send)


def _declare_optional_auth(app: FastAPI, settings) -> None:
    """Make the OpenAPI security match the settings: without a token nothing needs one, with a token reads need it
    only when TOROID_PUBLIC_READS=false (an empty requirement ``{}`` marks the bearer token optional)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            for path_item in schema.get("paths", {}).values():
                for method, operation in path_item.items():
                    if not isinstance(operation, dict) or "security" not in operation:
                        continue
                    required = bool(settings.api_token) and (method != "get" or not settings.public_reads)
                    if not required:
                        operation["security"] = [{}, *operation["security"]]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _readable(error: dict) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
    return f"{where}: {error.get('msg', 'invalid')}"


def _utf8(text: str) -> str:
    """``text`` as UTF-8 can carry it: a lone surrogate (JSON may send ``"\\ud800"``) becomes its escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


#: How the 422 answer writes what a request sent that JSON cannot hold: NaN and infinities (Python's parser takes
#: ``NaN``, ``Infinity`` and ``1e400``) as the strings "nan", "inf", "-inf"; bytes as text; lone surrogates as
#: escapes; exceptions as messages.
VALIDATION_ENCODERS = {
    str: _utf8,
    bytes: lambda b: b.decode("utf-8", "replace"),
    float: lambda x: x if math.isfinite(x) else str(x),
    BaseException: str,
}


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 with FastAPI's list of errors in ``detail`` plus one readable ``message`` line (shown by the UI)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse(
        status_code=422,
        content={
            "detail": jsonable_encoder(errors, custom_encoder=VALIDATION_ENCODERS),
            "message": _utf8("; ".join(_readable(e) for e in errors) or "invalid request"),
        },
    )


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    """The one mapping of the typed domain errors (``toroid.store.errors``) to HTTP: their status, their message
    (with the server's own folders named by their setting, never by their absolute path)."""
    status = exc.status if isinstance(exc, ToroidError) else 500
    settings = get_settings()
    detail = relative_paths(str(exc), {"$TOROID_DATA_ROOT": settings.resolved_data_root,
                                       "$TOROID_HOME": settings.home})
    extra = getattr(exc, "extra", None) or {}
    return JSONResponse(status_code=status, content={**extra, "detail": _utf8(detail)})
