"""One resolver for the small artefacts committed under `data/` (feature net, toy checkpoints, race)."""
from __future__ import annotations

import os
import subprocess
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


def repo_commit() -> str:
    """The checkout's commit as `git describe --always --dirty` (e.g. "2dee95a" or "2dee95a-dirty"), which the
    data-making tools record beside their numbers; "unknown" outside a git checkout."""
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=repo_root(), capture_output=True, text=True)
    return done.stdout.strip() or "unknown"
