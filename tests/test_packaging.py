"""Packaging: pyproject ↔ environment.yml agree, the console script works, the README quick start."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}


def _split(req: str) -> tuple[str, str]:
    name, bound = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", req).groups()
    return name.lower().replace("_", "-"), bound.replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(_split(d) for d in env["dependencies"] if isinstance(d, str))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert conda["python"].startswith("=3.11")
    for req in project["dependencies"]:
        name, bound = _split(req)
        name = CONDA_NAMES.get(name, name)
        assert name in conda, f"{name} is in pyproject but not in environment.yml"
        assert conda[name] == bound, f"{name}: pyproject says {bound}, environment.yml {conda[name]}"
    listed = {CONDA_NAMES.get(_split(r)[0], _split(r)[0]) for r in project["dependencies"]}
    extra = set(conda) - listed - {"python", "pip"}
    assert not extra, f"environment.yml lists {extra}, which pyproject does not"
    assert any(re.search(r'-e "\.\[.*notebooks.*\]"', p) and "dev" in p for p in pip)


def test_runtime_dependencies_have_lower_bounds_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"]:
        assert ">=" in req and "==" not in req and "<" not in req.replace("<=", ""), req


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "mdt_teach", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for cmd in ["train", "sample", "sample-fid", "fid", "eval", "convert", "plan", "cache-latents", "race"]:
        assert cmd in out


def test_readme_quick_start_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make run" in readme
    assert "make test" in ci
