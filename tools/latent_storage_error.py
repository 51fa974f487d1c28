"""What the latent cache's storage dtype costs: bytes per image and the rounding error of the stored
posterior mean and std, measured on real photographs (scikit-learn's two bundled sample photos, both
orientations, ADM centre crop) encoded by a VAE.

    python tools/latent_storage_error.py [--vae stabilityai/sd-vae-ft-mse] [--image-size 256]
                                         [--out data/latent_storage_error.json]

The error is reported two ways: relative to the latents' RMS (how much of the signal is lost) and relative
to the posterior std (how it compares with the noise every training read adds when it samples the
posterior). Without the SD-VAE in the local Hugging Face cache, pass `--vae tiny` (a random test VAE): the
bytes are the same, the errors then describe that VAE's latents, not the SD-VAE's. tests/test_tools.py runs
it with `--vae tiny --image-size 32`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

from mdt_teach.checkpoint import write_json
from mdt_teach.data import center_crop_arr
from mdt_teach.latent_cache import DTYPES, from_storage, to_storage
from mdt_teach.vae import DEFAULT_VAE, load_vae
from provenance import provenance


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vae", default=DEFAULT_VAE)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--out", default="data/latent_storage_error.json")
    args = parser.parse_args(argv)
    made = provenance(__file__, argv)
    try:
        vae = load_vae(args.vae)
    except FileNotFoundError as err:
        print(f"latent_storage_error: {err}")
        return 2
    photos = [center_crop_arr(Image.fromarray(img), args.image_size) for img in load_sample_images().images]
    x = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float() / 127.5 - 1     # (2, 3, S, S)
    x = torch.cat([x, x.flip(-1)])                                                      # both orientations
    mean, std = vae.moments(x)
    mean, std = mean.float(), std.float()
    per_image_values = 2 * 2 * mean[0].numel()          # orientations × (mean, std) × C·h·w
    rows = []
    for dtype in DTYPES:
        m, s = from_storage(to_storage(mean, dtype), dtype), from_storage(to_storage(std, dtype), dtype)
        row = {"dtype": dtype, "bytes_per_image": per_image_values * (4 if dtype == "float32" else 2),
               "mean_max_err_over_rms": float((m - mean).abs().max() / mean.pow(2).mean().sqrt()),
               "mean_rms_err_over_rms": float((m - mean).pow(2).mean().sqrt() / mean.pow(2).mean().sqrt()),
               "mean_max_err_over_median_std": float((m - mean).abs().max() / std.median()),
               "std_max_rel_err": float(((s - std).abs() / std).max())}
        rows.append(row)
        print(row, flush=True)
    write_json(Path(args.out), {"vae": args.vae, "image_size": args.image_size,
                                "images": "scikit-learn sample photos china.jpg, flower.jpg + mirrors",
                                "latent_shape": list(mean.shape[1:]), "latent_rms": float(mean.pow(2).mean().sqrt()),
                                "posterior_std_median": float(std.median()), **made, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
