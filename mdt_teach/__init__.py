"""mdt_teach: the Masked Diffusion Transformer (MDT, MDTv2), lesson by lesson, from a CPU to a cluster."""
from mdt_teach.config import RunConfig, setup

__version__ = "0.1.0"
__all__ = ["RunConfig", "setup", "build_model", "__version__"]


def __getattr__(name):
    """Import the heavier parts lazily so `import mdt_teach` and `mdt-teach --help` stay fast."""
    if name == "build_model":
        from mdt_teach.models import build_model

        return build_model
    raise AttributeError(f"module 'mdt_teach' has no attribute {name!r}")
