"""Render the report in headless Chromium: it loads without console errors, every section is in
the DOM, hostile evidence text stays text, and a screenshot shows something.

Chromium comes from Debian's ``chromium`` package (``.ci/run`` installs it when apt-get is
there); without it the test skips. Set ``TRUSTREC_REPORT_SCREENSHOT=FILE`` to keep the
screenshot for a look.
"""

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from trustrec.report import write_report

from .conftest import HOSTILE

SECTIONS = ("summary", "accuracy", "scorecard", "dim-robustness", "dim-fairness", "dim-privacy", "trail", "settings")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "headless Chromium not found (install Debian's `chromium` package; .ci/run does when apt-get is available)"
    )


def _run(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"chromium did not finish in {exc.timeout} s: {' '.join(cmd)}")


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line and ("Uncaught" in line or "ERROR" in line)]


class _Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.scripts, self.svgs = set(), 0, 0

    def handle_starttag(self, tag, attrs):
        self.ids.update(v for k, v in attrs if k == "id")
        self.scripts += tag == "script"
        self.svgs += tag == "svg"


def test_report_renders_in_chromium(run_dir, tmp_path):
    browser = _chromium()
    page = write_report(run_dir)
    url = page.resolve().as_uri()

    res = _run(browser, tmp_path / "profile-dom", "--dump-dom", url)
    assert res.returncode == 0, res.stderr[-2000:]
    assert not _console_errors(res.stderr), _console_errors(res.stderr)
    dom = _Dom()
    dom.feed(res.stdout)
    missing = [s for s in SECTIONS if s not in dom.ids]
    assert not missing, f"sections missing from the rendered DOM: {missing}"
    assert dom.scripts == 0, "the page has a <script> element"
    assert "<script>alert" not in res.stdout
    assert HOSTILE.replace("<", "&lt;").replace(">", "&gt;") in res.stdout  # shown as text
    assert dom.svgs >= 6

    shot = tmp_path / "report.png"
    res = _run(browser, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,4000", url)
    assert res.returncode == 0, res.stderr[-2000:]
    assert not _console_errors(res.stderr), _console_errors(res.stderr)
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000, f"screenshot is only {shot.stat().st_size} bytes"
    keep = os.environ.get("TRUSTREC_REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
