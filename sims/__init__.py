"""Toy simulations of the paper's claims (digest §9.3), thin shells over `threegate`.

`REGISTRY` maps each CLI name to its module (imported lazily); every module follows `sims._contract`.
"""

import importlib
from types import ModuleType

__all__ = ["REGISTRY", "load"]

#: name → module, in the digest's order S1–S8.
REGISTRY = {
    "precision-lr": "sims.precision_lr",  # S1
    "gate1-leash": "sims.gate1_leash",  # S2
    "gate2-geometry": "sims.gate2_geometry",  # S3
    "tiny-lm": "sims.tiny_lm",  # S4
    "interventions": "sims.interventions",  # S5
    "sparse-rl": "sims.sparse_rl",  # S6
    "lora-pissa": "sims.lora_pissa",  # S7
    "clip-leash": "sims.clip_leash",  # S8
}


def load(name: str) -> ModuleType:
    """The module of simulation `name` (ValueError naming the known ones otherwise)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown simulation {name!r}; known: {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[name])
