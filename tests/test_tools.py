"""Every data-making tool in tools/ runs here end to end in miniature (tiny models, a handful of faces, samples and
steps, written under tmp_path), and what it writes has the structure of the committed artefact under data/ that
the docs, the README and the lessons read; every committed JSON says which tool made it, how, at which commit.

Two chains share one miniature each, as the committed files were made: the main job's run → its lesson
checkpoint (`make_lesson_checkpoint.py --from-checkpoint`) → the sampler comparison and the pow variety; the
probe checkpoints → the probe. (`make_lesson_checkpoint.py`'s training path runs in tests/test_viz_lessons.py.)
"""
from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA, TOOLS = ROOT / "data", ROOT / "tools"
sys.path.insert(0, str(TOOLS))

import cfg_class_consistency  # noqa: E402
import cfg_pow_variety  # noqa: E402
import checker_table  # noqa: E402
import latent_storage_error  # noqa: E402
import main_job  # noqa: E402
import make_lesson_checkpoint  # noqa: E402
import make_probe_checkpoints  # noqa: E402
import narrowing_pilot  # noqa: E402
import probe_checkpoints  # noqa: E402
import sampler_comparison  # noqa: E402
import train_feature_net  # noqa: E402

TINY = ["--model-arg", "depth=2", "--model-arg", "hidden_size=32", "--model-arg", "num_heads=2"]
PROVENANCE = {"made_by", "commit", "provenance_note"}


def skeleton(value):
    """The structure of a JSON value: a dict's keys (provenance aside), a list's first item, a scalar's kind."""
    if isinstance(value, dict):
        return {k: skeleton(v) for k, v in value.items() if k not in PROVENANCE}
    if isinstance(value, (list, tuple)):
        return [skeleton(value[0])] if value else []
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def committed(name: str):
    return json.loads((DATA / name).read_text())


def written(path: Path, tool: str) -> dict:
    """The JSON a miniature wrote, checked for the command and commit every tool records."""
    record = json.loads(path.read_text())
    assert_provenance(record, tool)
    return record


def run(tool, *argv) -> None:
    """A tool's `main` on this command line, which must succeed."""
    assert tool.main([str(a) for a in argv]) == 0


def assert_provenance(record: dict, tool: str) -> None:
    assert re.match(rf"(python )?tools/{re.escape(tool)}\b", record["made_by"]), record["made_by"]
    assert re.fullmatch(r"(.+-g)?[0-9a-f]{7,40}(-dirty)?|unknown", record["commit"]), record["commit"]


@pytest.fixture(autouse=True)
def _threads():
    """The tools set torch's thread count for their own process; give the next test the count it had."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------
# The main job → its lesson checkpoint → the sampler comparison and the pow variety
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def main_job_run(tmp_path_factory):
    """`tools/main_job.py --smoke` for seed 0 (one `mdt-teach train` process), its run folder kept."""
    work = tmp_path_factory.mktemp("main_job")
    run(main_job, "--smoke", "--seeds", "0", "--keep", work / "runs", "--out", work / "mj.json")
    return work


@pytest.fixture(scope="module")
def lesson_checkpoint(main_job_run):
    """`make_lesson_checkpoint.py --from-checkpoint` on the miniature main job, as lesson 09's was made."""
    out = main_job_run / "lesson09.pt"
    ckpt = main_job_run / "runs" / "seed0" / "ckpt" / "ckpt_0000002.pt"
    run(make_lesson_checkpoint, "--from-checkpoint", ckpt, "--out", out)
    return out


def test_main_job_miniature(main_job_run):
    record = written(main_job_run / "mj.json", "main_job.py")
    assert skeleton(record) == skeleton(committed("main_job.json"))
    assert record["command"] == "mdt-teach train " + " ".join(main_job.SMOKE)
    assert [r["seed"] for r in record["runs"]] == [0] and record["runs"][0]["steps"] == 2
    assert "seeds 0 reach pair agreement" in main_job.sentence(record)


def test_make_lesson_checkpoint_from_a_run(lesson_checkpoint):
    blob = torch.load(lesson_checkpoint, weights_only=True)
    full = torch.load(DATA / "lesson09_mdtv2_tiny.pt", weights_only=True)
    assert blob.keys() == full.keys() and blob["format"] == full["format"]
    assert blob["model_config"].keys() == full["model_config"].keys()
    assert skeleton(blob["info"]) == skeleton(full["info"]) and blob["info"]["steps"] == 2
    assert_provenance(blob["info"], "make_lesson_checkpoint.py")
    block = lambda keys: {re.sub(r"\.\d+\.", ".N.", k) for k in keys}  # noqa: E731
    assert block(blob["state_dict"]) <= block(full["state_dict"])       # depth 2 has no encoder in-blocks
    assert all(v.dtype == torch.float16 for v in blob["state_dict"].values() if v.is_floating_point())


