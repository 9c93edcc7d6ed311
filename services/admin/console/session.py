"""Signing in to the console: a session cookie signed with a key derived from the admin token,
and a CSRF token per session.

Sessions are not stored: a cookie carries its expiry and a random nonce, signed with HMAC.
Changing ``MCSYNC_ADMIN_TOKEN`` signs every session out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

COOKIE = "mcsync_session"
LIFETIME_SECONDS = 12 * 3600


@dataclass(frozen=True)
class Session:
    """A signed-in browser: its nonce (which its CSRF token is bound to) and expiry."""

    nonce: str
    expires: int


def matches(token: str, given: str) -> bool:
    """Whether ``given`` is the admin token (compared in constant time; never if unset)."""
    return bool(token) and hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def issue(token: str, now: float) -> str:
    """A new session cookie's value, valid for ``LIFETIME_SECONDS``."""
    body = f"{int(now) + LIFETIME_SECONDS}.{secrets.token_urlsafe(18)}"
    return f"{body}.{_sign(token, 'session', body)}"


def read(token: str, cookie: str | None, now: float) -> Session | None:
    """The session a cookie carries, or None if it is missing, forged, or expired."""
    if not token or not cookie:
        return None
    body, _, signature = cookie.rpartition(".")
    expires, _, nonce = body.partition(".")
    if not (expires.isascii() and expires.isdigit() and nonce):
        return None
    if not hmac.compare_digest(signature.encode(), _sign(token, "session", body).encode()):
        return None
    if int(expires) <= now:
        return None
    return Session(nonce, int(expires))


def csrf_token(token: str, session: Session) -> str:
    """The token a session's forms carry."""
    return _sign(token, "csrf", session.nonce)


def csrf_valid(token: str, session: Session, given: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), csrf_token(token, session).encode())


def _sign(token: str, purpose: str, value: str) -> str:
    key = hashlib.sha256(b"mcsync console\0" + token.encode("utf-8")).digest()
    return hmac.new(key, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()
