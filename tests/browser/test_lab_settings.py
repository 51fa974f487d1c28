"""JupyterLab's news pop-up ("get notified about official Jupyter news?") is off by the project's own settings:
tools/jupyterlab-overrides.json, which tools/venv.sh installs into the venv's application settings directory.
(Not a browser test: it runs with the unit tests. The browser check asserts the served lab's default too.)"""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = ROOT / "tools" / "jupyterlab-overrides.json"
PLUGIN = "@jupyterlab/apputils-extension:notification"


def test_the_project_overrides_switch_the_news_off_in_the_installed_jupyterlab():
    """The file parses, answers "never" (the string "false") and names a setting this JupyterLab has."""
    from jupyterlab.commands import get_app_dir

    settings = json.loads(OVERRIDES.read_text())[PLUGIN]
    assert settings["fetchNews"] == "false"
    package, name = PLUGIN.split(":")
    schema = json.loads((Path(get_app_dir()) / "schemas" / package / f"{name}.json").read_text())
    allowed = {choice["const"] for choice in schema["properties"]["fetchNews"]["oneOf"]}
    assert "false" in allowed and set(settings) <= set(schema["properties"])


def test_the_venv_lab_reads_the_project_overrides():
    """tools/venv.sh copied the file where this interpreter's `jupyter lab` looks for default overrides."""
    from jupyterlab.commands import get_app_dir

    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("not the project's .venv: copy tools/jupyterlab-overrides.json into "
                    f"{get_app_dir()}/settings/overrides.d/ to switch the news pop-up off there")
    installed = Path(get_app_dir()) / "settings" / "overrides.d" / "mdt-teach.json"
    assert installed.is_file(), f"{installed} is missing: run tools/venv.sh (make venv)"
    assert json.loads(installed.read_text()) == json.loads(OVERRIDES.read_text())
