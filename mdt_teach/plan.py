"""Memory per GPU of a training run and the torchrun command that launches it (`mdt-teach plan`).

Static memory comes from the parameter count (weights, gradients, optimizer state — Adan keeps 4 buffers
per parameter, AdamW 2 — and the EMA copy). Activations are *measured* on the meta device (no memory,
no GPU): one training step's forward passes (both MDT passes: one backward follows them, so both sets of
saved tensors are alive at once) run under a saved-tensor hook that adds up what autograd keeps. The
GPU's fused attention is emulated (it saves q, k, v, bias, output and a log-sum-exp, not the N×N
probabilities), and so is autocast (matmuls in bf16/fp16, norms and softmax in fp32). It is an
estimate: CUDA context, allocator slack and backward temporaries come on top.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .model_config import MODEL_PRESETS
from .models import build_model
from .recipe import DTYPE_NAMES as DTYPES

GB = 1e9
CONTEXT_BYTES = 2 * GB   # CUDA context and allocator slack on top of the estimate
OPT_BUFFERS = {"adan": 4, "adamw": 2}   # Adan: m, v (diff), n, previous gradient; AdamW: m, v


# ----------------------------------------------------------------------------------------------
# Activations measured on the meta device
# ----------------------------------------------------------------------------------------------

class _FusedAttention(torch.autograd.Function):
    """What a fused (memory-efficient) attention kernel keeps for backward: q, k, v, bias, out, lse."""

    @staticmethod
    def forward(ctx, q, k, v, bias, scale):
        with torch.no_grad():
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
        lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)   # (B, H, N)
        ctx.save_for_backward(q, k, v, *(() if bias is None else (bias,)), out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):  # never run: the plan only counts what forward saves
        raise RuntimeError("the memory plan's attention stand-in has no backward; it only counts saved tensors")


_LOW_PRECISION = {F.linear, torch.matmul, torch.bmm, torch.addmm, torch.baddbmm, F.conv2d, torch.Tensor.__matmul__}
_FULL_PRECISION = {F.layer_norm, F.softmax, torch.softmax, F.log_softmax, F.group_norm}


def _cast(value, dtype, cache: dict):
    """Cast floating tensors (parameters once, through `cache`, like autocast's weight cache)."""
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype, cache) for v in value)
    if not (torch.is_tensor(value) and value.is_floating_point()) or value.dtype == dtype:
        return value
    if isinstance(value, torch.nn.Parameter):
        key = (id(value), dtype)
        if key not in cache:
            cache[key] = value.to(dtype)
        return cache[key]
    return value.to(dtype)


class _MetaAutocast(TorchFunctionMode):
    """Autocast's policy on meta tensors (real autocast ignores them) plus the fused-attention emulation."""

    def __init__(self, dtype: torch.dtype | None):
        super().__init__()
        self.dtype, self.cache = dtype, {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            q, k, v = (_cast(t, self.dtype, self.cache) if self.dtype else t for t in args[:3])
            bias = kwargs.get("attn_mask")
            bias = bias.to(q.dtype) if bias is not None else None
            return _FusedAttention.apply(q, k, v, bias, kwargs.get("scale"))
        if self.dtype is not None and func in _LOW_PRECISION:
            args, kwargs = _cast(args, self.dtype, self.cache), {k: _cast(v, self.dtype, self.cache)
                                                                 for k, v in kwargs.items()}
        elif self.dtype is not None and func in _FULL_PRECISION:
            args = _cast(args, torch.float32, self.cache)
        return func(*args, **kwargs)


def saved_bytes(model, batch: int, dtype: str = "float32") -> int:
    """Bytes autograd keeps for backward after one training forward (both passes for MDT), parameters excluded.

    On a meta model autocast is emulated; on a real CPU model torch's own CPU autocast runs (the tests
    compare the two). Attention is counted as a fused kernel in both cases.
    """
    device = next(model.parameters()).device
    low = None if DTYPES[dtype] == "float32" else getattr(torch, DTYPES[dtype])
    param_storages = {p.untyped_storage()._cdata for p in model.parameters()}
    seen: dict[int, int] = {}
    alive = []   # hold every saved tensor so no storage address is reused during the count

    def pack(t):
        key = t.untyped_storage()._cdata
        if key not in param_storages:
            seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
        alive.append(t)
        return t

    x = torch.randn(batch, model.in_channels, model.input_size, model.input_size, device=device)
    t = torch.zeros(batch, dtype=torch.long, device=device)
    y = torch.zeros(batch, dtype=torch.long, device=device)
    meta = device.type == "meta"
    autocast = torch.autocast("cpu", dtype=low or torch.bfloat16, enabled=low is not None and not meta)
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda v: v), _MetaAutocast(low if meta else None), autocast:
        outputs = [model(x, t, y)]
        if getattr(model, "is_mdt", False) and model.mask_ratio is not None:
            outputs.append(model(x, t, y, enable_mask=True))
    return sum(seen.values())


