"""`/metrics` on the web app: prometheus_client's exposition of core/metrics.py, behind
METRICS_TOKEN when one is set (the web app may face the internet; the metrics should not)."""

from __future__ import annotations

import hmac

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import SecretStr
from starlette.exceptions import HTTPException


def serve_metrics(app: FastAPI, token: SecretStr | None) -> None:
    expected = f"Bearer {token.get_secret_value()}" if token else None

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        given = request.headers.get("authorization", "")
        if expected is not None and not hmac.compare_digest(given, expected):
            raise HTTPException(401, "/metrics needs Authorization: Bearer <METRICS_TOKEN>")
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
