"""One resolver for the small artefacts committed under `data/` (feature net, toy checkpoints, race)."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The repository root (the folder above the package), or MDT_TEACH_ROOT when set."""
    return Path(os.environ.get("MDT_TEACH_ROOT", PACKAGE_DIR.parent))


def data_file(relpath: str) -> Path:
    """Path of a committed artefact under data/; a clear FileNotFoundError when it is not there."""
    path = repo_root() / "data" / relpath
    if not path.exists():
        raise FileNotFoundError(
            f"{relpath} is not in {path.parent}: mdt_teach needs the repository's data/ folder; "
            "install from a clone with `pip install -e .` (or set MDT_TEACH_ROOT to the clone).")
    return path
