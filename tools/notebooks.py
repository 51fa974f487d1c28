"""The lesson pipeline: notebooks/NN_slug.py (py:percent, the source) → notebooks/NN_slug.ipynb.

    python tools/notebooks.py build            regenerate every .ipynb from its .py (one direction)
    python tools/notebooks.py check            regenerate into a temp dir; fail if any .ipynb differs
    python tools/notebooks.py refresh [NN ..]  execute (tiny profile, MDT_STATIC=1) and store reference
                                               outputs on `# NBVAL_CHECK_OUTPUT` cells only
    python tools/notebooks.py badges           rewrite every lesson's Colab badge and clone line from
                                               pyproject's [project.urls], and the README lesson table

The committed .ipynb carries the outputs of its last `refresh` — stdout, text results and PNG figures (the
widgets drawn as static grids, MDT_STATIC=1) — so a lesson reads on GitHub or in a Colab preview before it
runs; no widget state; the standard `python3` kernelspec (JupyterLab opens the lesson with a kernel instead
of asking). `build` keeps the stored outputs of every cell whose source is unchanged (jupytext --update) and
drops those of an edited cell; `refresh` is the only way outputs are produced.
"""
from __future__ import annotations

import argparse
import filecmp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
GPU_LESSONS = {"08", "09", "10"}  # Colab opens these with a GPU runtime (notebook metadata)
CHECK_MARK = "NBVAL_CHECK_OUTPUT"
SKIP_MARK = "NBVAL_SKIP"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
KEPT_MIMES = ("text/plain", "image/png")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def lesson_sources(folder: Path = NOTEBOOKS, only: list[str] | None = None) -> list[Path]:
    """The lesson sources NN_slug.py in course order, optionally only those whose NN is listed."""
    paths = sorted(folder.glob("[0-9][0-9]_*.py"))
    if only:
        paths = [p for p in paths if p.name[:2] in only]
    return paths


def repo_url_and_ref() -> tuple[str, str]:
    """The repository URL and git ref the badges and Colab clone lines point at (one place)."""
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    return urls["Repository"].rstrip("/"), urls["GitRef"]


def colab_badge(name: str) -> str:
    """Markdown of the Open-in-Colab badge for notebooks/<name>.ipynb."""
    url, ref = repo_url_and_ref()
    path = url.split("github.com/")[-1]
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{path}/blob/{ref}/notebooks/{name}.ipynb)")


def clean_notebook(nb) -> None:
    """Keep what a reader needs before running anything: stdout, text results and PNG figures of every code
    cell (a live widget's view is dropped: without its kernel it cannot draw); no widget state, no cell
    metadata; execution counts numbered by code-cell position on cells with outputs; standard kernelspec."""
    nb.metadata["kernelspec"] = dict(KERNELSPEC)   # without one, JupyterLab greets a learner with "Select Kernel"
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("language_info", None)
    code_index = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        code_index += 1
        cell.metadata = {}
        kept = []
        for out in cell.outputs:
            if out.output_type == "stream" and out.name == "stdout":
                kept.append(out)
            elif out.output_type in ("execute_result", "display_data") and WIDGET_MIME not in out.data:
                out.data = {k: v for k, v in out.data.items() if k in KEPT_MIMES}
                out.metadata = {}
                if out.output_type == "execute_result":
                    out.execution_count = code_index
                if out.data:
                    kept.append(out)
        cell.outputs = kept
        # nbval wants a count on reference cells; numbering by position keeps it stable across runs
        cell.execution_count = code_index if kept or CHECK_MARK in cell.source else None


def build(folder: Path = NOTEBOOKS, only: list[str] | None = None) -> list[Path]:
    """Regenerate NN.ipynb from NN.py with `jupytext --to ipynb --update`, then clean it."""
    import nbformat

    written, sources = [], lesson_sources(folder, only)
    if sources:   # one jupytext process for all of them (each NN.py → NN.ipynb beside it)
        subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--to", "ipynb", "--update",
                        *(str(src) for src in sources)], check=True, cwd=folder)
    for src in sources:
        dst = src.with_suffix(".ipynb")
        nb = nbformat.read(dst, as_version=4)
        clean_notebook(nb)
        if src.name[:2] in GPU_LESSONS:
            nb.metadata["accelerator"] = "GPU"
            nb.metadata["colab"] = {"gpuType": "T4", "provenance": []}
        nbformat.write(nb, dst)
        written.append(dst)
    return written


