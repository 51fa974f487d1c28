"""`minimal_train.py` is the house `train.py` is: N steps of each, one seed, the same weights bit for bit.

Both run at the tiny profile's own thread count (`setup` sets it over conftest's one thread), in this process;
mutating the minimal trainer's loss must break the equality, so the test can fail.
"""
import pytest
import torch

from mdt_teach import minimal_train
from mdt_teach.data_order import seed_shard
from mdt_teach.diffusion import GaussianDiffusion
from mdt_teach.recipe import TrainConfig
from mdt_teach.train import Trainer

STEPS, SEED, BATCH = 3, 1, 4   # seed 1 draws a t with SNR > 5 at step 0, where Min-SNR-5 changes the loss


@pytest.fixture(scope="module", autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    cfg = TrainConfig(profile="tiny", steps=STEPS, seed=SEED, batch_size=BATCH,
                      out=str(tmp_path_factory.mktemp("minimal") / "run"), progress=False)
    t = Trainer(cfg, log=lambda *a, **k: None)
    t.after = []                          # (weights, EMA weights) after each step, for the mutation checks
    for _ in range(STEPS):
        t.train_step()
        t.after.append((snapshot(t.model), snapshot(t.ema.model)))
    return t


@pytest.fixture(scope="module")
def minimal():
    return minimal_train.train(STEPS, SEED, BATCH)


def snapshot(module: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def differing(a, b) -> list[str]:
    """Names of the state-dict entries (of modules or snapshots) that are not bit-for-bit equal."""
    sa, sb = (x if isinstance(x, dict) else x.state_dict() for x in (a, b))
    if sa.keys() != sb.keys():
        return sorted(set(sa) ^ set(sb))
    return [k for k in sa if not torch.equal(sa[k], sb[k])]


def test_the_trainer_runs_the_recipe_the_minimal_trainer_writes_out(trainer):
    cfg = trainer.cfg
    assert (cfg.model, cfg.opt, cfg.lr, tuple(cfg.betas), cfg.weight_decay) == \
        (minimal_train.MODEL, "adamw", minimal_train.LR, minimal_train.BETAS, 0.0)
    assert (cfg.weighting, cfg.max_grad_norm, cfg.ema_decay, cfg.ema_warmup, cfg.lr_schedule, cfg.dtype) == \
        ("min_snr", minimal_train.MAX_GRAD_NORM, minimal_train.EMA_DECAY, True, "constant", "float32")
    assert (cfg.masked_pass, cfg.grad_accum, trainer.dist.world_size, cfg.data) == (True, 1, 1, "smileys")


def test_same_weights_bit_for_bit(trainer, minimal):
    model, ema = minimal
    assert trainer.step == STEPS
    assert not differing(trainer.model, model)
    assert not differing(trainer.ema.model, ema)
    assert differing(trainer.model, ema), "the EMA must have moved away from the weights (not a copy)"


def test_same_weights_after_the_first_step_too(trainer):
    model, ema = minimal_train.train(1, SEED, BATCH)
    assert not differing(trainer.after[0][0], model) and not differing(trainer.after[0][1], ema)


def test_step_0_draws_a_timestep_where_min_snr_matters():
    seed_shard(SEED, 0, 0)
    t = torch.randint(0, 1000, (BATCH,))
    assert (torch.as_tensor(GaussianDiffusion().snr)[t] > minimal_train.MIN_SNR_GAMMA).any()


# One step with a mutated loss no longer matches the Trainer's first step.
def test_without_min_snr_the_weights_differ(trainer, monkeypatch):
    monkeypatch.setattr(minimal_train, "MIN_SNR_GAMMA", float("inf"))   # w_t = 1: plain L_simple + vb
    model, ema = minimal_train.train(1, SEED, BATCH)
    assert differing(trainer.after[0][0], model) and differing(trainer.after[0][1], ema)


def test_without_the_masked_pass_the_weights_differ(trainer, monkeypatch):
    full_pass = minimal_train.pass_loss

    def no_masked_pass(*args, enable_mask=False, **kwargs):
        loss = full_pass(*args, enable_mask=enable_mask, **kwargs)
        return loss * 0 if enable_mask else loss                         # same draws, no masked gradient

    monkeypatch.setattr(minimal_train, "pass_loss", no_masked_pass)
    model, ema = minimal_train.train(1, SEED, BATCH)
    assert differing(trainer.after[0][0], model) and differing(trainer.after[0][1], ema)


def test_the_command_line_refuses_zero_steps(capsys):
    with pytest.raises(SystemExit):
        minimal_train.main(["--steps", "0"])
    assert "--steps must be at least 1" in capsys.readouterr().err
