"""Headless Chromium for the browser tests of the HTML reports (shared by the report tests):
where it is, the skip mark, a page's DOM, and the figures a page drew."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (CI installs Debian's chromium in .ci/run)")


def chromium(page: Path, profile: Path, *extra) -> subprocess.CompletedProcess:
    """Run headless Chromium on ``page`` with a fresh ``profile`` folder and ``extra`` flags."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--virtual-time-budget=20000", *extra, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def dom(page: Path, profile: Path) -> str:
    """The DOM of ``page`` after its scripts ran."""
    return chromium(page, profile, "--dump-dom").stdout


def rendered(page, profile) -> tuple[dict[str, int], str]:
    """Render ``page`` and return (figure id → number of plotly ``main-svg`` elements drawn in its
    section, the text collected in #script-errors)."""
    text = dom(page, profile)
    parts = re.split(r'<section class="figure" data-figure-id="([^"]+)">', text)
    svgs = {fid: body.split("</section>", 1)[0].count('class="main-svg"') for fid, body in zip(parts[1::2], parts[2::2])}
    m = re.search(r'<pre id="script-errors" data-count="(\d+)">(.*?)</pre>', text, re.S)
    assert m, "the error collector is missing from the rendered page"
    return svgs, m.group(2) if int(m.group(1)) else ""
