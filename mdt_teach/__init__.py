"""mdt_teach: the Masked Diffusion Transformer, lesson by lesson."""
