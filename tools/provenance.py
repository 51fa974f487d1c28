"""What every data-making tool in tools/ records beside its numbers: the command that made them and the commit.

    from provenance import provenance
    write_json(out, {**provenance(__file__, argv), ...})

`made_by` is the command line as typed (`python tools/NAME.py ARGS`; no ARGS = the tool's defaults at that
commit) and `commit` is `git describe --always --dirty` (`mdt_teach.resources.repo_commit`), taken when the
tool starts, so it names the code the run ran. tests/test_tools.py holds every committed JSON under data/ to it.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from mdt_teach.resources import repo_commit


def provenance(tool: str, argv=None) -> dict:
    """{"made_by": "python tools/NAME.py ARGS", "commit": "<hash>[-dirty]"} of a tool's `main(argv)`
    (argv None = the command line)."""
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    return {"made_by": shlex.join(["python", f"tools/{Path(tool).name}", *args]), "commit": repo_commit()}


def lesson_checkpoint_tool(doc: str, n: int, out: str, argv=None, extra=None):
    """The shared command line of the tools that measure a lesson checkpoint (--n, --out, --checkpoint, --threads,
    plus `extra(parser)`): returns (args, model, checkpoint info), with torch's threads already set."""
    import argparse

    import torch
    from mdt_teach.lessons import load_lesson_checkpoint

    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--n", type=int, default=n)
    parser.add_argument("--out", default=out)
    parser.add_argument("--checkpoint", default="data/lesson09_mdtv2_tiny.pt",
                        help="a lesson checkpoint (default: lesson 09's)")
    parser.add_argument("--threads", type=int, default=2)
    if extra:
        extra(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = Path(__file__).resolve().parents[1]
    model, info = load_lesson_checkpoint(str(root / args.checkpoint))      # an absolute path stays as it is
    return args, model, info
