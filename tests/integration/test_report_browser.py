"""The HTML report in a real headless Chromium: every chart drawn, no console error, no
network request, no page-wide horizontal scrolling on a 1366x768 laptop screen.

Needs the Debian packages chromium and chromium-driver (`make browser` installs them) and
selenium (test extra). The browser is never downloaded. Screenshots are saved in the
test's temporary folder (printed with -s).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness.cli.main import main
from tests.support.result_factory import run_rows, write_csv

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                       reason="chromium and chromium-driver not installed (run `make browser`)"),
]

CHART_PROBE = """
return Array.from(document.querySelectorAll('figure.chart')).map(fig => {
  const svg = fig.querySelector('svg');
  if (!svg) return {kind: fig.dataset.kind, width: 0, height: 0, drawn: 0};
  const box = svg.getBoundingClientRect();
  const marks = svg.querySelectorAll('.mark');
  const shapes = marks.length ? marks : svg.querySelectorAll('path, rect, circle, polyline');
  let drawn = 0;
  shapes.forEach(el => { const b = el.getBBox(); if (b.width > 0 || b.height > 0) drawn++; });
  const tips = Array.from(marks).filter(m => m.querySelector(':scope > title')).length;
  return {kind: fig.dataset.kind, width: box.width, height: box.height, drawn: drawn,
          marks: marks.length, tips: tips};
});
"""


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1366,768"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_report_renders_every_chart_without_console_errors(tmp_path, browser, capsys):
    results = tmp_path / "results"
    write_csv(results / "cpubox" / "a_smoke.csv", run_rows("cpu", "20260101T000000Z-aaaaaa"))
    write_csv(results / "cpubox" / "b_smoke.csv",
              run_rows("cpu", "20260102T000000Z-bbbbbb", scale=0.8))
    write_csv(results / "gpubox" / "c_smoke.csv",
              run_rows("h100", "20260103T000000Z-cccccc", scale=20, weights="synthetic",
                       energy=0.05))
    page = tmp_path / "report.html"
    assert main(["report", str(results), "-o", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    expected = re.findall(r'<figure class="chart[^"]*" data-kind="([^"]+)"', html)
    # 2 scenarios: 2 throughput, 2 latency against throughput, 4 percentile charts,
    # 2 energy against concurrency, and the break-even plot
    assert sorted(set(expected)) == ["breakeven", "energy", "latency-throughput",
                                     "latency-tpot_ms", "latency-ttft_ms", "throughput-closed"]
    assert len(expected) == 11

    browser.get(page.resolve().as_uri())
    charts = browser.execute_script(CHART_PROBE)
    assert [c["kind"] for c in charts] == expected
    for chart in charts:
        assert chart["width"] > 300 and chart["height"] > 150, chart
        assert chart["drawn"] > 0, chart
        if chart["kind"] != "breakeven":
            assert chart["marks"] > 0, chart  # matplotlib marks found by their class
            assert chart["drawn"] == chart["marks"], chart  # every data mark has a size
            assert chart["tips"] == chart["marks"], chart  # and a tooltip

    errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert errors == []
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources == []  # nothing fetched: the page is self-contained
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0  # no page-wide horizontal scrolling at 1366 px

    laptop = tmp_path / "report-1366x768.png"
    assert browser.save_screenshot(str(laptop))
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1366, min(int(height) + 120, 16000))
    full = tmp_path / "report-full.png"
    assert browser.save_screenshot(str(full))
    assert laptop.stat().st_size > 20_000 and full.stat().st_size > laptop.stat().st_size
    with capsys.disabled():
        print(f"\nreport screenshots: {laptop} {full}")