@pytest.mark.parametrize("tool, name, n, row_keys", [
    ("sampler_comparison", "sampler_comparison.json", 4, ("method", "steps")),
    ("cfg_pow_variety", "cfg_pow_variety.json", 8, ("scale_pow",)),                       # 2 faces per class
    ("cfg_class_consistency", "cfg_class_consistency.json", 8, ("cfg_scale", "scale_pow")),
])
def test_lesson_checkpoint_tool_miniature(tool, name, n, row_keys, lesson_checkpoint, tmp_path):
    """Each tool that measures a lesson checkpoint, on a few samples: the committed record's shape and rows."""
    out = tmp_path / name
    run(globals()[tool], "--n", n, "--threads", 1, "--checkpoint", lesson_checkpoint, "--out", out)
    record, full = written(out, f"{tool}.py"), committed(name)
    assert skeleton(record) == skeleton(full)
    keys = lambda rows: [tuple(r[k] for k in row_keys) for r in rows]   # noqa: E731
    assert keys(record["rows"]) == keys(full["rows"])


# ----------------------------------------------------------------------------------------------
# The probe checkpoints → the probe
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory):
    """`make_probe_checkpoints.py` at depth 2, width 32, batch 4, stages 1 and 2."""
    out = tmp_path_factory.mktemp("probe")
    run(make_probe_checkpoints, "--stages", "1,2", "--batch-size", 4, "--threads", 1, *TINY, "--out", out)
    return out


def test_make_probe_checkpoints_miniature(probe_dir):
    index, full = json.loads((probe_dir / "index.json").read_text()), committed("probe/index.json")
    prefix = lambda names: {n.rsplit("_", 1)[0] for n in names}  # noqa: E731
    assert prefix(index) == prefix(full) and {info["steps"] for info in index.values()} == {1, 2}
    form = torch.load(DATA / "probe" / "dit_00600.pt", weights_only=True)["format"]
    for name, info in index.items():
        assert_provenance(info, "make_probe_checkpoints.py")
        assert skeleton(info) == skeleton(full[name.replace(f"{info['steps']:05d}", "00600")])
        assert info["model_args"]["hidden_size"] == 32
        blob = torch.load(probe_dir / name, weights_only=True)
        assert blob["info"] == info and blob["format"] == form


def test_probe_checkpoints_miniature(probe_dir, tmp_path):
    out = tmp_path / "results.json"
    run(probe_checkpoints, "--n", 8, "--samples", 4, "--steps", 10, "--threads", 1, "--probe-dir", probe_dir,
        "--out", out)
    record = written(out, "probe_checkpoints.py")
    full = committed("probe/results.json")
    assert skeleton(record) == skeleton(full)
    assert len(record["rows"]) == len(full["rows"]) and len(record["resampling"]["rows"]) == 4
    assert probe_checkpoints.markdown(record).count("\n") == probe_checkpoints.markdown(full).count("\n")
    assert "after 2 steps a small MDTv2" in probe_checkpoints.sentence(record)


# ----------------------------------------------------------------------------------------------
# The tools that stand alone
# ----------------------------------------------------------------------------------------------

def test_checker_table_miniature(tmp_path):
    out = tmp_path / "ct.json"
    run(checker_table, "--n", 8, "--out", out)
    record, full = written(out, "checker_table.py"), committed("checker_table.json")
    assert skeleton(record) == skeleton(full) and record["faces"] == 8
    assert checker_table.markdown(record).count("\n") == checker_table.markdown(full).count("\n")


def test_latent_storage_error_miniature(tmp_path):
    out = tmp_path / "lse.json"
    run(latent_storage_error, "--vae", "tiny", "--image-size", 32, "--out", out)
    record, full = written(out, "latent_storage_error.py"), committed("latent_storage_error.json")
    assert skeleton(record) == skeleton(full)
    assert [r["dtype"] for r in record["rows"]] == [r["dtype"] for r in full["rows"]]
    values = 2 * 2 * torch.Size(record["latent_shape"]).numel()          # orientations × (mean, std) × C·h·w
    assert [r["bytes_per_image"] for r in record["rows"]] == [values * (4 if r["dtype"] == "float32" else 2)
                                                              for r in record["rows"]]


