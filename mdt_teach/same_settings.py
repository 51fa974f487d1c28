"""The one rule of every job that can be stopped and continued (a training run, a race, FID sampling, a latent
cache): it continues only with the settings it was started with, and otherwise says, in one sentence, what
changed and what to do:

    <folder or file> was made with other settings (<name> <then> → <now>, …); <what to do>
"""
from __future__ import annotations


def changed_settings(made: dict, asked: dict, keys=None) -> dict:
    """{name: (then, now)} for every key (default: all of both) whose value differs."""
    names = list(dict.fromkeys([*made, *asked])) if keys is None else list(keys)
    return {k: (made.get(k), asked.get(k)) for k in names if made.get(k) != asked.get(k)}


def refuse_other_settings(where, made: dict, asked: dict, remedy: str, keys=None) -> None:
    """Raise one ValueError naming every changed setting, unless `asked` matches `made` (on `keys`)."""
    changed = changed_settings(made, asked, keys)
    if changed:
        what = ", ".join(f"{k} {then!r} → {now!r}" for k, (then, now) in changed.items())
        raise ValueError(f"{where} was made with other settings ({what}); {remedy}")
