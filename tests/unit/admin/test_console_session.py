"""Console sessions: a signed cookie that expires, and a CSRF token bound to it."""

from __future__ import annotations

from services.admin.console import session

TOKEN = "the-admin-token"
NOW = 1_800_000_000.0


def test_a_cookie_it_issued_reads_back_as_a_session_until_it_expires() -> None:
    cookie = session.issue(TOKEN, NOW)
    found = session.read(TOKEN, cookie, NOW + 60)
    assert found is not None and found.expires == NOW + session.LIFETIME_SECONDS
    assert session.read(TOKEN, cookie, NOW + session.LIFETIME_SECONDS) is None


def test_a_changed_cookie_or_another_token_is_no_session() -> None:
    cookie = session.issue(TOKEN, NOW)
    expires, nonce, signature = cookie.split(".")
    later = f"{int(expires) + 10**6}.{nonce}.{signature}"
    resigned = cookie[:-1] + ("1" if cookie.endswith("0") else "0")
    for forged in (later, resigned, "", "a.b.c", "...", "1.2", "x" * 500):
        assert session.read(TOKEN, forged, NOW) is None
    assert session.read("another-token", cookie, NOW) is None
    assert session.read("", cookie, NOW) is None  # no token configured: the console is off


def test_the_csrf_token_belongs_to_its_session_only() -> None:
    mine = session.read(TOKEN, session.issue(TOKEN, NOW), NOW)
    theirs = session.read(TOKEN, session.issue(TOKEN, NOW), NOW)
    assert mine is not None and theirs is not None
    token = session.csrf_token(TOKEN, mine)
    assert session.csrf_valid(TOKEN, mine, token)
    assert not session.csrf_valid(TOKEN, theirs, token)
    assert not session.csrf_valid(TOKEN, mine, "")
    assert not session.csrf_valid(TOKEN, mine, "é" + token)


def test_only_the_admin_token_matches_and_nothing_matches_when_none_is_set() -> None:
    assert session.matches(TOKEN, TOKEN)
    assert not session.matches(TOKEN, TOKEN + " ")
    assert not session.matches("", "")