@pytest.fixture
def narrowing_undone(monkeypatch):
    """The pilot narrows the world's eye ranges in its own process: put them (and the painters' caches) back."""
    import mdt_teach.checker as checker
    import mdt_teach.painters as painters
    import mdt_teach.smileys as smileys
    for name in {k for ranges in narrowing_pilot.VARIANTS.values() for k in ranges}:
        for module in (smileys, painters, checker):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, getattr(module, name))
    for cached in ("donors", "_blind_rates"):           # fresh caches for the narrowed world; the old ones kept
        monkeypatch.setattr(painters, cached, functools.lru_cache(maxsize=4)(getattr(painters, cached).__wrapped__))


def test_narrowing_pilot_miniature(narrowing_undone, tmp_path):
    out = tmp_path / "np.json"
    run(narrowing_pilot, "chance", "base", "--n", 16, "--threads", 1, "--out", out)
    train = ["train", "r18", "--n", "16", "--steps", "2", "--batch-size", "4", *TINY, "--samples", "4",
             "--threads", "1", "--out", str(out)]
    run(narrowing_pilot, *train)                                            # appended: the file is the last write's
    pilots = written(out, "narrowing_pilot.py")
    assert pilots["made_by"] == "python tools/narrowing_pilot.py " + " ".join(train)
    plain, trained = pilots["records"]
    for record in (plain, trained):
        assert_provenance(record, "narrowing_pilot.py")
    assert plain["chance"] != trained["chance"]                             # narrowing changed the faces
    full = committed("narrowing_pilots.json")
    scored = next(r for r in full["records"] if r["mode"] == "score" and r["variant"] == "r18")
    assert trained["ranges"] == scored["ranges"] == {"EYE_RADIUS": [1.8, 2.8]} and plain["ranges"] == {}
    for key in ("chance", "scores"):
        assert skeleton(trained[key]) == skeleton(scored[key])
    chance = next(r for r in full["records"] if r["mode"] == "chance")
    assert skeleton(plain).keys() == skeleton(chance).keys()
    assert skeleton(plain["chance"]) == skeleton(chance["chance"])
    assert narrowing_pilot.markdown(pilots).count("\n") == 3                # header, rule, two variants


def test_train_feature_net_miniature(tmp_path):
    out = tmp_path / "fn.pt"
    run(train_feature_net, "--steps", 2, "--batch-size", 8, "--n-smileys", 16, "--held-out", 16, "--out", out)
    blob, full = torch.load(out, weights_only=True), torch.load(DATA / "feature_net.pt", weights_only=True)
    assert blob.keys() - PROVENANCE == full.keys() - PROVENANCE and blob["config"] == full["config"]
    assert blob["classes"] == full["classes"] and skeleton(blob["report"]) == skeleton(full["report"])
    assert {k: v.shape for k, v in blob["state_dict"].items()} == {k: v.shape for k, v in full["state_dict"].items()}
    assert_provenance(blob, "train_feature_net.py")


# ----------------------------------------------------------------------------------------------
# Every committed JSON says which tool made it, how, and at which commit
# ----------------------------------------------------------------------------------------------

MADE_BY = {  # committed JSON → the tool that writes it
    "cfg_pow_variety.json": "cfg_pow_variety.py", "cfg_class_consistency.json": "cfg_class_consistency.py",
    "checker_table.json": "checker_table.py",
    "latent_storage_error.json": "latent_storage_error.py", "main_job.json": "main_job.py",
    "narrowing_pilots.json": "narrowing_pilot.py", "sampler_comparison.json": "sampler_comparison.py",
    "probe/index.json": "make_probe_checkpoints.py", "probe/results.json": "probe_checkpoints.py",
}
BY_HAND = {"recipe_pilots.json"}   # collected from `mdt-teach train` runs; its made_by says which and how


def test_every_committed_json_names_its_tool_and_commit():
    found = {str(p.relative_to(DATA)) for folder in (DATA, DATA / "probe") for p in folder.glob("*.json")}
    assert found == set(MADE_BY) | BY_HAND, "a new JSON under data/: add it to MADE_BY (or BY_HAND)"
    for name, tool in MADE_BY.items():
        record = committed(name)
        entries = record.values() if name == "probe/index.json" else [record]   # one entry per checkpoint
        for entry in entries:
            assert (TOOLS / re.search(r"tools/(\w+\.py)", entry["made_by"]).group(1)).is_file(), name
            assert_provenance(entry, tool)
    for name in BY_HAND:
        assert committed(name)["made_by"] and committed(name)["commit"]
