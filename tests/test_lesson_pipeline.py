"""The lesson pipeline: every .ipynb is what its .py source generates; only checked outputs kept."""
import json
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


def test_committed_notebooks_hold_only_checked_text_outputs():
    for src in pipeline.lesson_sources():
        nb = json.loads(src.with_suffix(".ipynb").read_text())
        assert "widgets" not in nb["metadata"]
        # the standard python3 kernel, so JupyterLab opens the lesson without a "Select Kernel" dialog
        assert nb["metadata"]["kernelspec"] == pipeline.KERNELSPEC, src.name
        for cell in nb["cells"]:
            if cell["cell_type"] != "code":
                continue
            if pipeline.CHECK_MARK not in "".join(cell["source"]):
                assert cell["outputs"] == [], f"{src.name}: unchecked cell keeps outputs"
                assert cell["execution_count"] is None
            for out in cell["outputs"]:
                assert set(out.get("data", {})) <= {"text/plain"}, f"{src.name}: non-text output"


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
