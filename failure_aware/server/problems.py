"""Errors as ``application/problem+json`` (RFC 9457): one handler maps the whole ``FailureAwareError`` tree,
the framework's own errors (bad JSON, an unknown path, a wrong method) and anything unexpected to one
shape with ``code``, the name of the error.

Bodies are encoded with ASCII escapes: a client's lone surrogate echoed in a message can never make
encoding the error itself fail. Nothing here puts a request header (a token) into a response.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from failure_aware.domain.errors import (
    FailureAwareError,
    InvalidTransition,
    NotFound,
    RetryTooEarly,
    SchemaError,
    StaleClaim,
    StorageError,
    ValidationError,
)
from failure_aware.server.schemas import Problem

MEDIA_TYPE = "application/problem+json"
FORCE_FIELD = '"force": true in the request body'  # how a RetryTooEarly is overridden over HTTP
log = logging.getLogger("failure_aware.server")

# Most specific first: RetryTooEarly is an InvalidTransition.
_STATUS: tuple[tuple[type[FailureAwareError], int], ...] = (
    (ValidationError, 422),
    (NotFound, 404),
    (InvalidTransition, 409),
    (StaleClaim, 409),
    (SchemaError, 503),
    (StorageError, 503),
)
_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "ValidationError",
    500: "InternalError",
    503: "Unavailable",
}
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid input",
    500: "Internal error",
    503: "Service unavailable",
}


def problem(
    status: int, detail: str, code: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    """A problem+json response."""
    body = Problem(
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        code=code or _CODES.get(status, "Error"),
    )
    return Response(
        json.dumps(body.model_dump(), ensure_ascii=True),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def problem_bytes(status: int, detail: str, code: str | None = None) -> bytes:
    """The body of ``problem`` (for the ASGI middleware, which answers before the app runs)."""
    return bytes(problem(status, detail, code).body)


def status_of(error: FailureAwareError) -> int:
    """The HTTP status of a library error."""
    return next((status for kind, status in _STATUS if isinstance(error, kind)), 400)


def _library_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, FailureAwareError)
    status = status_of(error)
    if status >= 500:
        log.warning("request failed: %s: %s", type(error).__name__, error)
    message = error.explained(FORCE_FIELD) if isinstance(error, RetryTooEarly) else str(error)
    return problem(status, message, type(error).__name__)


def _invalid_request(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    detail = describe_validation(error.errors())
    kind = request.headers.get("content-type", "")
    if request.method == "POST" and kind and "json" not in kind.lower():
        detail += f" (the body was sent as {kind[:60]}; send JSON with Content-Type: application/json)"
    return problem(422, detail, "ValidationError")


def describe_validation(errors: Any) -> str:
    """The pydantic errors of a request as one sentence per field (never echoing the input)."""
    parts = []
    for item in list(errors)[:10]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _http_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    detail = error.detail if isinstance(error.detail, str) else _TITLES.get(error.status_code, "Error")
    return problem(error.status_code, detail, headers=dict(error.headers or {}) or None)


def _unexpected(_request: Request, error: Exception) -> Response:
    log.error("internal error: %s", type(error).__name__, exc_info=error)
    return problem(500, "internal error; it has been logged", "InternalError")


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(FailureAwareError, _library_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entries of the problems an operation can answer with."""
    return {
        status: {
            "model": Problem,
            "description": _TITLES.get(status, "Error"),
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
