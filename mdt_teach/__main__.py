"""`python -m mdt_teach COMMAND ...`: the `mdt-teach` command line (what torchrun launches)."""
from mdt_teach.cli import main

raise SystemExit(main())
