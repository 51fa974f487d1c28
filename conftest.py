"""Stack dumps for notebook kernels under pytest (nbval and the browser check).

A cell that never finishes is either busy (a deadlock in the user's code) or idle (the kernel never read
the request). A timeout alone cannot tell the two apart, so every kernel started by this test session
registers `faulthandler` on SIGUSR1 (an IPython startup file in a session-only IPYTHONDIR): a signal makes
it write the Python stack of each of its threads to `<dumps>/kernel-<pid>.txt`, even while it is blocked
in C. For nbval, a timer sends the signal to the cell's kernel shortly before `--nbval-cell-timeout`
runs out, and the failure report carries the dump; the browser check calls the `kernel_stacks` fixture.
"""
from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

STARTUP = '''\
import faulthandler, os, signal
_dumps = os.environ.get("MDT_KERNEL_DUMPS")
if _dumps and os.path.isdir(_dumps):
    _dump_file = open(os.path.join(_dumps, f"kernel-{os.getpid()}.txt"), "w")
    faulthandler.register(signal.SIGUSR1, file=_dump_file, all_threads=True)
'''
DUMP_LEAD_S = 20      # the nbval timer fires this long before the cell timeout (at half of a short one)
DUMP_WAIT_S = 2.0     # time given to a signalled kernel to write its dump


def pytest_configure(config):
    folder = Path(tempfile.mkdtemp(prefix="mdt-kernels-"))
    startup = folder / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-stack-dump.py").write_text(STARTUP)
    (folder / "dumps").mkdir()
    os.environ["IPYTHONDIR"] = str(folder / "ipython")
    os.environ["MDT_KERNEL_DUMPS"] = str(folder / "dumps")


def dump_kernel_stacks(pids: list[int] | None = None) -> str:
    """Signal the given kernels (default: every kernel of this session still alive) and return their dumps."""
    dumps = Path(os.environ["MDT_KERNEL_DUMPS"])
    files = {int(p.stem.split("-")[1]): p for p in dumps.glob("kernel-*.txt")}
    signalled = []
    for pid in (pids if pids is not None else files):
        if pid not in files:
            continue
        try:
            os.kill(pid, signal.SIGUSR1)
            signalled.append(pid)
        except ProcessLookupError:
            continue
    time.sleep(DUMP_WAIT_S if signalled else 0)
    return "\n".join(f"--- kernel {pid} ---\n{files[pid].read_text()}" for pid in signalled)


@pytest.fixture
def kernel_stacks():
    """The function that dumps every live kernel's threads (for the browser check's cell timeout)."""
    return dump_kernel_stacks


def _nbval_kernel_pid(item) -> int | None:
    kernel = getattr(item.parent, "kernel", None)
    provisioner = getattr(getattr(kernel, "km", None), "provisioner", None)
    return getattr(provisioner, "pid", None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """For an nbval cell: dump its kernel's stacks if the cell is still running near the timeout."""
    timeout = getattr(item.config.option, "nbval_cell_timeout", None)
    pid = _nbval_kernel_pid(item) if type(item).__name__ == "IPyNbCell" else None
    timer = None
    if pid and timeout:
        def fire():
            item._kernel_stacks = dump_kernel_stacks([pid])
        timer = threading.Timer(max(float(timeout) - DUMP_LEAD_S, float(timeout) / 2), fire)
        timer.daemon = True
        timer.start()
    yield
    if timer:
        timer.cancel()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    stacks = getattr(item, "_kernel_stacks", None)
    if report.when == "call" and stacks:
        report.sections.append(("kernel stacks near the cell timeout", stacks))
