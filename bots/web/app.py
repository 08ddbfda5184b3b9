"""The web adapter's ASGI app: the API under /api/v1 (OpenAPI docs at /api/v1/docs), the
WebSocket chat, Prometheus metrics at /metrics, and the page at /. Errors are JSON:
{"error": kind, "detail": sentence}."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from bots.tasks import Background
from bots.web.api import api
from bots.web.auth import Web
from bots.web.limits import Limits
from bots.web.metrics import serve_metrics
from bots.web.ws import ws
from core.coach import Coach
from core.errors import CoachError, StoreUnavailable
from core.texts import STORE_DOWN_COMMAND_TEXT
from core.zones import WhenError

PAGE = Path(__file__).parent / "static"


def create_app(coach: Coach, background: Background | None = None) -> FastAPI:
    settings = coach.settings
    app = FastAPI(
        title="Momentum",
        summary="Talk to your Momentum coach: goals, meetings, and the chat itself.",
        docs_url="/api/v1/docs",
        openapi_url="/api/v1/openapi.json",
        redoc_url=None,
    )
    app.state.web = Web(
        coach,
        settings,
        Limits(settings.web_rate_per_minute, settings.web_rate_burst),
        background or Background("web"),
    )
    app.include_router(api)
    app.include_router(ws)
    _errors_as_json(app)
    serve_metrics(app, settings.metrics_token)
    if (PAGE / "index.html").exists():
        app.mount("/", StaticFiles(directory=PAGE, html=True), name="page")
    return app


def _errors_as_json(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        kind = HTTPStatus(error.status_code).phrase.lower().replace(" ", "_")
        return JSONResponse(
            {"error": kind, "detail": error.detail}, error.status_code, headers=error.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'][1:]) or 'body'}: {problem['msg']}"
            for problem in error.errors()
        )
        return JSONResponse({"error": "invalid", "detail": problems}, 422)

    @app.exception_handler(CoachError)
    async def refused(request: Request, error: CoachError) -> JSONResponse:
        return JSONResponse({"error": "rejected", "detail": error.user_text}, 400)

    @app.exception_handler(WhenError)
    async def bad_time(request: Request, error: WhenError) -> JSONResponse:
        return JSONResponse({"error": "rejected", "detail": str(error)}, 400)

    @app.exception_handler(StoreUnavailable)
    async def store_down(request: Request, error: StoreUnavailable) -> JSONResponse:
        return JSONResponse(
            {"error": "store_unavailable", "detail": STORE_DOWN_COMMAND_TEXT}, 503
        )
