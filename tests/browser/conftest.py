"""The console in a real browser: Debian's Chromium driven by Playwright, on ``mcsync serve``'s
app with every worker in-process, the demo's mixed audience on the simulator and in the CRM.
Screenshots of each screen go to ``build/console-screenshots/`` for review.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from asgi_client import serve_in_thread
from browser_support import DESKTOP, TOKEN, Console, chromium_path
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from common.settings import Settings
from mcsync import workers
from mcsync.demo import seed_both_sides
from mcsync.demo_data import plan_demo
from mcsync.serve import build_app
from sim.mailchimp import Simulator, run_in_thread


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=chromium_path())
    yield launched
    launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


@pytest.fixture
def console(clean_tables: sa.Engine, database_url: str) -> Iterator[Console]:
    with run_in_thread(Simulator()) as simulator:
        audience = seed_both_sides(clean_tables, simulator.api_url, plan_demo(400, seed=3))
        settings = Settings(
            database_url=database_url,
            mailchimp_api_url=simulator.api_url,
            admin_token=TOKEN,
            batch_poll_seconds=0.5,
        )
        running = workers.build(settings, workers.SERVICES, threads=4)
        running.start()
        try:
            with serve_in_thread(build_app(running.runtime, lambda: running.periodic)) as served:
                yield Console(served.base_url, clean_tables, simulator, audience)
        finally:
            running.stop()
