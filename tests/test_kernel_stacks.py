"""A notebook cell that runs past --nbval-cell-timeout fails naming the cell, with its kernel's stack dump."""
import os
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def test_a_stuck_cell_fails_with_the_kernels_stacks(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.cells = [nbformat.v4.new_code_cell("import time\nstarted = True"),
                nbformat.v4.new_code_cell("def stuck_here():\n    time.sleep(600)\n\nstuck_here()")]
    nbformat.write(nb, tmp_path / "stuck.ipynb")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # the repository's conftest.py, loaded as a plugin because this notebook lives outside the repository
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q",
                             "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=6", "-o", "addopts=",
                             str(tmp_path / "stuck.ipynb")], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    out = result.stdout
    assert result.returncode == 1 and "1 failed, 1 passed" in out, out[-2000:]
    assert "stuck.ipynb::Cell 1" in out                        # the cell is named
    assert "kernel stacks near the cell timeout" in out        # the dump is attached ...
    assert "in stuck_here" in out and "Current thread" in out   # ... and shows where the kernel waits
