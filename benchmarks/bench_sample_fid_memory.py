"""Peak host memory of `sample-fid` under `torchrun --nproc_per_node 2` (gloo, CPU) on an MDTv2-B/2 training
checkpoint with Adan's state, loaded the old way and the new way; and of rank 0's assembly of the .npz alone.

The checkpoint is built here from config, no download: MDTv2-B/2 at its real width and depth on 8×8 pixels
(150.4 M parameters, 151 M at the paper's 32×32 latents; 16 tokens, so sampling is quick and loading dominates)
after one Adan step, so the file holds the raw weights, the EMA and Adan's 4 buffers per parameter (3.2 GiB;
the script prints its size). Each rank records its VmHWM (peak resident set, /proc/self/status) after the
command; the script prints the sum over the ranks.

Both are measured in this tree, each in fresh processes. "before": each rank first replaces `compat.load_model`
and `fid_samples.assemble` with the transcriptions below of their versions at commit 3826233 (the whole file
read into memory on every rank, a model built and initialised, the EMA copied in; rank 0 holding every shard,
their concatenation and the .npz's bytes). "after": the library as it is (the file memory-mapped, the model
built on the meta device adopting the mapped EMA tensors, the .npz streamed shard by shard). RSS counts a
mapped page of the file in every rank that touches it, although the ranks of a node share it in the page
cache, so the sum over ranks overstates what "after" costs the machine.

    python benchmarks/bench_sample_fid_memory.py [--work /tmp/bench_sample_fid] [--num-samples 8]
        [--assemble-images 2000]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

MB = 2 ** 20


def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------------------------------------------
# The old way (commit 3826233), transcribed
# ---------------------------------------------------------------------------------------------------

def load_model_before(path, use_ema: bool = True, device="cpu", decode_layer: int | None = None):
    """`compat.load_model` at 3826233: the whole file read (no mmap), the model built and initialised, the
    weights copied in (our checkpoints; official ones went through `build_and_load` as today)."""
    from mdt_teach.checkpoint import FORMAT, read_torch_file
    from mdt_teach.models import from_config
    obj = read_torch_file(path)
    if not (isinstance(obj, dict) and obj.get("format") == FORMAT):
        raise ValueError("the 'before' transcription covers our training checkpoints only")
    model = from_config(obj["model_config"])
    model.load_state_dict(obj["ema" if use_ema else "model"])
    info = f"{obj['config']['model']} step {obj['step']} ({'EMA' if use_ema else 'raw'} weights)"
    return model.to(device).eval(), info


def assemble_before(out: Path, s) -> Path:
    """`fid_samples.assemble` at 3826233: every shard in a list, their concatenation, np.savez into a BytesIO
    and its bytes handed to the atomic writer."""
    from mdt_teach.checkpoint import atomic_write
    from mdt_teach.fid_samples import npz_name, num_shards, shard_file
    images, labels = [], []
    for k in range(num_shards(s)):
        with np.load(shard_file(out, k)) as shard:
            images.append(shard["arr_0"])
            labels.append(shard["arr_1"])
    images, labels = np.concatenate(images), np.concatenate(labels)
    path = out / npz_name(len(images), images.shape[1], images.shape[2])
    buffer = io.BytesIO()
    np.savez(buffer, arr_0=images, arr_1=labels)
    atomic_write(path, buffer.getvalue())
    return path


def use_old_way() -> None:
    """Patch the old loader and assembler into the modules `sample-fid` calls them from."""
    import mdt_teach.cli.sample_fid as cli_sample_fid
    import mdt_teach.fid_samples as fid_samples
    cli_sample_fid.load_model = load_model_before
    fid_samples.assemble = assemble_before


# ---------------------------------------------------------------------------------------------------
# The pieces, each in its own process
# ---------------------------------------------------------------------------------------------------

def build_checkpoint(path: Path) -> None:
    """An MDTv2-B/2 training checkpoint (format 2) after one Adan step: raw weights, EMA, Adan's 4 buffers."""
    import torch

    from mdt_teach.checkpoint import FORMAT, atomic_save
    from mdt_teach.config import capture_rng
    from mdt_teach.models import build_model
    from mdt_teach.optim import Adan
    torch.manual_seed(0)
    model = build_model("MDTv2-B/2", input_size=8, in_channels=3)
    opt = Adan(model.parameters(), lr=3e-4)
    x, t, y = torch.randn(2, 3, 8, 8), torch.tensor([10, 500]), torch.tensor([1, 2])
    model(x, t, y).square().mean().backward()
    opt.step()
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state = {"format": FORMAT, "step": 1, "model": model.state_dict(), "ema": ema, "opt": opt.state_dict(),
             "scaler": {}, "rng": [capture_rng()], "world_size": 1, "data": {"position": 2, "seed": 0},
             "config": {"model": "MDTv2-B/2"}, "model_config": asdict(model.config), "elapsed": 0.0}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(state, path)


def worker(mode: str, record: Path, argv: list[str]) -> None:
    """One torchrun rank: `sample-fid` the old or the new way, then write this rank's peak RSS."""
    from mdt_teach.cli import main
    if mode == "before":
        use_old_way()
    imported = peak_rss_bytes()
    rc = main(["sample-fid", *argv])
    rank = int(os.environ.get("RANK", 0))
    record.mkdir(parents=True, exist_ok=True)
    (record / f"rank{rank}.json").write_text(json.dumps({"rc": rc, "peak": peak_rss_bytes(), "imported": imported}))


