"""The GPU check, ready for the day a CUDA GPU is at hand: one script, ≤ 5 minutes on one GPU, torch only
(no VAE, no diffusers, nothing optional), one JSON of results and printed ratios.

    python benchmarks/bench_gpu.py [--out benchmarks/results/gpu_<device>.json] [--steps 10]
    python benchmarks/bench_gpu.py --dry-run     # the same code on the CPU with a tiny model (nothing saved)

What it measures, each as the median train-step time (both MDT passes, backward, Adan step) and the peak
CUDA memory of that step:
  1. MDTv2-S/2 (latents 4×32×32, batch 32 = the official per-GPU share of 256 on 8 GPUs) in fp32, bf16
     autocast, and bf16 + torch.compile;
  2. the same three with the official explicit-softmax attention (`layers.explicit_attention`) instead of
     the fused kernel;
  3. MDTv2-XL/2 peak memory at batch 32 in bf16 (beside `mdt-teach plan`'s estimate for that setting);
  4. with two or more GPUs, one 2-process NCCL DDP step of MDTv2-S/2 (time and agreement of the weights).
On a machine without CUDA it says so and exits 0 without measuring.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from mdt_teach.diffusion import GaussianDiffusion, training_loss
from mdt_teach.layers import explicit_attention
from mdt_teach.models import build_model
from mdt_teach.optim import Adan

ROOT = Path(__file__).resolve().parent


def train_step_cost(model_name: str, batch: int, dtype: str, compile_: bool, explicit: bool, steps: int,
                    device: str, **model_args) -> dict:
    """Median seconds per optimizer step and peak memory (GB, CUDA only) of one configuration."""
    torch.manual_seed(0)
    model = build_model(model_name, **model_args).to(device).train()
    opt = Adan(model.parameters(), lr=3e-4, max_grad_norm=1.0)
    net = torch.compile(model) if compile_ else model
    diffusion = GaussianDiffusion()
    x = torch.randn(batch, model.in_channels, model.input_size, model.input_size, device=device)
    y = torch.randint(model.num_classes, (batch,), device=device)
    autocast = torch.autocast(device, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()
    times = []
    with explicit_attention() if explicit else nullcontext():
        for i in range(steps + 3):                      # 3 warm-up steps (compilation, allocator)
            if i == 3 and device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            with autocast:
                loss = training_loss(net, x, y, diffusion, weighting="min_snr")["loss"]
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= 3:
                times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else None
    del model, opt, net
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"model": model_name, "batch": batch, "dtype": dtype, "compile": compile_,
            "attention": "explicit" if explicit else "fused", "step_s": statistics.median(times), "peak_gb": peak}


def _ddp_worker(rank: int, world: int, port: int, batch: int, steps: int, queue) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl", rank=rank, world_size=world)
    torch.cuda.set_device(rank)
    torch.manual_seed(0)
    model = build_model("MDTv2-S/2").cuda()
    net = DistributedDataParallel(model, device_ids=[rank], find_unused_parameters=False)
    opt = Adan(model.parameters(), lr=3e-4)
    gen = torch.Generator(device="cuda").manual_seed(rank)
    x = torch.randn(batch, 4, 32, 32, device="cuda", generator=gen)
    y = torch.randint(1000, (batch,), device="cuda", generator=gen)
    times = []
    for i in range(steps + 2):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = training_loss(net, x, y, GaussianDiffusion())["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    checksum = torch.tensor([sum(p.double().sum().item() for p in model.parameters())], device="cuda")
    sums = [torch.zeros_like(checksum) for _ in range(world)]
    dist.all_gather(sums, checksum)
    if rank == 0:
        queue.put({"processes": world, "batch_per_gpu": batch, "step_s": statistics.median(times),
                   "weights_agree": len({s.item() for s in sums}) == 1})
    dist.destroy_process_group()


def ddp_step(batch: int, steps: int) -> dict:
    """One 2-process NCCL DDP measurement (spawned here, no torchrun needed)."""
    import torch.multiprocessing as mp

    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_ddp_worker, args=(2, 29517, batch, steps, queue), nprocs=2, join=True)
    return queue.get()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help="results JSON (default benchmarks/results/gpu_<device>.json)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration (default 10)")
    parser.add_argument("--dry-run", action="store_true", help="run the code on the CPU with a tiny model")
    args = parser.parse_args(argv)
    if args.dry_run:
        device, small, big, batch, compile_ok = "cpu", ("MDTv2-T/4", {"depth": 2}), None, 4, False
    elif not torch.cuda.is_available():
        print("bench_gpu: needs a CUDA GPU; nothing was measured (try --dry-run to check the script on the CPU)")
        return 0
    else:
        device, small, big, batch, compile_ok = "cuda", ("MDTv2-S/2", {"input_size": 32}), "MDTv2-XL/2", 32, True
    rows = []
    for explicit in (False, True):
        for dtype, compile_ in (("fp32", False), ("bf16", False), ("bf16", True)):
            if compile_ and not compile_ok:
                continue
            rows.append(train_step_cost(small[0], batch, dtype, compile_, explicit, args.steps if not args.dry_run
                                        else 1, device, **small[1]))
            print(json.dumps(rows[-1]), flush=True)
    results = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (dry run)",
               "torch": torch.__version__, "train_steps": rows}
    if big:
        from mdt_teach.plan import memory_plan   # the estimate printed by `mdt-teach plan` for this setting

        xl = train_step_cost(big, 32, "bf16", False, False, 2, device, input_size=32)
        estimate = memory_plan(big, gpus=1, global_batch=32, opt="adan", dtype="bf16").total / 1e9
        results["xl_bf16_batch32"] = {**xl, "plan_estimate_gb": estimate}
        print(json.dumps(results["xl_bf16_batch32"]), flush=True)
        if torch.cuda.device_count() >= 2:
            results["ddp_2gpu"] = ddp_step(batch, args.steps)
            print(json.dumps(results["ddp_2gpu"]), flush=True)
    base = {(r["dtype"], r["compile"], r["attention"]): r["step_s"] for r in rows}
    ref = base[("fp32", False, "fused")]
    print("step time relative to fp32 with the fused attention kernel:")
    for (dtype, comp, attn), seconds in base.items():
        print(f"  {dtype}{' + compile' if comp else '':<10} {attn:<8} {seconds / ref:6.2f}×  ({seconds * 1e3:.1f} ms)")
    if args.dry_run:
        return 0
    out = Path(args.out or ROOT / "results" / f"gpu_{results['device'].replace(' ', '_')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
