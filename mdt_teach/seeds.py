"""The one 64-bit mixer behind every seed and counter-based random number of the package.

Stafford's "variant 13" finaliser (the last three lines of SplitMix64), on uint64 numpy arrays with wrapping
arithmetic:

    finalise(w) = s₃₁(s₂₇(w·C₁)·C₂)          s_k(z) = z ⊕ (z ≫ k),  C₁ = 0xBF58476D1CE4E5B9,  C₂ = 0x94D049BB133111EB

Two uses, each a pure function of integers (no hidden state, the same on every machine and process):
`splitmix64(x) = finalise(s₃₀(x + γ))` hashes counters into the smileys' random numbers (`smileys.uniforms`),
and `mix_seed(a, b, …)` chains `z ← finalise(z ⊕ part)` from z = γ into the seeds of data order, shards and FID
samples (γ = 0x9E3779B97F4A7C15, the golden-ratio increment).
"""
from __future__ import annotations

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MASK64 = 0xFFFFFFFFFFFFFFFF


def finalise(w: np.ndarray) -> np.ndarray:
    """s₃₁(s₂₇(w·C₁)·C₂) on a uint64 array."""
    z = w * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output for state x (uint64 array): finalise(s₃₀(x + γ)), a good 64-bit hash of a counter."""
    z = x + GOLDEN
    return finalise(z ^ (z >> np.uint64(30)))


def mix_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of the integers `parts`: z ← finalise(z ⊕ part) from z = γ."""
    z = np.array([GOLDEN], dtype=np.uint64)
    for part in parts:
        z = finalise(z ^ np.uint64(int(part) & MASK64))
    return int(z[0]) >> 1
