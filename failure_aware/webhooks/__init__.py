"""Webhook delivery per the Standard Webhooks specification (SPEC 12).

For senders: ``deliver``, a handler for ``run``, ``retry --due`` and ``worker``
(``--handler failure_aware.webhooks:deliver``), posting each event's payload to the endpoint that the
configuration gives its type (``[webhooks."TYPE"]``), signed, and turning the answer into the attempt's
outcome. For receivers: ``verify(secret, headers, body)``.

Modules: ``signing`` (sign, verify: pure), ``settings`` (the ``[webhooks]`` tables), ``classify`` (an answer
or a transport error -> ``Succeeded`` / ``HandlerFailure``: pure), ``handler`` (the httpx client and
``WebhookHandler``). See docs/webhooks.md.
"""

from __future__ import annotations

from failure_aware.webhooks.handler import Delivery, WebhookHandler, request_body, webhook_id
from failure_aware.webhooks.settings import Endpoint
from failure_aware.webhooks.signing import WebhookVerificationError, decode_secret, sign, verify

deliver = WebhookHandler()
"""The process's webhook handler: ``--handler failure_aware.webhooks:deliver``."""

__all__ = [
    "Delivery",
    "Endpoint",
    "WebhookHandler",
    "WebhookVerificationError",
    "decode_secret",
    "deliver",
    "request_body",
    "sign",
    "verify",
    "webhook_id",
]