def assemble_only(mode: str, folder: Path, n: int, shard_size: int, record: Path) -> None:
    """Rank 0's last job alone: assemble the .npz from shards already on disk; the peak above the start."""
    from mdt_teach.fid_samples import FidSampling, assemble
    s = FidSampling(ckpt="synthetic", n=n, shard_size=shard_size)
    start = peak_rss_bytes()
    (assemble_before if mode == "before" else assemble)(folder, s)
    record.write_text(json.dumps({"peak": peak_rss_bytes(), "start": start}))


def synthetic_shards(folder: Path, n: int, shard_size: int) -> None:
    """Shards of random 256×256 images, as `sample-fid` writes them."""
    from mdt_teach.fid_samples import FidSampling, _write_npz, num_shards, shard_file
    rng = np.random.default_rng(0)
    s = FidSampling(ckpt="synthetic", n=n, shard_size=shard_size)
    (folder / "shards").mkdir(parents=True, exist_ok=True)
    for k in range(num_shards(s)):
        count = min(n, (k + 1) * shard_size) - k * shard_size
        _write_npz(shard_file(folder, k), arr_0=rng.integers(0, 256, (count, 256, 256, 3), dtype=np.uint8),
                   arr_1=rng.integers(0, 1000, count))


# ---------------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------------

def run_self(*args: str, torchrun: bool = False) -> None:
    """This script again, in a fresh process (or two, under torchrun)."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] if torchrun
                else [sys.executable])
    done = subprocess.run([*launcher, __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def sample_fid_peaks(work: Path, ckpt: Path, num_samples: int) -> dict:
    """Per mode: the ranks' peak RSS and their peak right after the imports."""
    out = {}
    for mode in ("before", "after"):
        record = work / f"rss_{mode}"
        argv = ["--ckpt", str(ckpt), "--out", str(work / f"samples_{mode}"), "--num-samples", str(num_samples),
                "--steps", "2", "--shard-size", "2", "--no-progress"]
        run_self("--worker", mode, str(record), *argv, torchrun=True)
        ranks = [json.loads((record / f"rank{r}.json").read_text()) for r in range(2)]
        assert all(r["rc"] == 0 for r in ranks), ranks
        out[mode] = ranks
    return out


def assemble_peaks(work: Path, n: int) -> dict:
    """Per mode: the peak RSS of assembling n synthetic 256×256 images, above the process's peak before it."""
    folder = work / "assemble"
    if not (folder / "shards").is_dir():
        run_self("--synthetic", str(folder), str(n))
    out = {}
    for mode in ("before", "after"):
        record = work / f"assemble_{mode}.json"
        run_self("--assemble", mode, str(folder), str(n), str(record))
        r = json.loads(record.read_text())
        out[mode] = r["peak"] - r["start"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/bench_sample_fid", help="folder for the checkpoint and samples")
    parser.add_argument("--num-samples", type=int, default=8, help="images sampled by sample-fid (default 8)")
    parser.add_argument("--assemble-images", type=int, default=2000,
                        help="256×256 images in the assembly-only measurement (default 2000; 0 = skip it)")
    args = parser.parse_args()
    work = Path(args.work)
    ckpt = work / "mdtv2_b2_adan.pt"
    if not ckpt.exists():
        run_self("--build", str(ckpt))
    print(f"checkpoint {ckpt}: {ckpt.stat().st_size / 2 ** 30:.2f} GiB (MDTv2-B/2: raw weights, EMA, Adan's 4 "
          "buffers)")
    peaks = sample_fid_peaks(work, ckpt, args.num_samples)
    total = {mode: sum(r["peak"] for r in ranks) for mode, ranks in peaks.items()}
    for mode, ranks in peaks.items():
        print(f"sample-fid, torchrun x 2, {mode:6}: peak RSS per rank "
              + " + ".join(f"{r['peak'] / MB:,.0f}" for r in ranks) + f" = {total[mode] / MB:,.0f} MiB "
              f"(after the imports: " + " + ".join(f"{r['imported'] / MB:,.0f}" for r in ranks) + " MiB)")
    print(f"sample-fid peak host memory, before / after: {total['before'] / total['after']:.2f}x")
    if args.assemble_images:
        grown = assemble_peaks(work, args.assemble_images)
        size = args.assemble_images * 256 * 256 * 3 / MB
        print(f"assembling {args.assemble_images} images of 256x256 ({size:,.0f} MiB of pixels) on rank 0: peak "
              f"grows by {grown['before'] / MB:,.0f} MiB before, {grown['after'] / MB:,.0f} MiB after "
              f"({grown['before'] / max(grown['after'], 1):.0f}x)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--build":
        build_checkpoint(Path(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], Path(sys.argv[3]), sys.argv[4:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--synthetic":
        synthetic_shards(Path(sys.argv[2]), int(sys.argv[3]), 64)
    elif len(sys.argv) > 1 and sys.argv[1] == "--assemble":
        assemble_only(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), 64, Path(sys.argv[5]))
    else:
        main()
