"""`mdt-teach plan`: the memory per GPU of a big run (`plan.memory_plan`) and the torchrun command."""
from __future__ import annotations

import argparse

from ..plan import CONTEXT_BYTES, GB, fit_grad_accum, format_plan, memory_plan, torchrun_command, with_optimizer
from ..recipe import recipe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `mdt-teach plan`."""
    parser.add_argument("--model", default="MDTv2-XL/2", help="preset (default MDTv2-XL/2)")
    parser.add_argument("--gpus", type=int, default=8, help="total number of GPUs (default 8)")
    parser.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per node (default 8)")
    parser.add_argument("--global-batch", type=int, default=256, help="global batch (official 256)")
    parser.add_argument("--grad-accum", type=int, default=1, help="accumulation steps per GPU (default 1)")
    parser.add_argument("--zero", action="store_true", help="shard the optimizer state (ZeroRedundancyOptimizer)")
    parser.add_argument("--opt", default=None, help="adan | adamw (default: the model's recipe)")
    parser.add_argument("--dtype", default="bf16", help="fp32 | bf16 | fp16 autocast (default bf16)")
    parser.add_argument("--data", default="PATH/TO/latents", help="data path written into the command")
    parser.add_argument("--gpu-memory", type=float, default=80.0,
                        help="memory of one GPU in GB (default 80); when the plan does not fit, it proposes the "
                             "gradient-accumulation steps that do, at the same global batch")


def run(args: argparse.Namespace) -> int:
    """Print the memory table, whether it fits one GPU (or the accumulation that does), and the launch command."""
    if not args.gpu_memory > 0:
        raise ValueError(f"--gpu-memory must be a positive number of GB, got {args.gpu_memory}")
    opt = args.opt or recipe(args.model)["opt"]
    plan = memory_plan(args.model, args.gpus, args.global_batch, opt, args.zero, args.dtype, args.grad_accum)
    print(format_plan(plan, with_optimizer(plan, "adamw" if opt == "adan" else "adan")))
    need = (plan.total + CONTEXT_BYTES) / GB
    accum = args.grad_accum
    if need <= args.gpu_memory:
        print(f"fits a {args.gpu_memory:g} GB GPU: about {need:.1f} GB with the CUDA context")
    else:
        fitted = fit_grad_accum(plan, args.gpu_memory)
        if fitted is None:
            print(f"does NOT fit a {args.gpu_memory:g} GB GPU (about {need:.1f} GB), not even one image per "
                  "micro-batch: shard the optimizer (--zero), use more GPUs or a smaller model")
        else:
            accum = fitted.per_gpu_batch // fitted.micro_batch
            print(f"does NOT fit a {args.gpu_memory:g} GB GPU (about {need:.1f} GB); with --grad-accum {accum} "
                  f"(micro-batch {fitted.micro_batch}, same global batch {args.global_batch}) it needs about "
                  f"{(fitted.total + CONTEXT_BYTES) / GB:.1f} GB")
    print("launch:")
    for line in torchrun_command(args.model, args.gpus, args.gpus_per_node, args.global_batch, args.zero,
                                 args.opt, args.dtype, args.data, accum):
        print("  " + line)
    return 0
