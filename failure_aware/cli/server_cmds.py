"""``serve`` (the HTTP API and metrics) and ``token create|list|revoke`` (who may use it)."""

from __future__ import annotations

import click
from rich.markup import escape

from failure_aware.cli import output
from failure_aware.cli.app import cli
from failure_aware.cli.context import app
from failure_aware.domain.errors import ValidationError
from failure_aware.domain.tokens import Scope

EXTRA_HINT = 'serve needs the server extra: pip install "failure-aware[server]"'


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Other than loopback, tokens must exist first.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--public-metrics", is_flag=True, help="Serve /metrics without a token.")
@click.option("--max-body-bytes", type=click.IntRange(min=1024),
              help="Refuse request bodies larger than this (default: the payload limit plus 256 KiB).")
@click.option("--token-cache-seconds", type=click.FloatRange(0, 300), default=5.0, show_default=True,
              help="Remember a valid token this long (a revoked one is refused within it); 0: never.")
def serve(host: str, port: int, public_metrics: bool, max_body_bytes: int | None,
          token_cache_seconds: float) -> None:
    """Serve the JSON API (/api/v1), Prometheus metrics (/metrics) and the dashboard (/) in the foreground.

    Requests need a token (see `token create`). With no token in the database and a loopback address,
    a one-off admin token is made for this process and printed. Nothing runs in the background.
    """
    try:
        import fastapi  # noqa: F401  (only checking the extra is installed)
        import jinja2  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise click.ClickException(EXTRA_HINT) from None
    from failure_aware.server import serve as server

    ledger = app().ledger()
    server.run(ledger, host=host, port=port, public_metrics=public_metrics, max_body_bytes=max_body_bytes,
               token_cache_seconds=token_cache_seconds, announce=click.echo)


@cli.group()
def token() -> None:
    """API tokens of `serve`: make (the secret is shown once), list, revoke."""


@token.command("create")
@click.argument("name")
@click.option("--scope", required=True, type=click.Choice([s.value for s in Scope]),
              help="read < record < operate < admin; each includes the ones before it.")
@output.json_option
def token_create(name: str, scope: str, as_json: bool) -> None:
    """Make a token NAME (its name is the actor of what it does) and print its secret, once."""
    made = app().ledger().create_token(name, scope)
    if as_json:
        output.print_json({**made.token.as_dict(), "secret": made.secret})
        return
    output.say(f"token {escape(made.token.name)} ({made.token.scope}) created; its secret, shown only now:")
    click.echo(made.secret)


@token.command("list")
@output.json_option
def token_list(as_json: bool) -> None:
    """List tokens: names, scopes, when made and revoked (secrets are not stored, only their hashes)."""
    tokens = app().ledger(readonly=True).tokens()
    if as_json:
        output.print_json([t.as_dict() for t in tokens])
        return
    if not tokens:
        output.say("no tokens; make one with: failure-aware token create NAME --scope read")
        return
    output.console().print(output.table("tokens", ["name", "scope", "created", "by", "revoked"], [
        (t.name, t.scope.value, output.when(t.created_at), t.created_by,
         output.when(t.revoked_at) if t.revoked_at else "")
        for t in tokens
    ]))


@token.command("revoke")
@click.argument("name")
@output.json_option
def token_revoke(name: str, as_json: bool) -> None:
    """Revoke token NAME: it stops opening the API at once, on every server (its name is never reused)."""
    if not name.strip():
        raise ValidationError("name a token to revoke")
    revoked = app().ledger().revoke_token(name)
    if as_json:
        output.print_json(revoked.as_dict())
    else:
        output.say(f"token {escape(revoked.name)} revoked at {output.when(revoked.revoked_at)}")
