"""The lesson pipeline: every .ipynb is what its .py source generates, with its stored figures and text."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import notebooks as pipeline  # noqa: E402


def test_every_lesson_has_a_generated_notebook_in_sync():
    assert pipeline.lesson_sources(), "no lessons found"
    stale = pipeline.check()
    assert stale == [], f"run `python tools/notebooks.py build`: stale {stale}"


NOTEBOOKS_CAP_BYTES = 3_000_000   # all committed .ipynb together (figures included); a PNG at most 300 kB
PNG_CAP_BYTES = 300_000
FIGURE_CELL = re.compile(r"^(?:plt\.show\(\)|(?:\w+ = )?\w+_widget\()", re.M)


def _code_cells(src):
    nb = json.loads(src.with_suffix(".ipynb").read_text())
    return nb, [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_committed_notebooks_carry_their_figures_and_text():
    """Every cell that draws (plt.show() or a widget, drawn static by `refresh`) stores its PNG; outputs are
    stdout, text and PNG only — no widget state, no stderr — so a lesson reads before it runs."""
    for src in pipeline.lesson_sources():
        nb, cells = _code_cells(src)
        assert "widgets" not in nb["metadata"]
        # the standard python3 kernel, so JupyterLab opens the lesson with no "Select Kernel" dialog
        assert nb["metadata"]["kernelspec"] == pipeline.KERNELSPEC, src.name
        for i, cell in enumerate(cells, start=1):
            source = "".join(cell["source"])
            for out in cell["outputs"]:
                assert out["output_type"] != "stream" or out["name"] == "stdout", f"{src.name} cell {i}: stderr"
                assert set(out.get("data", {})) <= {"text/plain", "image/png"}, f"{src.name} cell {i}"
                assert len(out.get("data", {}).get("image/png", "")) * 3 // 4 <= PNG_CAP_BYTES, f"{src.name} cell {i}"
            if FIGURE_CELL.search(source) and pipeline.SKIP_MARK not in source:
                assert any("image/png" in out.get("data", {}) for out in cell["outputs"]), \
                    f"{src.name} code cell {i} draws a figure but stores none: run `make refresh`"
            if pipeline.CHECK_MARK in source:
                assert cell["execution_count"] == i, f"{src.name} cell {i}: nbval needs its stored count"


def test_notebooks_folder_stays_under_its_size_cap():
    total = sum(p.stat().st_size for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert total <= NOTEBOOKS_CAP_BYTES, f"committed notebooks weigh {total / 1e6:.2f} MB"


def test_build_keeps_the_outputs_of_unchanged_cells(tmp_path):
    """Editing one markdown cell and rebuilding keeps every stored figure; the edited text is in."""
    copy = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "jupytext.toml", tmp_path / "jupytext.toml")
    src = next(s for s in pipeline.lesson_sources(copy) if "image/png" in s.with_suffix(".ipynb").read_text())
    before = [c["outputs"] for c in _code_cells(src)[1]]
    src.write_text(src.read_text().replace("## Summary", "## Summary (edited)", 1))
    pipeline.build(copy, only=[src.name[:2]])
    _, cells = _code_cells(src)
    assert [c["outputs"] for c in cells] == before
    assert "## Summary (edited)" in src.with_suffix(".ipynb").read_text()


def test_gpu_minded_lessons_ask_colab_for_a_gpu():
    for src in pipeline.lesson_sources():
        meta = json.loads(src.with_suffix(".ipynb").read_text())["metadata"]
        assert (meta.get("accelerator") == "GPU") == (src.name[:2] in pipeline.GPU_LESSONS), src.name


def test_each_lesson_follows_the_template():
    for src in pipeline.lesson_sources():
        text = src.read_text()
        assert text.startswith(f"# %% [markdown]\n# # {src.name[:2]} · "), src.name
        assert pipeline.colab_badge(src.stem) in text, f"{src.name}: badge differs from pyproject"
        assert "run = mdt_teach.setup()" in text, src.name
        assert "NBVAL_CHECK_OUTPUT" in text and "\nassert " in text, src.name
        assert "## Summary" in text and "## Exercises" in text, src.name


def test_readme_lists_every_lesson_with_its_badge():
    readme = (ROOT / "README.md").read_text()
    assert pipeline.readme_table() in readme, "run `python tools/notebooks.py badges`"


def test_editing_a_source_without_rebuilding_is_caught(tmp_path, monkeypatch):
    """The check fails when a lesson's .py changes and its .ipynb is not regenerated."""
    copy = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", copy)
    src = pipeline.lesson_sources(copy)[0]
    src.write_text(src.read_text() + "\n# %%\nprint('edited')\n")
    monkeypatch.setattr(pipeline, "ROOT", ROOT)
    assert pipeline.check(copy) == [src.with_suffix(".ipynb").name]


def test_colab_setup_cell_runs_only_on_colab(tmp_path, monkeypatch):
    """Simulate Colab (no network): the setup cell clones at the badge's ref and installs editable."""
    src = pipeline.lesson_sources()[0].read_text()
    cell = src.split("# %%\n")[1]
    url, ref = pipeline.repo_url_and_ref()
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: calls.append(cmd))
    exec(cell, {})
    assert calls == []  # not on Colab: nothing happens
    monkeypatch.setitem(sys.modules, "google.colab", object())
    exec(cell, {})
    assert calls[0][:6] == ["git", "clone", "--depth", "1", "--branch", ref] and calls[0][6] == url
    assert calls[1][-2:] == ["-e", "/content/mdt-teach"]
