"""The lessons' widgets in a real JupyterLab and a real Chromium: run every cell, move every slider, and
check that the figure under the widget is redrawn (opt-in: `make browser-check`, marker `browser`).

For every lesson with a widget (01 forward process, 03 mask explorer, 04 masked-token reconstruction,
06 optimizer trajectories, 08 training progression live and replayed, 09 guidance, 11 inpainting
and attention): the notebook runs top to bottom with no error output; then, for each slider of each
widget, the slider's handle is dragged with the mouse (as a learner would) and the test waits until the
PNG inside the widget's Output differs from the one before. Each move's redraw time (from releasing the
handle to the new PNG in the page) is printed, and every one must stay within REDRAW_BUDGET_S. Screenshots of
every widget before and after each move are saved under a temporary folder whose path is printed (and kept
when MDT_BROWSER_SHOTS is set to a folder). JupyterLab's "get notified about news?" pop-up, which would cover
the widgets, is switched off by the project's own settings (tools/jupyterlab-overrides.json, installed by
tools/venv.sh); the check asserts that the served lab has that default and that no such pop-up appears.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from .lab import (CHROMIUM_FLAGS, JS_CELL_STATE, JS_NOTEBOOK_READY, JS_RUN_ALL, JS_SHOW_CELL, JS_WIDGET_CELLS,
                  LOOPBACK, Lab, copy_notebooks, find_chromium)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
LESSONS = {  # notebook → number of FigureWidgets it must show (each with at least one slider)
    "01_diffusion_basics.ipynb": 1,          # forward process
    "03_masking.ipynb": 1,                   # mask explorer
    "04_asymmetric_transformer.ipynb": 1,    # masked-token reconstruction
    "06_adan.ipynb": 1,                      # optimizer trajectories
    "08_training_race.ipynb": 1,             # training progression: the committed race replayed
    "09_sampling_and_cfg.ipynb": 1,          # guidance scale
    "11_what_masking_teaches.ipynb": 2,      # inpainting, attention map
}
RUN_TIMEOUT_S = 300      # one notebook, all cells (lesson 08 trains three small models live)
CELL_TIMEOUT_S = 180     # one cell (the longest, lesson 08's live race, takes about a minute)
REDRAW_TIMEOUT_S = 60    # one slider move until the new figure is shown (a failure, named, past this)
REDRAW_BUDGET_S = 5.0    # ... and what a learner may wait: every redraw within this (issue 28; on CI's machine)
MIN_TRACK_PX = 100       # a slider narrower than this is not usable (controls squeezed into one row)
EXPECTED_REMOTE = ("https://colab.research.google.com/assets/colab-badge.svg",)  # the lesson's badge (blocked)
WIDGET = ".jp-OutputArea-output .widget-vbox"   # FigureWidget: VBox(HBox(controls), Output)
NEWS_PLUGIN = "@jupyterlab/apputils-extension:notification"
NEWS_TOAST = "text=/Jupyter news/i"               # the pop-up asks "...get notified about official Jupyter news?"


@pytest.fixture(scope="module")
def workdir():
    """Temporary folder for the served notebooks, JupyterLab's state and the screenshots."""
    keep = os.environ.get("MDT_BROWSER_SHOTS")
    path = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="mdt-browser-"))
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser check files: {path}")
    return path


@pytest.fixture(scope="module")
def lab(workdir):
    """JupyterLab on 127.0.0.1 (free port, one-off token) with live widgets (MDT_STATIC=0) and the tiny profile."""
    served = workdir / "lab"
    copy_notebooks(ROOT / "notebooks", list(LESSONS), served)
    # One torch thread per kernel unless MDT_THREADS says otherwise: on 2 cores shared with the lab server,
    # Chromium and up to 4 kernels, two threads each oversubscribe (a 1.7-s redraw took 21 s under load); on an
    # idle machine one thread is the slower choice, so the 5-s bound is not flattered.
    server = Lab(served, env={"MDT_STATIC": "0", "MDT_PROFILE": os.environ.get("MDT_PROFILE", "tiny"),
                              "MDT_THREADS": os.environ.get("MDT_THREADS", "1"),
                              "MDT_TEACH_ROOT": str(ROOT)}, log=workdir / "jupyterlab.log")
    t0 = time.monotonic()
    server.start()
    print(f"jupyter lab up on {server.base} in {time.monotonic() - t0:.1f} s")
    news = server.setting_defaults(NEWS_PLUGIN).get("fetchNews")
    assert news == "false", f"the served lab's {NEWS_PLUGIN} fetchNews default is {news!r}, not 'false': run " \
                            "tools/venv.sh (it installs tools/jupyterlab-overrides.json into the venv)"
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, launched by Playwright (no browser download)."""
    try:
        from playwright import sync_api
    except ImportError:   # fail, not skip: a skipped browser check would pass CI unseen
        pytest.fail("playwright is not installed: run `make browser-check` (or pip install -e '.[browser]')")
    executable = find_chromium()
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def _png_digest(widget) -> str:
    """SHA-1 of the PNG the widget's Output shows now ('' when it shows none)."""
    src = widget.locator(".widget-output img").first.get_attribute("src", timeout=5000) or ""
    if not src.startswith("data:image/png;base64,"):
        return ""
    return hashlib.sha1(base64.b64decode(src.split(",", 1)[1])).hexdigest()


