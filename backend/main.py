"""The FastAPI application factory: JSON API under /api, the Dash UI mounted under /dashboard."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse

import toroid
from toroid.backend.api import analyses, demo, health, jobs, minima, registry, results, studies
from toroid.store.db import init_db
from toroid.store.errors import ToroidError
from toroid.store.settings import get_settings

DASHBOARD_PREFIX = "/dashboard/"


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
    )
    for module in (health, registry, minima, analyses, jobs, results, demo, studies):
        app.include_router(module.router, prefix="/api")
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ToroidError, _domain_error)
    _declare_optional_auth(app, settings)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(DASHBOARD_PREFIX if with_dashboard else "/docs")

    if with_dashboard:
        from a2wsgi import WSGIMiddleware

        from toroid.dashboard.app import create_dash

        api_url = settings.dashboard_api_url or f"{settings.base_url}/api"
        dash_app = create_dash(api_url=api_url, prefix=DASHBOARD_PREFIX, public_api_url=settings.public_api_url)
        app.mount(DASHBOARD_PREFIX.rstrip("/"), WSGIMiddleware(dash_app.server))
    return app


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


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 with FastAPI's list of errors in ``detail`` plus one readable ``message`` line (shown by the UI)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse(
        status_code=422,
        content={
            "detail": jsonable_encoder(errors, custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")}),
            "message": "; ".join(_readable(e) for e in errors) or "invalid request",
        },
    )


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    """The one mapping of the typed domain errors (``toroid.store.errors``) to HTTP: their status, their message."""
    status = exc.status if isinstance(exc, ToroidError) else 500
    return JSONResponse(status_code=status, content={"detail": str(exc)})
