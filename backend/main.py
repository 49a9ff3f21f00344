"""The FastAPI application factory: JSON API under /api, the Dash UI mounted under /dashboard."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from backend.api import health
from backend.db import init_db
from backend.settings import get_settings

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
        version="0.1.0",
        description="Error landscapes of neural networks without symmetries (Pittorino et al., ICML 2022).",
        lifespan=lifespan,
    )
    app.include_router(health.router, prefix="/api")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(DASHBOARD_PREFIX if with_dashboard else "/docs")

    if with_dashboard:
        from a2wsgi import WSGIMiddleware

        from dashboard.app import create_dash

        api_url = settings.dashboard_api_url or f"{settings.base_url}/api"
        dash_app = create_dash(api_url=api_url, prefix=DASHBOARD_PREFIX)
        app.mount(DASHBOARD_PREFIX.rstrip("/"), WSGIMiddleware(dash_app.server))
    return app
