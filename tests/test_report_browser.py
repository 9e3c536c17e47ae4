"""report.html as a reader sees it: rendered by headless Chromium, checked through its DevTools protocol.

Skipped only when Chromium is not installed (`.ci/run` installs Debian's package when it is absent).
"""

from __future__ import annotations

import shutil

import pytest

from browser import Chromium, find_chromium
from resizelab.report.writer import ReportConfig, write_report
from tiny_store import build_tiny_store


pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_chromium() is None,
                                                   reason="chromium is not installed: apt-get install chromium (.ci/run installs it when absent)")]


def test_report_renders_with_every_image_no_network_and_no_errors(tmp_path_factory, tmp_path):
    db, _, _ = build_tiny_store(tmp_path_factory)
    copy = tmp_path / "runs.db"
    shutil.copy(db, copy)
    out = write_report(ReportConfig(db=str(copy), sweep="tiny", out=str(tmp_path / "report")))
    html = (out / "report.html").read_text()
    with Chromium() as browser:
        page = browser.load(out / "report.html")
        # The results table as laid out: numbers right-aligned (digits line up), words left.
        table = browser.evaluate("[...document.querySelector('table').rows].map(r => [...r.cells].map("
                                 "c => [c.textContent, getComputedStyle(c).textAlign]))")
    assert page.facts["lang"] == "en"
    assert page.facts["title"] == "resizelab report: tiny"
    images = page.facts["images"]
    assert len(images) == html.count("<img ") >= 3  # the figures the report drew, each one decoded
    assert page.broken_images == [] and all(i["naturalWidth"] > 100 for i in images), images
    assert page.network_requests == [], page.network_requests
    assert page.errors == [], page.errors
    assert page.facts["scrollWidth"] <= page.facts["innerWidth"]  # nothing wider than the window
    header = [text for text, _ in table[0]]
    align = {name: {a for _, a in column} for name, column in zip(header, zip(*table[1:]))}
    assert align["size"] == {"left"} and align["interpolation"] == {"left"}  # "native" and "16": words
    assert align["n"] == align["test acc % (95% CI)"] == align["train s"] == {"right"}


def test_the_browser_check_sees_what_a_broken_page_does(tmp_path):
    """The checks above can fail: a page with each fault is caught by each of them."""
    page_file = tmp_path / "bad.html"
    page_file.write_text('<!doctype html><html><head></head><body>'
                         '<img src="data:image/png;base64,AAAA" alt="not a png">'
                         '<img src="http://example.com/figure.png" alt="remote">'
                         '<script>console.error("boom")</script><div style="width:3000px">wide</div></body></html>')
    with Chromium() as browser:
        page = browser.load(page_file)
    assert page.facts["lang"] == "" and page.facts["title"] == ""
    assert [i["alt"] for i in page.broken_images] == ["not a png", "remote"]
    assert page.network_requests == ["http://example.com/figure.png"]
    assert "error: boom" in page.errors and any("ERR_NAME_NOT_RESOLVED" in e for e in page.errors)
    assert page.facts["scrollWidth"] > page.facts["innerWidth"]
