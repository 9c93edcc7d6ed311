"""Helpers of the console's browser tests: the served console, screenshots, Chromium."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page
from server_checks import in_ci

from mcsync.demo import SeededAudience
from sim.mailchimp import RunningSimulator

TOKEN = "console-test-token-0123456789"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "console-screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def chromium_path() -> str:
    """Debian's Chromium (``apt-get install -y chromium``); never a downloaded browser."""
    found = os.environ.get("MCSYNC_TEST_CHROMIUM") or shutil.which("chromium")
    if found:
        return found
    message = "no chromium on this machine: apt-get install -y chromium"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Console:
    """``mcsync serve`` on the test database, its simulator and seeded audience."""

    url: str
    engine: sa.Engine
    simulator: RunningSimulator
    audience: SeededAudience

    def sign_in(self, page: Page) -> None:
        page.goto(self.url + "/signin")
        page.get_by_label("Admin token").fill(TOKEN)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(self.url + "/")


def screenshot(page: Page, name: str) -> None:
    """Keep a full-page screenshot of the screen for review."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