def meta_model(name: str, **overrides):
    """The preset on the meta device, its mask ratio fixed at the low end (the most tokens kept)."""

    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_PRESETS)}")
    if MODEL_PRESETS[name]["family"] == "MDTv2":
        overrides.setdefault("mask_ratio_jitter", 0.0)
    with torch.device("meta"):
        return build_model(name, **overrides)


# ----------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------

@dataclass
class MemoryPlan:
    """Bytes per GPU of one configuration."""

    model: str
    params: int
    trainable: int
    gpus: int
    per_gpu_batch: int
    micro_batch: int
    opt: str
    zero: bool
    dtype: str
    weights: float
    grads: float
    optimizer: float
    ema: float
    activations: float

    @property
    def total(self) -> float:
        """Sum of the terms (bytes)."""
        return self.weights + self.grads + self.optimizer + self.ema + self.activations


def memory_plan(model_name: str, gpus: int, global_batch: int, opt: str = "adan", zero: bool = False,
                dtype: str = "bfloat16", grad_accum: int = 1, **overrides) -> MemoryPlan:
    """Per-GPU memory of training `model_name` with a global batch over `gpus` GPUs."""
    if gpus < 1:
        raise ValueError(f"--gpus must be at least 1, got {gpus}")
    if opt not in OPT_BUFFERS:
        raise ValueError(f"unknown optimizer {opt!r}; use adan or adamw")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use fp32, bf16 or fp16")
    if global_batch % (gpus * grad_accum):
        raise ValueError(f"global batch {global_batch} is not divisible by {gpus} GPUs × {grad_accum} "
                         f"accumulation step(s); use a multiple of {gpus * grad_accum}")
    model = meta_model(model_name, **overrides)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    micro = global_batch // (gpus * grad_accum)
    plan = MemoryPlan(model=model_name, params=params, trainable=trainable, gpus=gpus,
                      per_gpu_batch=global_batch // gpus, micro_batch=micro, opt=opt, zero=zero,
                      dtype=DTYPES[dtype], weights=4 * params, grads=4 * trainable, optimizer=0.0,
                      ema=4 * params, activations=float(saved_bytes(model, micro, dtype)))
    return with_optimizer(plan, opt)


def with_optimizer(plan: MemoryPlan, opt: str) -> MemoryPlan:
    """The same plan with another optimizer (only the optimizer-state term changes)."""
    opt_bytes = 4 * OPT_BUFFERS[opt] * plan.trainable / (plan.gpus if plan.zero else 1)
    return replace(plan, opt=opt, optimizer=opt_bytes)


