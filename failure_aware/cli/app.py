"""The root ``cli`` group, its global options, and the error boundary."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from failure_aware.cli.context import AppContext
from failure_aware.domain.errors import FailureAwareError, RetryTooEarly

EXIT_ERROR = 1
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--db", "db_url", metavar="URL", envvar=None,
    help="Database URL (sqlite:///path.db or postgresql://...). Default: $FAILURE_AWARE_DB, "
         "then sqlite:///failure-aware.db.",
)
@click.option(
    "--config", "config_path", metavar="FILE", type=click.Path(dir_okay=False),
    help="Retry policies and health rules (default: ./failure-aware.toml or [tool.failure-aware] "
         "in ./pyproject.toml).",
)
@click.version_option(package_name="failure-aware")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, config_path: str | None) -> None:
    """Record events and attempts, and see what is failing and whether it is failing repeatedly.

    Nothing runs in the background: handlers run only in `run`, `retry --due` and a `worker` you start.
    """
    if db_url is not None and not db_url.strip():
        raise click.BadParameter("is empty; give a URL such as sqlite:///path.db", param_hint="--db")
    ctx.obj = AppContext(db_url=db_url, config_path=config_path)
    ctx.call_on_close(ctx.obj.close)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and turn our errors into messages and exit codes."""
    try:
        # Without standalone mode click *returns* the code of a command's ctx.exit(code) (health's verdict,
        # db version's refusal) instead of raising Exit; commands themselves return None.
        code = cli.main(args=argv, prog_name="failure-aware", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as usage:
        usage.show()
        sys.exit(usage.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except FailureAwareError as error:
        fail(error)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as bug:  # a bug of ours: say so plainly, traceback only on request
        if os.environ.get("FAILURE_AWARE_DEBUG"):
            raise
        click.echo(
            f"internal error: {type(bug).__name__}: {bug}\n"
            "(this is a bug in failure-aware; set FAILURE_AWARE_DEBUG=1 to see the traceback)",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


def fail(error: FailureAwareError, code: int = EXIT_ERROR) -> Any:
    """Print a library error as one line on stderr and exit with ``code``."""
    from failure_aware.cli.output import screen_times, visible

    kind = type(error).__name__
    message = error.explained("--force") if isinstance(error, RetryTooEarly) else str(error)
    click.echo(f"error ({kind}): {visible(screen_times(message))}", err=True)
    sys.exit(code)
