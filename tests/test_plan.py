"""`mdt-teach plan`: memory terms from the parameter count, activations measured on the meta device."""
import pytest
import torch

from mdt_teach.cli import main
from mdt_teach.models import build_model
from mdt_teach.config import Capabilities, decide
from mdt_teach.plan import (CONTEXT_BYTES, GB, fit_grad_accum, meta_model, memory_plan, saved_bytes, torchrun_command,
                            with_optimizer)
from mdt_teach.recipe import TrainConfig, resolve


def test_parameter_counts_match_the_official_models():
    assert sum(p.numel() for p in meta_model("MDTv2-XL/2").parameters()) == 742_263_904   # docs/model_sizes.md


def test_static_memory_terms():
    plan = memory_plan("MDTv2-S/2", gpus=8, global_batch=64, opt="adan", dtype="bf16")
    P = 38_454_872                                              # MDTv2-S/2, decode_layer 6 (docs/model_sizes.md)
    assert plan.params == plan.trainable == P and plan.micro_batch == 8
    assert (plan.weights, plan.grads, plan.ema) == (4 * P, 4 * P, 4 * P)
    assert plan.optimizer == 16 * P                             # Adan: m, v, n, previous gradient
    assert with_optimizer(plan, "adamw").optimizer == 8 * P     # AdamW: m, v
    zero = memory_plan("MDTv2-S/2", gpus=8, global_batch=64, opt="adan", zero=True, dtype="bf16")
    assert zero.optimizer == 16 * P / 8 and zero.activations == plan.activations
    assert plan.total == pytest.approx(28 * P + plan.activations)


@pytest.mark.parametrize("name", ["DiT-T/4", "MDTv2-T/4"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_meta_estimate_matches_a_real_cpu_forward(name, dtype):
    torch.manual_seed(0)
    fixed = {"mask_ratio_jitter": 0.0} if name.startswith("MDTv2") else {}
    real = saved_bytes(build_model(name, **fixed), 2, dtype)    # torch's own CPU autocast for bf16
    estimate = saved_bytes(meta_model(name), 2, dtype)          # emulated autocast, no memory used
    assert estimate == pytest.approx(real, rel=0.10)


def test_mdt_keeps_both_passes_for_one_backward():
    both = saved_bytes(meta_model("MDTv2-T/4"), 8)
    unmasked_only = saved_bytes(meta_model("MDTv2-T/4", mask_ratio=None), 8)
    assert 1.5 < both / unmasked_only < 2.0                    # the masked pass keeps ~70% of the tokens
    assert saved_bytes(meta_model("DiT-T/4"), 8, "bf16") < saved_bytes(meta_model("DiT-T/4"), 8, "fp32")


def test_activations_are_a_line_in_the_micro_batch():
    """Lesson 10 derives A(b) = a·b + c from micro-batches 1 and 2; its exercise 1 predicts the 32-GPU plan
    (micro-batch 8) from that line, and the measured plan must agree to the byte."""
    xl = meta_model("MDTv2-XL/2")
    one, two = saved_bytes(xl, 1, "bf16"), saved_bytes(xl, 2, "bf16")
    a, c = two - one, 2 * one - two
    plan = memory_plan("MDTv2-XL/2", gpus=32, global_batch=256, opt="adan", dtype="bf16")
    assert plan.micro_batch == 8 and plan.activations == 8 * a + c
    assert round((plan.total + CONTEXT_BYTES) / GB, 1) == 30.8      # lesson 10, solution 1: fits 40 GB cards


def test_torchrun_lines():
    single = torchrun_command("MDTv2-XL/2", 8, 8, 256, True, None, "bf16", data="lat")
    assert single == ["torchrun --standalone --nproc_per_node=8 -m mdt_teach train --profile full --model MDTv2-XL/2 "
                      "--data lat --batch-size 256 --dtype bfloat16 --zero --out runs/mdtv2-xl2"]
    multi = torchrun_command("MDTv2-XL/2", 32, 8, 256, True, "adan", "bf16")
    assert multi[0].startswith("torchrun --nnodes=4 --nproc_per_node=8 --rdzv_id=mdt --rdzv_backend=c10d "
                               "--rdzv_endpoint=$MASTER_ADDR:29500 -m mdt_teach train")
    with pytest.raises(ValueError, match="12 GPUs do not fill nodes of 8"):
        torchrun_command("MDTv2-XL/2", 12, 8, 240, False, None, "bf16")


def test_plan_cli(capsys):
    assert main(["plan", "--model", "MDTv2-S/2", "--gpus", "8", "--global-batch", "64", "--zero"]) == 0
    out = capsys.readouterr().out
    assert "adan: 4 fp32 buffers, sharded over 8 GPUs (ZeRO)" in out and "with adamw + ZeRO instead" in out
    assert "torchrun --standalone --nproc_per_node=8 -m mdt_teach train" in out


@pytest.mark.parametrize("argv, match", [
    (["plan", "--gpus", "0"], "--gpus must be at least 1"),
    (["plan", "--gpus", "8", "--global-batch", "100"], "global batch 100 is not divisible by 8 GPUs"),
    (["plan", "--model", "MDTv9-XL/2"], "unknown model 'MDTv9-XL/2'"),
    (["plan", "--opt", "sgd"], "unknown optimizer 'sgd'"),
    (["plan", "--dtype", "fp8"], "unknown dtype 'fp8'"),
])
def test_plan_bad_input(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]


def test_plan_proposes_the_accumulation_that_fits(capsys):
    """MDTv2-XL/2 at the official global batch 256 on 8 × 40 GB: micro-batch 32 does not fit, 16 does."""
    plan = memory_plan("MDTv2-XL/2", 8, 256, "adan", False, "bf16")
    assert plan.total + CONTEXT_BYTES > 40 * GB
    fitted = fit_grad_accum(plan, 40)
    assert (fitted.micro_batch, fitted.per_gpu_batch) == (16, 32) and fitted.total + CONTEXT_BYTES <= 40 * GB
    assert fit_grad_accum(plan, 80) is plan                       # fits as it is
    assert fit_grad_accum(memory_plan("MDTv2-XL/2", 1, 8, "adan", False, "bf16"), 10) is None  # weights alone
    # lesson 10, exercise 2: 8 × 24 GB fits nothing without ZeRO; with ZeRO, --grad-accum 4 (micro-batch 8)
    assert fit_grad_accum(plan, 24) is None
    zero = fit_grad_accum(memory_plan("MDTv2-XL/2", 8, 256, "adan", True, "bf16"), 24)
    assert (zero.per_gpu_batch // zero.micro_batch, zero.micro_batch) == (4, 8)
    assert main(["plan", "--gpus", "8", "--gpu-memory", "40"]) == 0
    out = capsys.readouterr().out
    assert "with --grad-accum 2 (micro-batch 16, same global batch 256)" in out
    assert "--batch-size 256 --dtype bfloat16 --grad-accum 2" in out


def test_full_profile_trains_at_the_official_global_batch():
    """Without --batch-size, the full profile resolves to the official global batch 256 with MDTv2-XL/2's lr."""
    a100 = Capabilities(cuda=True, bf16=True, cpu_count=16, device_name="A100")
    cfg = resolve(TrainConfig(profile="full"), decide("full", a100, env={}))
    assert (cfg.model, cfg.batch_size, cfg.opt, cfg.lr) == ("MDTv2-XL/2", 256, "adan", 3e-4)
