"""The documentation site builds with warnings as errors and reads correctly in a real browser.

One slow test module: it builds ``docs/`` with ``sphinx -W`` into ``docs/_build/html`` once (executing every
tutorial), checks that every name on a tutorial or guide page links to its API page, that no page shows a path
of the machine that built it, that every internal link and resource of every page resolves and that no page
loads anything from the network, then opens pages in headless Chromium (served from 127.0.0.1) and checks that
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
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from .browser import find_chromium, run_chromium

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BUILD = DOCS / "_build" / "html"
SHOTS = DOCS / "_build" / "screenshots"
DOCS_MODULES = ("sphinx", "furo", "sphinx_gallery", "myst_parser", "sphinx-mathjax-offline", "sklearn")
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


@functools.cache
def _build() -> Path:
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


def _check_pages_exist(site: Path) -> None:
    for page in PAGES:
        assert (site / page).is_file(), page
    api = sorted(p.stem for p in (site / "generated" / "api").glob("pushforward*.html"))
    for package in ("pushforward.flows", "pushforward.transforms", "pushforward.nets", "pushforward.train"):
        assert package in api, api
    assert (site / "search.html").is_file() and (site / "searchindex.js").is_file()


def _check_links(site: Path) -> None:
    """Every internal href/src of every page resolves (file and anchor); no resource comes from the network."""
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


class _Server:
    """The built site on 127.0.0.1 (a free port), in a background thread."""

    def __init__(self, site: Path) -> None:
        handler = functools.partial(_Handler, directory=str(site))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> str:
        self.thread.start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return run_chromium(browser, profile, "--virtual-time-budget=30000", *args)


def _check_page(browser: str, url: str, page: str, profile: Path) -> list[str]:
    """Problems Chromium sees on one page (empty when it reads correctly)."""
    out = _chromium(browser, profile, "--dump-dom", f"{url}/{page}?probe")
    match = re.search(r'<pre id="pf-probe">(.*?)</pre>', out.stdout, re.S)
    if not match:
        return [f"{page}: did not finish loading in Chromium: {out.stderr[-2000:]}"]
    probe = json.loads(html.unescape(match.group(1)))
    problems = []
    if probe["math"] and not probe["mathjax"]:
        problems.append(f"{page}: MathJax did not load")
    if probe["unrendered"]:
        problems.append(f"{page}: formulas left as TeX: {probe['unrendered'][:5]}")
    if probe["errors"]:
        problems.append(f"{page}: {probe['errors']} MathJax errors")
    if probe["raw_tex"]:
        problems.append(f"{page}: raw TeX in the text: {probe['raw_tex'][:10]}")
    if probe["broken_images"]:
        problems.append(f"{page}: images that did not load: {probe['broken_images']}")
    if (page == "index.html" or "api" in page) and not probe["math"]:
        problems.append(f"{page}: expected formulas, found none")
    if "tutorials" in page and not probe["images"]:
        problems.append(f"{page}: expected figures, found none")
    return problems


def _check_search(browser: str, url: str, profile: Path) -> list[str]:
    """The search box finds the Glow preset (the search index is built and its script runs offline)."""
    out = _chromium(browser, profile, "--dump-dom", f"{url}/search.html?q=Glow")
    found = re.search(r"found (\d+) pages?", out.stdout)
    if not found or int(found.group(1)) == 0:
        return [f"search for 'Glow' found nothing: {out.stdout[-1500:]}"]
    return []


def _screenshot(browser: str, url: str, page: str, shot: Path, profile: Path, height: int) -> None:
    shot.unlink(missing_ok=True)
    out = _chromium(browser, profile, f"--screenshot={shot}", f"--window-size=1280,{height}", f"{url}/{page}")
    assert shot.is_file(), f"no screenshot of {page} written:\n{out.stderr[-3000:]}"
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000, f"{shot} looks empty ({len(data)} bytes)"


def test_docs_site_builds_and_reads_correctly_in_chromium(tmp_path):
    # One test, so that a parallel run (pytest -n 2) builds the site once.
    browser = find_chromium()
    site = _build()
    stray = sorted(p.name for p in (DOCS / "tutorials").iterdir() if p.suffix not in (".py", ".rst"))
    assert not stray, f"tutorials left files in the source tree: {stray}"
    _check_pages_exist(site)
    _check_links(site)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with _Server(site) as url:
        problems = []
        for i, page in enumerate(PAGES):
            problems += _check_page(browser, url, page, tmp_path / f"profile{i}")
        problems += _check_search(browser, url, tmp_path / "search")
        assert not problems, "\n".join(problems)
        _screenshot(browser, url, PAGES[0], SHOTS / "index.png", tmp_path / "shot0", 1400)
        _screenshot(browser, url, PAGES[3], SHOTS / "tutorial_images.png", tmp_path / "shot1", 4200)


#: Tutorial and guide pages: prose that names library objects.
def _guide_pages(site: Path) -> list[Path]:
    pages = [site / "index.html", site / "choosing.html", site / "cli.html"]
    pages += sorted(p for p in (site / "generated" / "tutorials").glob("*.html") if p.name != "index.html")
    return [p for p in pages if p.is_file()]


def _public_class_names() -> set[str]:
    """Capitalised names in the ``__all__`` of ``pushforward`` and of each of its packages (classes, presets)."""
    import importlib
    import pkgutil

    import pushforward

    names = set(pushforward.__all__)
    for info in pkgutil.iter_modules(pushforward.__path__):
        if info.ispkg and not info.name.startswith("_"):
            names |= set(getattr(importlib.import_module(f"pushforward.{info.name}"), "__all__", ()))
    return {n for n in names if n[:1].isupper()}


class _Code(HTMLParser):
    """Inline code of a page outside code blocks: ``(text, is a cross-reference, inside a link)``."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str]] = []
        self.items: list[tuple[str, bool, bool]] = []
        self.text: list[str] | None = None
        self.xref = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        cls = dict(attrs).get("class") or ""
        self.stack.append((tag, cls))
        if tag == "code" and not any(t == "pre" for t, _ in self.stack):
            self.text, self.xref = [], "xref" in cls.split()

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            top, _ = self.stack.pop()
            if top == tag:
                break
        if tag == "code" and self.text is not None:
            linked = any(t == "a" for t, _ in self.stack)
            self.items.append(("".join(self.text).strip(), self.xref, linked))
            self.text = None

    def handle_data(self, data: str) -> None:
        if self.text is not None:
            self.text.append(data)


def test_every_name_on_tutorial_and_guide_pages_links_to_its_api_page():
    site = _build()
    public = _public_class_names()
    unlinked = []
    for page in _guide_pages(site):
        parser = _Code()
        parser.feed(page.read_text(encoding="utf-8"))
        for text, xref, linked in parser.items:
            bare = text.removesuffix("()").lstrip("~")
            names_object = xref or bare.startswith("pushforward.") or bare in public
            if names_object and not linked:
                unlinked.append(f"{page.relative_to(site)}: {text}")
    assert len(_guide_pages(site)) >= 8
    assert not unlinked, "names with no link to their API page:\n" + "\n".join(unlinked)


def test_no_page_shows_a_path_of_the_build_machine():
    import tempfile

    site = _build()
    markers = {str(ROOT), sys.prefix, str(Path.home()) + "/", "site-packages", tempfile.gettempdir() + "/"}
    markers.discard("/")
    found = []
    for page in sorted(site.rglob("*.html")):
        text = html.unescape(page.read_text(encoding="utf-8", errors="replace"))
        found += [f"{page.relative_to(site)}: {m}" for m in markers if m in text]
    assert not found, "pages show paths of the machine that built them:\n" + "\n".join(found[:30])