def check(folder: Path = NOTEBOOKS) -> list[str]:
    """Regenerate every notebook in a temporary copy; return the names whose .ipynb would change."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "notebooks"
        shutil.copytree(folder, copy, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        shutil.copy(ROOT / "jupytext.toml", Path(tmp) / "jupytext.toml")
        stale = []
        for src in lesson_sources(folder):
            committed = src.with_suffix(".ipynb")
            if not committed.exists():
                stale.append(f"{committed.name} (missing)")
        build(copy)
        for src in lesson_sources(folder):
            committed = src.with_suffix(".ipynb")
            fresh = copy / committed.name
            if committed.exists() and not filecmp.cmp(committed, fresh, shallow=False):
                stale.append(committed.name)
        return stale


def shrink_png(b64: str) -> str:
    """A stored figure (base64 PNG) re-encoded with an adaptive 256-colour palette, if that is smaller: the
    committed notebooks stay small (`refresh` only; `build` never re-encodes what is stored)."""
    import base64
    import io

    from PIL import Image

    raw = base64.b64decode(b64)
    out = io.BytesIO()
    Image.open(io.BytesIO(raw)).convert("RGB").quantize(256).save(out, "PNG", optimize=True)
    return base64.b64encode(out.getvalue()).decode() if out.tell() < len(raw) else b64


def refresh(only: list[str] | None = None, timeout: int = 600) -> None:
    """Execute lessons in the tiny profile with MDT_STATIC=1 and store their checked outputs."""
    import nbformat
    from nbclient import NotebookClient

    os.environ.update(MDT_PROFILE="tiny", MDT_STATIC="1")
    for path in build(NOTEBOOKS, only):
        nb = nbformat.read(path, as_version=4)
        skipped = {i: c.source for i, c in enumerate(nb.cells) if c.cell_type == "code" and SKIP_MARK in c.source}
        for i in skipped:  # cells nbval skips (real launches, hub downloads) are not run here either
            nb.cells[i].source = "pass"
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
        for i, source in skipped.items():
            nb.cells[i].source = source
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                if "image/png" in out.get("data", {}):
                    out.data["image/png"] = shrink_png(out.data["image/png"])
        clean_notebook(nb)
        nbformat.write(nb, path)
        print(f"refreshed {path.name}")
    build(NOTEBOOKS, only)


_BADGE_RE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")
_CLONE_RE = re.compile(r'REPO, REF = "[^"]*", "[^"]*"')


def lesson_title(src: Path) -> str:
    """The lesson's title: its first line `# # NN · Title`, without the number."""
    first = next(line for line in src.read_text().splitlines() if line.startswith("# # "))
    return first.split("·", 1)[1].strip()


def lesson_widgets(src: Path) -> list[str]:
    """The widgets a lesson shows: every `*_widget(` call in its code, as words ("forward process")."""
    calls = re.findall(r"^(?!def )\s*(?:\w+ = )?(\w+)_widget\(", src.read_text(), re.M)
    return list(dict.fromkeys(name.replace("_", " ") for name in calls))


def readme_table() -> str:
    """The README's lesson table: number, title, widgets and Colab badge of every lesson."""
    rows = ["| # | lesson | widget | Colab |", "|---|---|---|---|"]
    rows += [f"| {src.name[:2]} | {lesson_title(src)} | {', '.join(lesson_widgets(src)) or '—'} | "
             f"{colab_badge(src.stem)} |" for src in lesson_sources()]
    return "\n".join(rows)


_TABLE_RE = re.compile(r"<!-- lessons -->\n(?:.*?\n)?<!-- /lessons -->", re.S)


def badges() -> None:
    """Rewrite each lesson's Colab badge and clone line, and the README table, from [project.urls]."""
    url, ref = repo_url_and_ref()
    for src in lesson_sources():
        text = src.read_text()
        text = _BADGE_RE.sub(colab_badge(src.stem), text)
        text = _CLONE_RE.sub(f'REPO, REF = "{url}", "{ref}"', text)
        src.write_text(text)
    readme = ROOT / "README.md"
    readme.write_text(_TABLE_RE.sub(f"<!-- lessons -->\n{readme_table()}\n<!-- /lessons -->", readme.read_text()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("command", choices=["build", "check", "refresh", "badges"])
    parser.add_argument("lessons", nargs="*", help="two-digit lesson numbers (default: all)")
    args = parser.parse_args(argv)
    if args.command == "build":
        for p in build(only=args.lessons):
            print(f"built {p.relative_to(ROOT)}")
    elif args.command == "check":
        stale = check()
        if stale:
            print("These notebooks are not what their .py sources generate: " + ", ".join(stale)
                  + ". Run `python tools/notebooks.py build` and commit the .ipynb files.")
            return 1
        print(f"{len(lesson_sources())} notebooks match their sources")
    elif args.command == "refresh":
        refresh(args.lessons)
    else:
        badges()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