def _drag(page, slider, fraction: float) -> None:
    """Drag a noUiSlider's handle to `fraction` of its track with the mouse, as a learner would."""
    handle = slider.locator(".noUi-handle").first
    track = slider.locator(".noUi-target").first
    handle.scroll_into_view_if_needed()
    h, t = handle.bounding_box(), track.bounding_box()
    page.mouse.move(h["x"] + h["width"] / 2, h["y"] + h["height"] / 2)
    page.mouse.down()
    page.mouse.move(t["x"] + fraction * t["width"], h["y"] + h["height"] / 2, steps=8)
    page.mouse.up()


def _wait_for_redraw(widget, before: str) -> str:
    """Poll the widget's PNG until it differs from `before` (or REDRAW_TIMEOUT_S passes); returns the last digest."""
    deadline = time.monotonic() + REDRAW_TIMEOUT_S
    after = before
    while time.monotonic() < deadline:
        after = _png_digest(widget)
        if after and after != before:
            break
        time.sleep(0.1)
    return after


def _print_move(widget: int, label: str, old: str, new: str, seconds: float) -> None:
    """One line per move, printed as it happens (so a later failure still leaves every time measured so far)."""
    over = "" if seconds <= REDRAW_BUDGET_S else f"  (over {REDRAW_BUDGET_S:g} s)"
    print(f"  widget {widget} '{label}' {old} → {new}: redrawn in {seconds:.1f} s{over}", flush=True)


def _slug(text: str) -> str:
    """A file-name-safe version of a control's label."""
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_") or "control"


def _run_notebook(page, lab, name: str, kernel_stacks) -> float:
    """Open `name`, wait for its kernel, run all cells and wait until none is pending; returns seconds.

    A cell still running after CELL_TIMEOUT_S fails the test at once, naming the cell, with a stack dump of
    every thread of the kernel (busy in the user's code, or idle without having read the request)."""
    page.goto(lab.url(name))
    page.wait_for_function(JS_NOTEBOOK_READY, timeout=120_000, polling=500)
    t0 = time.monotonic()
    page.evaluate(JS_RUN_ALL)
    running, since = -1, t0
    while True:
        state = page.evaluate(JS_CELL_STATE)
        done = state["errors"] or (state["pending"] == 0 and state["kernel"] == "idle")
        now = time.monotonic()
        if state["running"] != running:
            running, since = state["running"], now
        if running >= 0 and now - since > CELL_TIMEOUT_S:
            pytest.fail(f"{name}: code cell {running} still running after {CELL_TIMEOUT_S} s "
                        f"(kernel {state['kernel']}); kernel stacks:\n{kernel_stacks()}")
        if done or now - t0 > RUN_TIMEOUT_S:
            break
        time.sleep(1)
    assert not state["errors"], f"{name}: error output in the browser: {state['errors']}"
    assert state["pending"] == 0, f"{name}: {state['pending']} of {state['total']} cells still pending " \
                                  f"after {RUN_TIMEOUT_S} s"
    return time.monotonic() - t0


