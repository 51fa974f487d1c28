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
