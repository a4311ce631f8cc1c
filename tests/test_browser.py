"""Every week notebook in a real JupyterLab, run by a real browser, as a student meets it.

A JupyterLab server on 127.0.0.1 (with a token) serves a copy of ``weeks/``; Debian's Chromium, driven by Playwright
(``executable_path``: Playwright's own browser download is not used), opens each notebook, runs all cells through
the app (JupyterLab's ``notebook:run-all-cells`` command) and checks what the page then shows:

- no cell has an error output;
- every cell that has a figure in the committed notebook shows one (an ``<img>``), or a live widget in its place;
- the notebooks with live panels (the drawing pad in 02b, the generation panel in 03b) render them as widgets,
  not as "Error displaying widget", and in 03b a seed typed into the panel and *generate* change its picture;
- no token anywhere: the server runs with a fake ``HF_TOKEN`` planted in its environment (its kernels inherit it),
  and after each run the saved notebook, every file the kernels wrote (``TMPDIR`` points into the server's folder)
  and the server's log are scanned for it (the entry points get the same scan in ``tests/test_secrets.py``).

A screenshot of each notebook goes to ``build/screens/``. ``make test-browser`` runs this (CI does, after
installing ``chromium`` with apt); without Chromium or Playwright every test skips with the reason.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from planted_secrets import ENV_SECRET, leaks

from course_utils.course.paths import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WEEKS = ROOT / "weeks"
NOTEBOOKS = sorted(p.relative_to(WEEKS).as_posix() for p in WEEKS.glob("*/*.ipynb"))
SCREENSHOTS = ROOT / "build" / "screens"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [  # a closed network: no background connections, no updates, no sync
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WIDGET_NOTEBOOKS = {"02_sampling_loops_2/02b_editing.ipynb", "03_stable_diffusion/03b_sd_studies.ipynb"}
RUN_TIMEOUT_S = 600  # one notebook, all cells (the slowest takes about 90 s on 2 cores)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

REQUIRE = "DIFFUSION_COURSE_REQUIRE_BROWSER"
"""Set to 1 (CI does) to fail rather than skip where Chromium or Playwright is missing."""


def _missing(reason: str) -> pytest.MarkDecorator:
    if os.environ.get(REQUIRE) == "1":
        raise RuntimeError(f"{REQUIRE}=1 but {reason}")
    return pytest.mark.skip(reason=reason)


if CHROMIUM is None:
    pytestmark.append(_missing("no chromium on this machine (apt-get install chromium)"))
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the dev requirements pin it
    pytestmark.append(_missing("playwright is not installed (pip install -r requirements.txt)"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a copy of ``weeks/``: ``(base URL, token, its folder)``. Its own config, settings,
    runtime and temporary folders, so nothing of the user's (or of a previous run) changes what it shows, and what
    its kernels write stays where the token scan looks."""
    home = tmp_path_factory.mktemp("lab")
    root = home / "weeks"
    shutil.copytree(WEEKS, root)
    (home / "tmp").mkdir()
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_TOKEN": ENV_SECRET,
        "TMPDIR": str(home / "tmp"),
        "OMP_NUM_THREADS": "1",  # a kernel's thread pool beside the browser's renderer on two cores
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    env.pop("DIFFUSION_COURSE_HEADLESS", None)  # a student's session: live widgets
    argv = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    argv += ["--allow-root"] if os.geteuid() == 0 else []  # CI containers run as root
    news = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))  # no "Jupyter news?" toast
    log = (home / "lab.log").open("w")
    server = subprocess.Popen(argv, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as answer:
                json.load(answer)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"JupyterLab did not start:\n{(home / 'lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
    yield base, token, home
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


NOTEBOOK_READY = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
        && panel.sessionContext.session.kernel;
    return Boolean(kernel && kernel.status === 'idle' && panel.content && panel.content.widgets.length);
}"""

RUN_ALL = """() => {
    window.__ran = undefined;
    window.jupyterapp.commands.execute('notebook:run-all-cells').then(
        ok => { window.__ran = String(ok); }, err => { window.__ran = 'failed: ' + err; });
}"""

CELLS = """() => window.jupyterapp.shell.currentWidget.content.widgets.map(cell => ({
    type: cell.model.type,
    outputs: cell.model.type === 'code' ? cell.model.outputs.toJSON() : [],
    images: cell.node.querySelectorAll('.jp-OutputArea img').length,
    widgets: cell.node.querySelectorAll('.jp-OutputArea .jupyter-widgets').length,
    widget_errors: (cell.node.querySelector('.jp-OutputArea') || {innerText: ''}).innerText
        .split('Error displaying widget').length - 1,
}))"""


def _committed(notebook: str) -> list[dict]:
    return json.loads((WEEKS / notebook).read_text())["cells"]


def _has_figure(outputs: list[dict]) -> bool:
    return any("image/png" in o.get("data", {}) for o in outputs)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_notebook_runs_in_jupyterlab_in_a_browser(notebook, lab, browser):
    base, token, home = lab
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors_in_page: list[str] = []
    page.on("pageerror", lambda err: errors_in_page.append(str(err)))
    try:
        workspace = Path(notebook).stem  # a workspace of its own: no tab of another notebook open beside it
        url = f"{base}/lab/workspaces/{workspace}/tree/{notebook}?token={token}&reset"
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_function(NOTEBOOK_READY, timeout=180_000)
        page.evaluate(RUN_ALL)
        page.wait_for_function("() => window.__ran !== undefined", timeout=RUN_TIMEOUT_S * 1000, polling=1000)
        ran = page.evaluate("() => window.__ran")
        page.wait_for_timeout(2000)  # widgets and images finish rendering
        cells = page.evaluate(CELLS)

        failed = [
            f"cell {i}: {o.get('ename')}: {o.get('evalue')}"
            for i, cell in enumerate(cells)
            for o in cell["outputs"]
            if o.get("output_type") == "error"
        ]
        assert not failed, "\n".join(failed)
        assert ran == "true", f"run-all ended with {ran}"
        committed = _committed(notebook)
        assert len(committed) == len(cells)
        missing = [
            i
            for i, (old, new) in enumerate(zip(committed, cells, strict=True))
            if old["cell_type"] == "code" and _has_figure(old.get("outputs", []))
            and not (new["images"] or new["widgets"])
        ]  # fmt: skip
        assert not missing, f"cells {missing} show no figure (the committed notebook has one in each)"
        assert not any(c["widget_errors"] for c in cells), "a widget failed to display"
        views = sum(1 for c in cells for o in c["outputs"] if WIDGET_VIEW in o.get("data", {}))
        if notebook in WIDGET_NOTEBOOKS:
            shown = [[(o.get("output_type"), sorted(o.get("data", {}))) for o in c["outputs"]] for c in cells]
            assert views and sum(c["widgets"] for c in cells), f"the live panel did not render as a widget: {shown}"
        if notebook == "03_stable_diffusion/03b_sd_studies.ipynb":
            _generation_panel_follows_its_controls(page)
        if notebook == "02_sampling_loops_2/02b_editing.ipynb":
            _drawing_pad_paints_where_it_is_dragged(page)
        assert not errors_in_page, errors_in_page
        _no_token_in_what_it_wrote(page, home, notebook)
    finally:
        _screenshot(page, SCREENSHOTS / f"{Path(notebook).stem}.png")
        page.close()


SAVE = "async () => { await window.jupyterapp.commands.execute('docmanager:save'); }"


def _no_token_in_what_it_wrote(page, home: Path, notebook: str) -> None:
    """Save the run notebook; then neither it nor anything else under the server's folder holds the token."""
    page.evaluate(SAVE)
    saved = json.loads((home / "weeks" / notebook).read_text())
    assert sum(len(c.get("outputs", [])) for c in saved["cells"]), "the saved notebook has no outputs to scan"
    assert not leaks(home, "")


