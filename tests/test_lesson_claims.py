"""One account of what the masked pass teaches, told in full in one lesson (05, where every piece it names has
been built) and in docs/masked_pass.md, and pointed to, not copied, everywhere else it comes up."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOLD_IN = "notebooks/05_mdtv2_shortcuts.py"
POINTERS = ["README.md", "notebooks/00_welcome.py", "notebooks/03_masking.py", "notebooks/04_asymmetric_transformer.py"]
PLACES = [TOLD_IN] + POINTERS


def plain(text: str) -> str:
    """Markdown (or a py:percent lesson's markdown comments) as one line of words: no '# ' prefixes, no
    emphasis marks, single spaces."""
    text = "\n".join(re.sub(r"^#( |$)", "", line) for line in text.splitlines())
    return " ".join(text.replace("**", "").replace("> ", " ").split())


def account() -> str:
    """The paragraph under '## The account' in docs/masked_pass.md."""
    doc = (ROOT / "docs" / "masked_pass.md").read_text()
    return plain(doc.split("## The account", 1)[1].split("\n## ", 1)[0])


def sentences(text: str) -> list[str]:
    """The sentences of a plain text (split after '.', ':' or '?' followed by a space)."""
    return [s for s in re.split(r"(?<=[.:?]) ", text) if s]


def test_the_account_is_told_in_full_in_lesson_05_and_pointed_to_elsewhere():
    text = account()
    assert text.startswith("The masked pass hides") and "ε̂ ≈ 0" in text and "dense shortcut" in text
    assert text in plain((ROOT / TOLD_IN).read_text()), f"{TOLD_IN} does not tell docs/masked_pass.md's account"
    copied = {place: [s for s in sentences(text)[1:] if s in plain((ROOT / place).read_text())] for place in POINTERS}
    assert not any(copied.values()), f"these copy sentences of the account instead of pointing to it: {copied}"
    unlinked = [place for place in POINTERS if "docs/masked_pass.md" not in (ROOT / place).read_text()]
    assert not unlinked, f"these mention the masked pass without pointing to docs/masked_pass.md: {unlinked}"


def test_lessons_00_and_03_do_not_name_parts_built_later():
    """00 and 03 come before the side-interpolater (04) and the dense shortcut (05) exist (00's map of the
    lessons, a table, may name what lesson 04 builds)."""
    prose = lambda place: plain("\n".join(line for line in (ROOT / place).read_text().splitlines()   # noqa: E731
                                          if not line.startswith("# |")))
    early = {place: [w for w in ("side-interpolater", "dense shortcut") if w in prose(place)]
             for place in ("notebooks/00_welcome.py", "notebooks/03_masking.py")}
    assert not any(early.values()), early


def test_no_place_still_claims_the_masked_pass_predicts_the_whole_image():
    """The claim the account replaces: v1 cannot predict hidden pixels."""
    stale = [place for place in PLACES if re.search(r"predict the whole image from the rest|fill in hidden parts",
                                                     plain((ROOT / place).read_text()))]
    assert not stale, stale


def test_lesson_04_solution_1_feeding_the_side_output_to_kept_tokens():
    """Lesson 04, exercise 1: the output moves a lot at the kept tokens and almost nothing at the hidden ones."""
    import torch

    from mdt_teach.data import smileys_batch
    from mdt_teach.diffusion import GaussianDiffusion
    from mdt_teach.lessons import load_lesson_checkpoint
    from mdt_teach.models import MDT

    model, _ = load_lesson_checkpoint()
    x0, y = smileys_batch(8, seed=3)
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 1000, (8,), generator=g)
    x_t = GaussianDiffusion().q_sample(x0, t, torch.randn(x0.shape, generator=g))
    run = lambda: model(x_t, t, y, enable_mask=True, generator=torch.Generator().manual_seed(1))  # noqa: E731
    with torch.no_grad():
        right = run()
        original = MDT.forward_side_interpolater

        def side_output_everywhere(self, h, c, mask, ids_restore):
            return original(self, h, c, torch.ones_like(mask), ids_restore)   # every token takes x_side
        MDT.forward_side_interpolater = side_output_everywhere
        try:
            wrong = run()
        finally:
            MDT.forward_side_interpolater = original
    from mdt_teach.lessons import model_mask
    mask = model_mask(model, 8, seed=1).bool()                                   # (B, L), True = hidden
    per_token = (wrong - right).abs().reshape(8, -1, 8, 4, 8, 4).mean(dim=(1, 3, 5)).flatten(1)   # (B, L)
    kept, hidden = per_token[~mask].mean().item(), per_token[mask].mean().item()
    assert kept > 0.5 and hidden < 0.002 and kept > 300 * hidden, (kept, hidden)   # the solution says 0.67, 0.0007


def test_lesson_09_solution_2_quotes_the_committed_measurement():
    """The pow 0.01 vs pow 4 variety numbers in lesson 09's solution are the ones tools/cfg_pow_variety.py wrote."""
    import json

    rows = {r["scale_pow"]: r["within_class_variance"]
            for r in json.loads((ROOT / "data" / "cfg_pow_variety.json").read_text())["rows"]}
    lesson = plain((ROOT / "notebooks" / "09_sampling_and_cfg.py").read_text())
    assert f"{rows[0.01]:.4f} with pow 0.01 and {rows[4.0]:.4f} with pow 4" in lesson
    assert abs(rows[0.01] - rows[4.0]) < 0.05 * rows[4.0]      # "there is none": within 5%


def test_lesson_02_solution_4_the_tiny_label_table_has_the_null_class_last():
    from mdt_teach.models import build_model

    model = build_model("DiT-T/4")
    assert model.y_embedder.num_classes == 4 and model.y_embedder.embedding_table.weight.shape[0] == 5


def test_lesson_09_solution_1_reads_the_committed_sampler_table():
    """Exercise 1's solution: DDIM-10 and DDIM-50 differ by a tenth of a standard error of the difference."""
    import json

    rows = {r["steps"]: r for r in json.loads((ROOT / "data" / "sampler_comparison.json").read_text())["rows"]}
    se = (rows["ddim10"]["pair_standard_error"] ** 2 + rows["ddim50"]["pair_standard_error"] ** 2) ** 0.5
    assert round(abs(rows["ddim10"]["pair_agreement"] - rows["ddim50"]["pair_agreement"]) / se, 1) == 0.1
    assert "differ by a tenth of a standard error" in plain((ROOT / "notebooks" / "09_sampling_and_cfg.py").read_text())


def test_lesson_09_guidance_prose_matches_the_widget_and_the_table():
    """The guidance section's numbers: the widget's opening w, pow and slider end, the 512-face table's gain,
    and the mean w_eff the text quotes."""
    import json

    from mdt_teach.diffusion import GaussianDiffusion
    from mdt_teach.models import build_model
    from mdt_teach.viz.sampling import cfg_widget, mean_guidance

    lesson = plain((ROOT / "notebooks" / "09_sampling_and_cfg.py").read_text())
    model = build_model("MDTv2-T/4", depth=2, hidden_size=32, num_heads=2).eval()
    controls = cfg_widget(model, GaussianDiffusion(), static=False).controls
    w, pow_ = controls["cfg_scale"], controls["scale_pow"]
    assert (w.value, pow_.value, w.max, pow_.max) == (8.0, 0.0, 12.0, 4.0)
    assert "opens at constant guidance (pow 0, DiT's schedule) with w = 8" in lesson
    assert "which is why the slider stops at 12" in lesson and "MDT's FID setting, 4" in lesson
    cc = {(r["cfg_scale"], r["scale_pow"]): r["class_consistency"]
          for r in json.loads((ROOT / "data" / "cfg_class_consistency.json").read_text())["rows"]}
    assert f"from {cc[1.0, 0.0]:.0%} to {cc[8.0, 0.0]:.0%}" in lesson
    d = GaussianDiffusion()
    assert "(2.6 at w = 8)" in lesson and round(mean_guidance(8.0, 4.0, d), 1) == 2.6
    assert f"(8 → {mean_guidance(8.0, 2.0, d):.1f} by pow 2, at w = 8)" in lesson