@pytest.mark.parametrize("name", list(LESSONS))
def test_sliders_redraw_the_figure(lab, browser, workdir, name, kernel_stacks):
    """Run the lesson in JupyterLab, move each slider of each widget, and see a different figure each time."""
    shots = workdir / "screenshots" / name.removesuffix(".ipynb")
    shots.mkdir(parents=True, exist_ok=True)
    foreign = []

    def only_loopback(route):
        host = urlparse(route.request.url).hostname
        if host in (LOOPBACK, "localhost") or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.route("**/*", only_loopback)
    try:
        seconds = _run_notebook(page, lab, name, kernel_stacks)
        print(f"\n{name}: ran all cells in {seconds:.1f} s")
        assert page.locator(NEWS_TOAST).count() == 0, f"{name}: JupyterLab's news pop-up is showing"
        cells = page.evaluate(JS_WIDGET_CELLS)
        assert len(cells) == LESSONS[name], f"{name}: expected {LESSONS[name]} widget outputs, found {len(cells)}"
        moves = []
        for w, index in enumerate(cells):
            page.evaluate(JS_SHOW_CELL, index)
            widget = page.locator(f'[data-mdt-cell="{index}"] {WIDGET}').filter(has=page.locator(".widget-output"))
            widget = widget.first
            widget.wait_for(state="visible", timeout=30_000)
            sliders = widget.locator(".widget-slider")
            assert sliders.count() >= 1, f"{name}: widget {w} has no slider"
            widget.scroll_into_view_if_needed()
            before = _png_digest(widget)
            assert before, f"{name}: widget {w} shows no figure before any move"
            widget.screenshot(path=str(shots / f"widget{w}_0_initial.png"))
            for s in range(sliders.count()):
                slider = sliders.nth(s)
                label = slider.locator(".widget-label").first.inner_text().strip() or f"slider {s}"
                readout = slider.locator(".widget-readout").first
                old = readout.inner_text()
                track = slider.locator(".noUi-target").first.bounding_box()
                assert track and track["width"] >= MIN_TRACK_PX, \
                    f"{name}: the '{label}' slider's track is {track and track['width']:.0f} px wide; a learner " \
                    f"cannot drag it (at least {MIN_TRACK_PX} px expected)"
                _drag(page, slider, 0.8 if s % 2 == 0 else 0.65)
                t0 = time.monotonic()                    # the handle is released: the learner waits from here
                after = _wait_for_redraw(widget, before)
                seconds_to_redraw = time.monotonic() - t0
                new = readout.inner_text()
                moves.append((w, label, old, new, seconds_to_redraw))
                _print_move(*moves[-1])
                widget.screenshot(path=str(shots / f"widget{w}_{s + 1}_{_slug(label)}.png"))
                assert new != old, f"{name}: dragging '{label}' did not change its value ({old})"
                assert after != before, f"{name}: moving '{label}' from {old} to {new} did not redraw the " \
                                        f"figure within {REDRAW_TIMEOUT_S} s"
                before = after
            dropdowns = widget.locator(".widget-dropdown select")
            for d in range(dropdowns.count()):   # e.g. the race's "compare at" and lesson 06's landscape
                select = dropdowns.nth(d)
                options = select.locator("option").all_inner_texts()
                old = select.input_value()
                other = next(o for o in options if o != old)
                select.select_option(label=other)
                t0 = time.monotonic()
                after = _wait_for_redraw(widget, before)
                moves.append((w, "dropdown", old, other, time.monotonic() - t0))
                _print_move(*moves[-1])
                widget.screenshot(path=str(shots / f"widget{w}_select{d}_{_slug(other)}.png"))
                assert after != before, f"{name}: choosing '{other}' did not redraw the figure"
                before = after
        with open(workdir / "timings.jsonl", "a") as f:   # one line per lesson, for the note
            f.write(json.dumps({"lesson": name, "run_all_s": round(seconds, 1), "moves": [
                {"widget": w, "control": label, "from": a, "to": b, "redraw_s": round(dt, 2)}
                for w, label, a, b, dt in moves]}) + "\n")
        slow = [f"widget {w} '{label}' {a} → {b}: {dt:.1f} s"
                for w, label, a, b, dt in moves if dt > REDRAW_BUDGET_S]
        assert not slow, f"{name}: redraws over {REDRAW_BUDGET_S:g} s: {'; '.join(slow)}"
    finally:
        page.screenshot(path=str(shots / "page.png"), full_page=False)
        context.close()
    unexpected = [url for url in foreign if not url.startswith(EXPECTED_REMOTE)]
    assert not unexpected, f"{name}: the page tried to reach non-loopback addresses: {unexpected[:5]}"
