"""The documentation site builds with warnings as errors and reads correctly in a real browser.

One slow test module: it builds ``docs/`` with ``sphinx -W`` into ``docs/_build/html`` (executing every
tutorial), checks that every internal link and resource of every page resolves and that no page loads
anything from the network, then opens pages in headless Chromium (served from 127.0.0.1) and checks that
every formula was typeset by the bundled MathJax, that no raw TeX is left in the text, and that every image
loaded. Screenshots of the index and of a tutorial are saved under ``docs/_build/screenshots/``.

Without Chromium or the docs toolchain (``pip install -e ".[docs]"``) the tests skip with the reason;
with ``CI`` set in the environment they fail instead, so CI cannot pass without checking the site.
"""

from __future__ import annotations

import functools
import html
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BUILD = DOCS / "_build" / "html"
SHOTS = DOCS / "_build" / "screenshots"
DOCS_MODULES = ("sphinx", "furo", "sphinx_gallery", "myst_parser", "sphinx-mathjax-offline", "sklearn")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PAGES = (
    "index.html",
    "choosing.html",
    "generated/tutorials/01_density_estimation.html",
    "generated/tutorials/04_images.html",
    "generated/api/pushforward.flows.html",
    "generated/api/pushforward.transforms.html",
)


def _unavailable(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {what} is missing: the documentation site cannot be checked")
    pytest.skip(f"{what} is not available")


def _browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    _unavailable("headless Chromium (Debian package 'chromium')")
    raise AssertionError  # unreachable


@pytest.fixture(scope="module")
def site() -> Path:
    missing = [m for m in DOCS_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        _unavailable(f"the docs toolchain ({', '.join(missing)}; pip install -e '.[docs]')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(BUILD)]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000)
    assert out.returncode == 0, f"sphinx -W failed:\n{out.stdout[-5000:]}\n{out.stderr[-10000:]}"
    return BUILD


class _Links(HTMLParser):
    """Collects ids and the URLs of links and resources of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, url)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v for k, v in attrs if v is not None}
        for key in ("id", "name"):
            if key in a:
                self.ids.add(a[key])
        for key in ("href", "src"):
            if key in a and not (tag == "a" and key == "src"):
                self.urls.append((tag, key, a[key]))


@functools.cache
def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def test_expected_pages_exist(site):
    for page in PAGES:
        assert (site / page).is_file(), page
    api = sorted(p.stem for p in (site / "generated" / "api").glob("pushforward*.html"))
    for package in ("pushforward.flows", "pushforward.transforms", "pushforward.nets", "pushforward.train"):
        assert package in api, api
    assert (site / "search.html").is_file() and (site / "searchindex.js").is_file()


def test_every_internal_link_resolves_and_nothing_is_fetched_from_the_network(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20, f"only {len(pages)} pages built"
    broken, external_resources = [], []
    for page in pages:
        for tag, attr, url in _parse(page).urls:
            parts = urlsplit(url)
            if parts.scheme in ("http", "https") or url.startswith("//"):
                if tag in ("script", "img", "iframe") or (tag == "link" and attr == "href" and "css" in url):
                    external_resources.append(f"{page.relative_to(site)}: {url}")
                continue
            if parts.scheme or url.startswith(("mailto:", "javascript:", "data:")):
                continue
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: {url}")
            elif parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in _parse(target).ids:
                    broken.append(f"{page.relative_to(site)}: {url} (no such anchor)")
    assert not external_resources, "pages load resources from the network:\n" + "\n".join(external_resources)
    assert not broken, f"{len(broken)} broken internal links:\n" + "\n".join(broken[:50])


PROBE = b"""<script>
(async () => {
  await new Promise(r => document.readyState === "complete" ? r() : addEventListener("load", r));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const out = {mathjax: !!(window.MathJax && MathJax.version), version: window.MathJax && MathJax.version};
  const math = [...document.querySelectorAll(".math")];
  out.math = math.length;
  out.unrendered = math.filter(m => !m.querySelector("mjx-container")).map(m => m.textContent.slice(0, 80));
  out.errors = document.querySelectorAll("mjx-merror").length;
  const images = [...document.images];
  out.images = images.length;
  out.broken_images = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"));
  const body = document.body.cloneNode(true);
  body.querySelectorAll("pre, code, script, style, mjx-container, textarea").forEach(e => e.remove());
  out.raw_tex = (body.textContent.match(/\\\\(frac|sum|log|mathbb|mathrm|left|right|partial|det|theta)\\b/g) || []);
  const pre = document.createElement("pre");
  pre.id = "pf-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the built site; ``?probe`` appends the checking script to an HTML page."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.query != "probe":
            return super().do_GET()
        path = Path(self.translate_path(parts.path))
        body = path.read_bytes().replace(b"</body>", PROBE + b"</body>")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_Handler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=30000",
    ]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_in_chromium(site, server, page, tmp_path):
    browser = _browser()
    out = _chromium(browser, tmp_path / "profile", "--dump-dom", f"{server}/{page}?probe")
    match = re.search(r'<pre id="pf-probe">(.*?)</pre>', out.stdout, re.S)
    assert match, f"the page did not finish loading in Chromium:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    probe = json.loads(html.unescape(match.group(1)))
    if probe["math"]:
        assert probe["mathjax"], f"{page}: MathJax did not load"
    assert not probe["unrendered"], f"{page}: formulas left as TeX: {probe['unrendered'][:5]}"
    assert probe["errors"] == 0, f"{page}: {probe['errors']} MathJax errors"
    assert not probe["raw_tex"], f"{page}: raw TeX in the text: {probe['raw_tex'][:10]}"
    assert not probe["broken_images"], f"{page}: images that did not load: {probe['broken_images']}"
    if page == "index.html" or "api" in page:
        assert probe["math"] > 0, f"{page}: expected formulas"
    if "tutorials" in page:
        assert probe["images"] > 0, f"{page}: expected figures"


@pytest.mark.parametrize(("page", "name"), [(PAGES[0], "index.png"), (PAGES[3], "tutorial_images.png")])
def test_screenshot(site, server, page, name, tmp_path):
    browser = _browser()
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / name
    shot.unlink(missing_ok=True)
    out = _chromium(browser, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,1600", f"{server}/{page}")
    assert shot.is_file(), f"no screenshot written:\n{out.stderr[-3000:]}"
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000, f"{shot} looks empty ({len(data)} bytes)"
