"""Files that must never be half-written or run code: one atomic writer, one safe reader, the ckpt/ folder.

Writing: every file the package produces goes through `atomic_write` — written to `NAME.tmp`, flushed to
disk, then renamed over `NAME`, so a crash or `kill -9` leaves either the old file or the new one.

Reading: every checkpoint (ours, the official MDT / DiT releases, the lesson checkpoints, the feature net)
goes through `read_torch_file`, i.e. `torch.load(weights_only=True)`. That unpickler rebuilds tensors,
numbers, strings, lists, tuples and dicts only; a pickle that asks for anything else (a `__reduce__`
payload, a class of ours) is refused before any of it runs. The one extra name allowed is
`argparse.Namespace`, which DiT's training checkpoints store as `args`. So our checkpoints hold only plain
data: the RNG states as tensors and lists (`config.capture_rng`), configs as dicts.

A training checkpoint (`FORMAT`) is a dict: step, model, ema, opt, scaler, rng (one per rank), world_size,
data position, config, model_config, elapsed seconds. Format 1 stored numpy's RNG state as an ndarray,
which the safe reader refuses; `mdt-teach convert --upgrade OLD.pt` rewrites such a file once.
"""
from __future__ import annotations

import argparse
import json
import os
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .config import plain_rng

FORMAT = "mdt_teach.train/2"
OLD_FORMAT = "mdt_teach.train/1"
CKPT_PREFIX = "ckpt_"
SAFE_GLOBALS = [argparse.Namespace]          # DiT's checkpoints: {"model", "ema", "opt", "args": Namespace}
_FORMAT_1_GLOBALS = [np.ndarray, np.dtype, type(np.dtype(np.uint32)),   # numpy's RNG state in format 1
                     getattr(np, "_core", getattr(np, "core", None)).multiarray._reconstruct]


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

def atomic_write(path, data: bytes | str | Callable) -> Path:
    """Write `data` (bytes, text, or a function that writes to a binary file) to `path` via a temporary
    file, fsync and os.replace: readers see the old file or the new one, never a part."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_save(obj, path) -> Path:
    """torch.save through `atomic_write`."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def write_json(path, obj) -> Path:
    """JSON (indented) through `atomic_write`."""
    return atomic_write(path, json.dumps(obj, indent=1))


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------

def read_torch_file(path, map_location="cpu", mmap: bool = False, extra_globals=()) -> object:
    """torch.load(weights_only=True) with one clear sentence for a missing, foreign, truncated or unsafe file.

    `mmap=True` maps the tensors instead of reading them: a tensor's bytes are read from disk only when it is
    used, and the ranks of a node share the pages. Files from before torch 1.6 (not zip archives) cannot be
    mapped and are read whole."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; check the path")
    mmap = mmap and zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS + list(extra_globals)):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # noqa: BLE001 - unpickler, zip and format errors all mean "not loadable"
        unsafe = _unsafe_globals(path) if "Weights only load failed" in str(err) else []
        if not unsafe:
            raise ValueError(f"{path} is not a readable PyTorch checkpoint (truncated, or not a torch file: "
                             f"{type(err).__name__}); use a complete .pt file") from None
        if unsafe and set(unsafe) <= {f"{g.__module__}.{g.__qualname__}" for g in _FORMAT_1_GLOBALS}:
            raise ValueError(f"{path} is an mdt_teach checkpoint of format 1 (numpy RNG state inside); upgrade it "
                             f"once with `mdt-teach convert --upgrade {path}`") from None
        raise ValueError(f"{path} asks to rebuild Python objects ({', '.join(unsafe[:3])}), "
                         "so it was not loaded: nothing in it ran; only load checkpoints you trust, saved as "
                         "plain tensors") from None


def _unsafe_globals(path: Path) -> list[str]:
    """The Python names a pickle asks for beyond the safe set (read without unpickling anything)."""
    try:
        return [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(path)
                if g != "argparse.Namespace"]
    except Exception:  # noqa: BLE001 - a file too broken to list: no names to show
        return []


def read_checkpoint(path, map_location="cpu") -> dict:
    """One of our training checkpoints (format 2), memory-mapped; keep it on the CPU to restore RNG states."""
    state = read_torch_file(path, map_location=map_location, mmap=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not an mdt_teach training checkpoint; official MDT / DiT weights load with "
                         "`mdt-teach sample --ckpt` or mdt_teach.compat.load_official")
    return state


def upgrade_checkpoint(path, out=None) -> Path:
    """Rewrite a format-1 training checkpoint as format 2 (numpy RNG state → plain lists); in place by default.

    Still weights_only: the only names allowed besides the safe set are numpy's array reconstruction."""
    state = read_torch_file(path, extra_globals=_FORMAT_1_GLOBALS)
    if not isinstance(state, dict) or state.get("format") not in (OLD_FORMAT, FORMAT):
        raise ValueError(f"{path} is not an mdt_teach training checkpoint, so there is nothing to upgrade")
    state["rng"] = [plain_rng(r) for r in state["rng"]]
    state["format"] = FORMAT
    return atomic_save(state, Path(out or path))


# ----------------------------------------------------------------------------------------------
# The ckpt/ folder of a run: ckpt_0001234.pt, the newest `keep` kept
# ----------------------------------------------------------------------------------------------

def checkpoint_path(folder, step: int) -> Path:
    """RUN/ckpt/ckpt_0001234.pt."""
    return Path(folder) / "ckpt" / f"{CKPT_PREFIX}{step:07d}.pt"


def list_checkpoints(folder) -> list[Path]:
    """Finished checkpoints of a run folder, oldest first (temporary files are ignored)."""
    ckpt_dir = Path(folder) / "ckpt"
    return sorted(ckpt_dir.glob(f"{CKPT_PREFIX}*.pt")) if ckpt_dir.is_dir() else []


def prune_checkpoints(folder, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints."""
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)


def latest_checkpoint(folder) -> Path:
    """The newest checkpoint of a run folder, or a FileNotFoundError saying how to start instead."""
    found = list_checkpoints(folder)
    if not found:
        raise FileNotFoundError(f"no checkpoint in {folder}/ckpt to resume from; start without --resume")
    return found[-1]


def find_resumable(root=Path("runs")) -> Path:
    """The run folder under `root` whose newest checkpoint is the most recent."""
    runs = [p for p in Path(root).glob("*") if list_checkpoints(p)] if Path(root).is_dir() else []
    if not runs:
        raise FileNotFoundError(f"no run with a checkpoint under {root}/; pass --out RUN_FOLDER with --resume")
    return max(runs, key=lambda p: latest_checkpoint(p).stat().st_mtime)
