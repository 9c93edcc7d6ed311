"""What the Mailchimp admin actions share: Mailchimp's failures as action errors, paged
listings, concurrent requests within the connection limit, and recognising our webhooks."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from common.limits import SlotTimeout
from common.mailchimp import API_KEY_PATTERN, MailchimpClient, MailchimpError
from common.mailchimp import MailchimpTransientError as Transient
from common.settings import masked
from common.webhook_urls import AUDIENCE_WEBHOOK_PATH, BATCH_WEBHOOK_PATH, webhook_url
from services.admin.context import AdminContext, ParamError, UpstreamError

PAGE = 1000

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def check_api_key(api_key: str) -> str:
    """The key, if it looks like ``<32 hex>-<datacenter>``; else a ParamError naming it."""
    if not API_KEY_PATTERN.match(api_key):
        raise ParamError("api_key: a Mailchimp API key looks like <32 hex digits>-<dc>", "api_key")
    return api_key


@contextmanager
def mailchimp_errors(doing: str, key_is_param: bool = True) -> Iterator[None]:
    """Mailchimp's refusals and failures as action errors.

    A 401 means the key is wrong: a ParamError on ``api_key`` when the caller gave the key
    (``key_is_param``), else an UpstreamError (a configured account's key was revoked).
    Anything else Mailchimp refuses or fails is an UpstreamError carrying its title.
    """
    try:
        yield
    except MailchimpError as error:
        if error.status == 401 and key_is_param:
            raise ParamError(
                f"api_key: Mailchimp refused the key ({error.status} {error.title})", "api_key"
            ) from error
        detail = f": {masked(error.detail)}" if error.detail else ""
        raise UpstreamError(
            f"{doing}: Mailchimp answered {error.status} {error.title}{detail}"
        ) from error
    except Transient as error:
        if error.status is None:
            raise UpstreamError(
                f"{doing}: Mailchimp did not answer ({masked(str(error))})"
            ) from error
        raise UpstreamError(f"{doing}: Mailchimp failed ({masked(str(error))})") from error
    except SlotTimeout as error:
        raise UpstreamError(f"{doing}: Mailchimp did not answer in time ({error})") from error


def all_pages(
    client: MailchimpClient, path: str, key: str, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every item of a Mailchimp collection, page after page."""
    items: list[dict[str, Any]] = []
    while True:
        page = client.get(path, {**(params or {}), "count": PAGE, "offset": len(items)})
        found = page.get(key) or []
        items += found
        if not found or len(items) >= int(page.get("total_items") or 0):
            return items


def pool(ctx: AdminContext, name: str) -> ThreadPoolExecutor:
    """Threads for concurrent Mailchimp requests, never more than the account's connection
    limit (the client's limiter holds each request to it as well, across processes)."""
    return ThreadPoolExecutor(ctx.settings.mailchimp_max_connections, thread_name_prefix=name)


def fan_out(executor: ThreadPoolExecutor, calls: Mapping[K, Callable[[], T]]) -> dict[K, T]:
    """Run the calls concurrently; their results by key (the first failure is raised)."""
    futures = {key: executor.submit(call) for key, call in calls.items()}
    return {key: future.result() for key, future in futures.items()}


@dataclass(frozen=True)
class OurWebhooks:
    """The URLs at which our webhooks service listens for one account (one per secret)."""

    batch_urls: tuple[str, ...]
    audience_urls: tuple[str, ...]

    @classmethod
    def of(cls, base_url: str, secrets: tuple[str, ...]) -> OurWebhooks:
        if not base_url:
            return cls((), ())
        return cls(
            tuple(webhook_url(base_url, BATCH_WEBHOOK_PATH, s) for s in secrets),
            tuple(webhook_url(base_url, AUDIENCE_WEBHOOK_PATH, s) for s in secrets),
        )

    def is_batch(self, url: object) -> bool:
        return url in self.batch_urls

    def is_audience(self, url: object) -> bool:
        return url in self.audience_urls
