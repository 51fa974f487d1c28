"""Test-session settings: one torch thread (tiny tensors run faster, and CI's 2 cores stay predictable)."""
import torch

torch.set_num_threads(1)
