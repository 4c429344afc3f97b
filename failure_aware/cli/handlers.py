"""Finding the handler a runner calls: ``module:function`` (or ``package.module:object.attribute``).

The CLI's ``run``, ``retry --due`` and ``worker`` take ``--handler SPEC``. The module is imported with the
working directory first on ``sys.path`` (as ``python -m`` does), so a project's own modules are found
without installing them. Every way this can go wrong is a ``ValidationError`` naming what is wrong.

A handler object that needs the command's configuration (``--config``), such as the webhook handler
``failure_aware.webhooks:deliver`` (its endpoints and secrets), has a ``configure(config)`` method: it is
called once, after loading and before anything is claimed, so a configuration it cannot work with stops the
command with a clear error and nothing written.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from failure_aware.domain.errors import ValidationError
from failure_aware.ledger import Handler

if TYPE_CHECKING:
    from failure_aware.config import Config

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_SPEC = re.compile(rf"({_IDENTIFIER}(?:\.{_IDENTIFIER})*):({_IDENTIFIER}(?:\.{_IDENTIFIER})*)")
_EXAMPLE = "e.g. myapp.handlers:deliver"


def handler_spec_ok(spec: str) -> bool:
    """Whether ``spec`` has the form ``module:function`` (``pkg.mod:obj.attr``); nothing is imported."""
    return isinstance(spec, str) and _SPEC.fullmatch(spec.strip()) is not None


@runtime_checkable
class ConfigurableHandler(Protocol):
    """A handler that takes the configuration before it runs (see the module docstring)."""

    def __call__(self, event: object, /) -> object: ...  # pragma: no cover - a protocol

    def configure(self, config: Config) -> None: ...  # pragma: no cover - a protocol


def load_handler(spec: str, config: Config | None = None) -> Handler:
    """Import and return the callable named by ``spec`` (``module:function``, ``pkg.mod:obj.attr``).

    With ``config``, a ``ConfigurableHandler`` gets ``configure(config)`` before it is returned.

    Raises ``ValidationError`` when the spec is malformed, the module cannot be imported (naming the
    module that is missing, or the error its import raised), the attribute is missing or not callable, or
    the handler refuses the configuration.
    """
    if not isinstance(spec, str) or not (match := _SPEC.fullmatch(spec.strip())):
        raise ValidationError(f"handler {spec!r} must be written module:function ({_EXAMPLE})")
    module_name, attribute_path = match.groups()
    _working_directory_on_path()
    try:
        target: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if module_name == missing or module_name.startswith(missing + "."):
            raise ValidationError(
                f"handler {spec!r}: no module named {missing!r} (looked in the working directory "
                f"{os.getcwd()} and the Python path)"
            ) from None
        raise ValidationError(
            f"handler {spec!r}: importing {module_name!r} failed: it needs module {missing!r}, which is "
            "not installed"
        ) from exc
    except Exception as exc:  # the user's module raised while being imported: report it, no traceback
        raise ValidationError(
            f"handler {spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    walked = module_name
    for part in attribute_path.split("."):
        if not hasattr(target, part):
            raise ValidationError(f"handler {spec!r}: {walked!r} has no attribute {part!r}")
        target = getattr(target, part)
        walked = f"{walked}:{part}" if walked == module_name else f"{walked}.{part}"
    if not callable(target):
        raise ValidationError(
            f"handler {spec!r} is a {type(target).__name__}, not a callable taking the event: handler(event)"
        )
    if config is not None and isinstance(target, ConfigurableHandler):
        target.configure(config)
    return target  # callable, checked; that it takes one event is the user's promise


def _working_directory_on_path() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


__all__ = ["ConfigurableHandler", "Handler", "load_handler"]
