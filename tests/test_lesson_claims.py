"""One account of what the masked pass teaches, stated in the same words everywhere it is taught
(docs/masked_pass.md holds it; the README and lessons 00, 03, 04 and 05 repeat it)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLACES = ["README.md", "notebooks/00_welcome.py", "notebooks/03_masking.py",
          "notebooks/04_asymmetric_transformer.py", "notebooks/05_mdtv2_shortcuts.py"]


def plain(text: str) -> str:
    """Markdown (or a py:percent lesson's markdown comments) as one line of words: no '# ' prefixes, no
    emphasis marks, single spaces."""
    text = "\n".join(re.sub(r"^#( |$)", "", line) for line in text.splitlines())
    return " ".join(text.replace("**", "").replace("> ", " ").split())


def account() -> str:
    """The paragraph under '## The account' in docs/masked_pass.md."""
    doc = (ROOT / "docs" / "masked_pass.md").read_text()
    return plain(doc.split("## The account", 1)[1].split("\n## ", 1)[0])


def test_the_account_is_stated_in_the_same_words_everywhere():
    text = account()
    assert text.startswith("The masked pass hides") and "ε̂ ≈ 0" in text and "dense shortcut" in text
    missing = [place for place in PLACES if text not in plain((ROOT / place).read_text())]
    assert not missing, f"these do not state docs/masked_pass.md's account verbatim: {missing}"


def test_no_place_still_claims_the_masked_pass_predicts_the_whole_image():
    """The claim the account replaces: v1 cannot predict hidden pixels."""
    stale = [place for place in PLACES if re.search(r"predict the whole image from the rest|fill in hidden parts",
                                                     plain((ROOT / place).read_text()))]
    assert not stale, stale