def _screenshot(page, path: Path) -> None:
    """The notebook scrolled to its last live widget, else to its last figure (JupyterLab scrolls inside its own
    panel, so a full-page screenshot would show only the top)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for selector in (".jp-OutputArea .jupyter-widgets.widget-vbox", ".jp-OutputArea canvas", ".jp-OutputArea img"):
        found = page.locator(selector)
        if found.count():
            try:
                found.last.scroll_into_view_if_needed(timeout=5000)
            except Exception:  # noqa: BLE001 - a screenshot of wherever the notebook is, then
                pass
            break
    page.screenshot(path=str(path))


def _generation_panel_follows_its_controls(page) -> None:
    """Type another seed into 03b's panel and press *generate*: the panel's picture changes."""
    panel = page.locator(".jupyter-widgets.widget-vbox", has=page.get_by_role("button", name="generate")).first
    picture = panel.locator("img").first
    picture.wait_for(timeout=60_000)
    before = picture.get_attribute("src")
    seed = panel.locator(".widget-inline-hbox", has=page.locator("label", has_text="seed")).locator("input")
    seed.fill("1")
    seed.press("Enter")
    panel.get_by_role("button", name="generate").click()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        img = panel.locator("img")
        if img.count() and img.first.get_attribute("src") != before:
            return
        page.wait_for_timeout(500)
    pytest.fail("the generation panel's picture did not change after a new seed and 'generate'")


IN_KERNEL = """async code => {
    const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    let printed = '';
    const future = kernel.requestExecute({code, silent: false, store_history: false});
    future.onIOPub = msg => { if (msg.header.msg_type === 'stream') printed += msg.content.text; };
    await future.done;
    return printed;
}"""


def _drawing_pad_paints_where_it_is_dragged(page) -> None:
    """02b's pad is shown at its own size, and a drag across it paints cells of ``pad`` in the kernel."""
    canvas = page.locator(".jp-OutputArea canvas").first
    canvas.scroll_into_view_if_needed()
    box, width = canvas.bounding_box(), int(canvas.get_attribute("width") or 0)
    assert box and width and abs(box["width"] - width) <= 2, f"the pad is shown {box} wide, drawn {width} wide"
    assert page.evaluate(IN_KERNEL, "print(int(pad.drawn))").strip() == "0"
    page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + 0.5 * box["height"])
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(box["x"] + (0.2 + 0.06 * step) * box["width"], box["y"] + 0.5 * box["height"])
        page.wait_for_timeout(50)
    page.mouse.up()
    page.wait_for_timeout(1000)
    painted = page.evaluate(IN_KERNEL, "print(int(pad.drawn), int((pad.pixels.sum(axis=-1) > 0).sum()))").split()
    assert painted[0] == "1" and int(painted[1]) >= 5, f"a drag across the pad painted {painted}"
