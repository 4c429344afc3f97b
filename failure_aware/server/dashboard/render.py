"""Rendering: one Jinja2 environment (autoescape on, always), the page's security headers, small filters.

Everything from outside (keys, payloads, error messages, notes, token names) reaches a template as data
and is escaped there; no template marks outside text safe. The Content-Security-Policy allows scripts
and styles from this site only: no inline script, no inline style, no eval (htmx is configured without
eval), no framing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from failure_aware.domain.timeutil import format_time

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # a login link's token never leaves in a Referer
    "Cache-Control": "no-store",  # pages hold operational data: not kept by the browser or proxies
}


def _when(value: datetime | None) -> str:
    """A time as the API writes it (RFC 3339, UTC), or an empty string."""
    return format_time(value) or ""


def _ago(value: datetime | None) -> str:
    """How long ago, roughly (``3m ago``)."""
    if value is None:
        return ""
    seconds = (datetime.now(UTC) - value).total_seconds()
    return f"{_duration(abs(seconds))} {'ago' if seconds >= 0 else 'from now'}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s" if seconds >= 1 else f"{seconds * 1000:.0f}ms"


def _number(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _environment() -> jinja2.Environment:
    templates = resources.files("failure_aware.server.dashboard") / "templates"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=True,  # every template, whatever its name: outside text is never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, ago=_ago, duration=_duration, number=_number, pretty=_pretty_json)
    return env


ENV = _environment()


def secure(response: Response) -> Response:
    """Add the dashboard's security headers to a response."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A rendered page with the security headers."""
    html = ENV.get_template(template).render(request_path=request.url.path, **context)
    return secure(HTMLResponse(html, status_code=status))  # type: ignore[return-value]


def redirect(location: str) -> Response:
    """A 303 (see other) to a local path, with the security headers."""
    return secure(RedirectResponse(location, status_code=303))
