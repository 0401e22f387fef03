"""A participant completes the study in a real headless browser: Playwright driving Debian's chromium,
from the Prolific link through consent, instructions, every item (with the attention check) to the
completion redirect, using only the keyboard on the rating controls. Saves a screenshot of an item page
(tmp_path/item-page.png; set TRACEKD_STUDY_SCREENSHOT=PATH to also copy it there, as done once for the
README)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian: apt-get install chromium)")

from fastapi.responses import HTMLResponse  # noqa: E402
from test_study_support import ADMIN_TOKEN, free_port, make_study, serve  # noqa: E402

from tracekd.study.app import create_app  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def test_participant_completes_the_study_in_chromium(tmp_path):
    port = free_port()
    # the completion URL stands in for Prolific's (nothing outside this machine is reachable from a test)
    study = make_study(tmp_path, items_per_participant=3,
                       completion_url=f"http://127.0.0.1:{port}/prolific/complete?cc={{code}}")
    app = create_app(study, admin_token=ADMIN_TOKEN)
    completed = []

    @app.get("/prolific/complete")
    def prolific(cc: str):
        completed.append(cc)
        return HTMLResponse("<h1>Submission complete</h1>")

    with serve(app, port=port) as base, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 900, "height": 1200}, java_script_enabled=False)
            page = context.new_page()
            page.set_default_timeout(15000)
            page.goto(f"{base}/start?PROLIFIC_PID=60f1e2d3c4b5a69788776655&STUDY_ID=st9&SESSION_ID=se9")
            assert page.locator("h1").inner_text().endswith("consent")
            page.get_by_label("I agree").check()
            with page.expect_navigation():
                page.get_by_role("button", name="Continue").click()
            with page.expect_navigation():
                page.get_by_role("button", name="Start").click()

            pages_seen, checks_seen = 0, 0
            while "/item/" in page.url:
                pages_seen += 1
                assert page.get_by_text(f"Page {pages_seen} of 3").is_visible()
                if pages_seen == 1:
                    shot = tmp_path / "item-page.png"
                    page.screenshot(path=str(shot), full_page=True)
                    assert shot.stat().st_size > 10_000
                    if os.environ.get("TRACEKD_STUDY_SCREENSHOT"):
                        shutil.copy(shot, os.environ["TRACEKD_STUDY_SCREENSHOT"])
                    # without an answer the browser's own validation keeps the participant on the page
                    page.get_by_role("button", name="Next").click()
                    assert page.url.endswith("/item/0")
                groups = page.locator("fieldset")
                for i in range(groups.count()):
                    group = groups.nth(i)
                    legend = group.locator("legend").inner_text()
                    target = "Strongly disagree" if "select 'Strongly disagree'" in legend else "Agree"
                    checks_seen += target == "Strongly disagree"
                    # keyboard only: focus the group's first radio, arrow to the wanted label
                    group.get_by_role("radio").first.focus()
                    page.keyboard.press("Space")
                    labels = [group.locator("label").nth(k).inner_text().strip()
                              for k in range(group.locator("label").count())]
                    for _ in range(labels.index(target)):
                        page.keyboard.press("ArrowRight")
                    assert group.get_by_label(target, exact=True).is_checked()
                with page.expect_navigation():
                    page.get_by_role("button", name="Next").click()
            assert pages_seen == 3 and checks_seen == 1
            assert completed == ["C0DE42"] and page.url.endswith("/prolific/complete?cc=C0DE42")
            assert page.get_by_text("Submission complete").is_visible()
        finally:
            browser.close()
    (person,) = app.state.store.all_participants()
    assert person["prolific_pid"] == "60f1e2d3c4b5a69788776655" and person["completed_at"] is not None
    from tracekd.study.export import collect

    (row,) = collect(app.state.store)["participants"]
    assert row["failed_attention"] is False and row["answered"] == 3
