"""Where Mailchimp calls us: the paths of the webhooks service and the URLs we register."""

from __future__ import annotations

from urllib.parse import urlencode

AUDIENCE_WEBHOOK_PATH = "/mailchimp/webhook"
BATCH_WEBHOOK_PATH = "/mailchimp/batch-webhook"


def webhook_url(base_url: str, path: str, secret: str) -> str:
    """``base_url`` + ``path`` with the secret in the query (Mailchimp signs nothing)."""
    return f"{base_url.rstrip('/')}{path}?{urlencode({'secret': secret})}"