def fit_grad_accum(plan: MemoryPlan, gpu_memory_gb: float, **overrides) -> MemoryPlan | None:
    """The plan with the fewest accumulation steps whose estimate plus CONTEXT_BYTES fits `gpu_memory_gb`,
    at the same global batch (None when even one image per micro-batch does not fit).

    Activations grow with the micro-batch; the other terms do not. The per-image activation cost of `plan`
    gives a first guess, which is then measured (and raised further if the measurement says so)."""
    budget = gpu_memory_gb * GB - CONTEXT_BYTES
    if plan.total <= budget:
        return plan
    static = plan.total - plan.activations
    per_image = plan.activations / plan.micro_batch
    for micro in sorted((m for m in range(1, plan.per_gpu_batch + 1) if plan.per_gpu_batch % m == 0), reverse=True):
        if micro >= plan.micro_batch or static + per_image * micro > budget:
            continue
        accum = plan.per_gpu_batch // micro
        fitted = memory_plan(plan.model, plan.gpus, plan.per_gpu_batch * plan.gpus, plan.opt, plan.zero,
                             plan.dtype, accum, **overrides)
        if fitted.total <= budget:
            return fitted
    return None


def torchrun_command(model: str, gpus: int, gpus_per_node: int, global_batch: int, zero: bool, opt: str | None,
                     dtype: str, data: str = "PATH/TO/latents", grad_accum: int = 1) -> list[str]:
    """The launch line(s): one node (--standalone) or several (c10d rendezvous, run on every node)."""
    if gpus > gpus_per_node and gpus % gpus_per_node:
        raise ValueError(f"{gpus} GPUs do not fill nodes of {gpus_per_node}; use a multiple of {gpus_per_node}")
    train = (f"-m mdt_teach train --profile full --model {model} --data {data} --batch-size {global_batch}"
             f" --dtype {DTYPES[dtype]}" + (f" --opt {opt}" if opt else "") + (" --zero" if zero else "")
             + (f" --grad-accum {grad_accum}" if grad_accum > 1 else "")
             + f" --out runs/{model.lower().replace('/', '')}")
    if gpus <= gpus_per_node:
        return [f"torchrun --standalone --nproc_per_node={gpus} {train}"]
    nodes = gpus // gpus_per_node
    return [f"torchrun --nnodes={nodes} --nproc_per_node={gpus_per_node} --rdzv_id=mdt --rdzv_backend=c10d "
            f"--rdzv_endpoint=$MASTER_ADDR:29500 {train}",
            f"# run the same line on each of the {nodes} nodes (MASTER_ADDR = one node's address); "
            "after a preemption add --resume"]


def format_plan(plan: MemoryPlan, other: MemoryPlan | None = None) -> str:
    """The table printed by `mdt-teach plan`."""
    bufs = OPT_BUFFERS[plan.opt]
    shard = f", sharded over {plan.gpus} GPUs (ZeRO)" if plan.zero else ""
    rows = [
        (f"weights (fp32, {plan.params / 1e6:.1f}M params)", plan.weights),
        ("gradients (fp32)", plan.grads),
        (f"optimizer state ({plan.opt}: {bufs} fp32 buffers{shard})", plan.optimizer),
        ("EMA copy (fp32)", plan.ema),
        (f"activations ({plan.dtype}, micro-batch {plan.micro_batch}, estimate)", plan.activations),
    ]
    lines = [f"{plan.model} on {plan.gpus} GPU(s): {plan.per_gpu_batch} images per GPU per step "
             f"(micro-batch {plan.micro_batch}), {plan.opt}{' + ZeRO' if plan.zero else ''}, autocast {plan.dtype}"]
    lines += [f"  {name:<68} {value / GB:8.2f} GB" for name, value in rows]
    lines.append(f"  {'total per GPU (the rows above)':<68} {plan.total / GB:8.2f} GB")
    lines.append(f"  {'  + CUDA context and allocator slack (~2 GB): what the GPU must hold':<68} "
                 f"{(plan.total + CONTEXT_BYTES) / GB:8.2f} GB")
    if other is not None:
        lines.append(f"  with {other.opt}{' + ZeRO' if other.zero else ''} instead: optimizer "
                     f"{other.optimizer / GB:.2f} GB, total {other.total / GB:.2f} GB")
    return "\n".join(lines)
