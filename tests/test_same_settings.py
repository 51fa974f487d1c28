"""One rule, one sentence: a resumed run, a race, FID sampling and a latent cache each refuse to continue with
settings other than those they were started with, through `same_settings.refuse_other_settings`."""
import json
from dataclasses import replace

import pytest

from mdt_teach import fid_samples, latent_cache, race
from mdt_teach.recipe import TrainConfig, merge_for_resume
from mdt_teach.same_settings import changed_settings, refuse_other_settings

SHAPE = r"was made with other settings \({}\); {}"


def test_the_sentence_names_every_change_and_the_remedy():
    assert changed_settings({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == {"b": (2, 3), "c": (None, 4)}
    assert changed_settings({"a": 1, "b": 2}, {"a": 1, "b": 3}, keys=["a"]) == {}
    refuse_other_settings("x", {"a": 1}, {"a": 1}, "never said")                    # nothing changed: silent
    with pytest.raises(ValueError, match=SHAPE.format("b 2 → 3, c None → 4", "start again")):
        refuse_other_settings("runs/x", {"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}, "start again")


def test_each_resumable_job_refuses_in_that_shape(tmp_path):
    saved = TrainConfig(model="DiT-T/4", lr=1e-3, out="r")
    with pytest.raises(ValueError, match=SHAPE.format("model 'DiT-T/4' → 'MDTv2-T/4'", "drop those flags")):
        merge_for_resume(TrainConfig(model="MDTv2-T/4", resume=True), saved, "r")
    record = tmp_path / "dit_seed0.json"
    record.write_text(json.dumps({"world": "smileys@2", "settings": race.RaceSettings().__dict__}))
    with pytest.raises(ValueError, match=SHAPE.format("budget 12.0 → 3.0", "delete it or race")):
        race.finished(record, race.RaceSettings(budget=3.0))
    s = fid_samples.FidSampling(ckpt="c.pt", n=8)
    fid_samples.check_settings(tmp_path / "fid", s)
    with pytest.raises(ValueError, match=SHAPE.format("n 8 → 16", "use another --out")):
        fid_samples.check_settings(tmp_path / "fid", replace(s, n=16))
    plan = {k: 1 for k in latent_cache._PLAN_KEYS}
    latent_cache._start_manifest(tmp_path, plan)
    with pytest.raises(ValueError, match=SHAPE.format("image_size 1 → 2", "pass another OUT folder")):
        latent_cache._start_manifest(tmp_path, {**plan, "image_size": 2})
