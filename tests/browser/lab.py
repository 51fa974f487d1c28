"""A JupyterLab on loopback and a Debian Chromium driven by Playwright, for the opt-in browser check.

Everything here is local: the server listens on 127.0.0.1 with a one-off token, Chromium runs headless
with its background networking switched off, and every request the page makes to a host other than
127.0.0.1 is refused and recorded (the test asserts that list stays empty).
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

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
LOOPBACK = "127.0.0.1"


def find_chromium() -> str:
    """Path of Debian's Chromium (or $MDT_CHROMIUM); one clear error when it is missing."""
    for path in (os.environ.get("MDT_CHROMIUM"), *CHROMIUM_CANDIDATES):
        if path and Path(path).exists():
            return path
    raise RuntimeError("no Chromium found at /usr/bin/chromium: install Debian's package "
                       "(`apt-get install chromium`, or `make browser-check`, which does it) or set MDT_CHROMIUM")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class Lab:
    """`jupyter lab` serving a temporary folder; start() waits until it answers, stop() ends it."""

    def __init__(self, root: Path, env: dict | None = None, log: Path | None = None):
        self.root, self.port, self.token = Path(root), free_port(), secrets.token_hex(16)
        self.env = {**os.environ, **(env or {})}
        self.log_path = log or self.root / "jupyterlab.log"
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def url(self, notebook: str) -> str:
        """The lab URL that opens `notebook` (a path relative to the served folder)."""
        return f"{self.base}/lab/tree/{notebook}?token={self.token}&reset"

    def start(self, timeout: float = 90.0) -> "Lab":
        """Launch the server with an isolated config, workspace and settings folder, and wait for /api/status."""
        state = self.root.parent / "jupyter-state"
        for sub in ("config", "data", "runtime", "workspaces", "settings"):
            (state / sub).mkdir(parents=True, exist_ok=True)
        env = {**self.env, "JUPYTER_CONFIG_DIR": str(state / "config"), "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
               "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
               "JUPYTERLAB_SETTINGS_DIR": str(state / "settings")}
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.ip={LOOPBACK}",
               f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--LabApp.expose_app_in_browser=True",
               "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
               "--LabApp.news_url=None", "--LabApp.extension_manager=readonly"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:   # CI and these machines run as root
            cmd.append("--allow-root")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with code {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.base}/api/status?token={self.token}", timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"jupyter lab did not answer on {self.base} within {timeout:.0f} s; see {self.log_path}")

    def setting_defaults(self, plugin: str) -> dict:
        """The defaults the server hands the page for `plugin`'s settings (its schema after any overrides)."""
        url = f"{self.base}/lab/api/settings/{plugin}?token={self.token}"
        with urllib.request.urlopen(url, timeout=30) as reply:
            schema = json.load(reply)["schema"]
        return {key: spec.get("default") for key, spec in schema.get("properties", {}).items()}

    def stop(self) -> None:
        """Ask the server to shut down (kernels included), then make sure the process is gone."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                req = urllib.request.Request(f"{self.base}/api/shutdown?token={self.token}", method="POST")
                urllib.request.urlopen(req, timeout=5).close()
                self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self.proc = None


def copy_notebooks(source: Path, names: list[str], dest: Path) -> None:
    """Copy the lessons to be opened, so autosave never touches the repository's notebooks."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(source / name, dest / name)


# JavaScript run in the page through JupyterLab's exposed application (window.jupyterapp).
JS_NOTEBOOK_READY = """() => {
  const app = window.jupyterapp; if (!app) return false;
  const w = app.shell.currentWidget;
  return !!(w && w.content && w.context && w.context.isReady && w.sessionContext
            && w.sessionContext.session && w.sessionContext.session.kernel
            && w.sessionContext.session.kernel.status === 'idle');
}"""

JS_RUN_ALL = "() => window.jupyterapp.commands.execute('notebook:run-all-cells')"

JS_CELL_STATE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  const errors = [];
  let pending = 0, running = -1;
  cells.forEach((c, i) => {
    const busy = c.promptNode && c.promptNode.textContent.includes('*');
    if (busy && running < 0) running = i;
    if (c.model.executionCount === null || busy) pending += 1;
    const outs = c.model.outputs.toJSON();
    for (const o of outs) if (o.output_type === 'error') errors.push(`code cell ${i}: ${o.ename}: ${o.evalue}`);
  });
  return {pending, running, errors, total: cells.length, kernel: w.sessionContext.session.kernel.status};
}"""

# Code cells whose outputs hold a widget view; JupyterLab renders only the cells near the viewport
# (windowed notebooks), so each one is scrolled to and tagged before the test looks for it in the DOM.
JS_WIDGET_CELLS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const found = [];
  w.content.widgets.forEach((c, i) => {
    if (c.model.type !== 'code') return;
    const outs = c.model.outputs.toJSON();
    if (outs.some(o => o.data && o.data['application/vnd.jupyter.widget-view+json'])) found.push(i);
  });
  return found;
}"""

JS_SHOW_CELL = """async (i) => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  const cell = nb.widgets[i];
  await nb.scrollToItem(i, 'start');
  nb.activeCellIndex = i;
  await cell.ready;
  cell.node.setAttribute('data-mdt-cell', String(i));
  return true;
}"""
