"""`threegate study smollm2`: the paper's checkpoint experiments on real SmolLM2-135M runs (issue 9).

The runs are `threegate train` runs from one bf16 base (SFT, GRPO ×2 seeds, DAPO), each with checkpoints at
1/3, 2/3 and the end plus step 0. A preset says how they are trained; runs already in the runs folder (finished,
or interrupted and then resumed) are reused, missing ones are trained through the same `threegate train` code
path. The analysis is `threegate.study.analyse` — the same function the tiny-model simulation S4 runs.

Presets:
  quick: 3 steps per run, 4 prompts × 4, 8 new tokens, 16 held-out problems, analysis of three layers (first,
    middle, last) at k = 16 — minutes, for tests and a first look; its numbers are not evidence.
  full: 60 steps per run, 8 prompts × 8, 16 new tokens, 240 held-out problems with avg@4, every tensor at k = 64
    (`make smollm2-runs` trains the same runs) — CPU-hours, resumable.

Beyond the checkpoint analysis, two experiments of their own (issue 9 items 7–8):
  sparse RL: GRPO seed 0 from the same base with each one-shot mask of `threegate.study.sparse.MASKS` built from
    W₀ at the preset's k and α = ½ (`--mask`, dense unmasked), `sparse_steps` steps each (quick 2, full 20), the
    masked arms reusing the dense arm's base evaluation (`--eval-before`); runs `sparse-<arm>` in the runs folder.
  curvature: the base policy's Fisher curvature along principal / non-principal / in-subspace / orthogonal /
    isotropic directions in every linear projection of `curvature_layers` (quick: layer 15, 2 directions per
    family, 2 prompts; full: layers 0, 7, 15, 22, 29, 4 directions, 8 prompts).
"""

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from threegate.study.analyse import Run, StudyConfig

if TYPE_CHECKING:
    from threegate.lm.run import RunSpec

__all__ = [
    "PRESETS",
    "RUNS",
    "Preset",
    "checkpoint_digest",
    "discover_runs",
    "run_specs",
    "sparse_specs",
    "study_config",
]


@dataclasses.dataclass(frozen=True)
class Preset:
    """How the study's runs are trained and analysed."""

    steps: int
    prompts: int
    group: int
    new_tokens: int
    eval_size: int
    eval_k: int
    k: int
    include: str | None
    split: str = "unordered"
    sparse_steps: int = 2
    curvature_layers: tuple[int, ...] = (15,)
    curvature_directions: int = 2
    curvature_prompts: int = 2


PRESETS = {
    "quick": Preset(3, 4, 4, 8, 16, 1, 16, r"(?:^|\.)layers\.(?:0|15|29)\."),
    # the full runs of reports/smollm2 were made with the first, ordered held-out split; kept for consistency
    "full": Preset(60, 8, 8, 16, 240, 4, 64, None, "ordered", 20, (0, 7, 15, 22, 29), 4, 8),
}

#: name, algorithm, learning rate, seed — the runs of issue 8.
RUNS = (
    ("grpo-s0", "grpo", 2e-5, 0),
    ("sft-s0", "sft", 1e-5, 0),
    ("grpo-s1", "grpo", 2e-5, 1),
    ("dapo-s0", "dapo", 2e-5, 0),
)


def _spec(preset: Preset, algo: str, lr: float, seed: int, steps: int, **extra):
    from threegate.lm.run import spec_from_options

    return spec_from_options(
        algo=algo, model="smollm2", task="addition", steps=steps, prompts=preset.prompts,
        group_size=preset.group, minibatches=min(4, preset.prompts),
        max_new_tokens=preset.new_tokens, lr=lr, seed=seed, eval_size=preset.eval_size,
        eval_k=preset.eval_k, heldout_split=preset.split, **extra,
    )  # fmt: skip


def run_specs(preset: Preset, root: Path) -> list[tuple[str, "RunSpec"]]:
    """(name, `RunSpec`) of every run of the preset; run `name` goes to `root / name`."""
    del root  # the folders are the caller's: root / name
    return [
        (name, _spec(preset, algo, lr, seed, preset.steps, checkpoints=3, gates=3))
        for name, algo, lr, seed in RUNS
    ]


def sparse_specs(preset: Preset, root: Path) -> list[tuple[str, str, "RunSpec"]]:
    """(arm, run name, `RunSpec`) of the sparse-RL arms, into `root / name`; the dense arm first (its base
    evaluation, `root/sparse-dense/eval_before.json`, is reused by the others)."""
    from threegate.study.sparse import MASKS

    specs = []
    for arm in MASKS:
        extra = {}
        if arm != "dense":
            extra = dict(
                mask=arm,
                mask_rank=preset.k,
                mask_alpha=0.5,
                eval_before=str(root / "sparse-dense" / "eval_before.json"),
            )
        spec = _spec(preset, "grpo", 2e-5, 0, preset.sparse_steps, checkpoints=1, **extra)
        specs.append((arm, f"sparse-{arm}", spec))
    return specs


def checkpoint_digest(path: Path) -> str:
    """sha256 of a checkpoint folder's safetensors files, in name order (two runs share a base iff equal)."""
    h = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")):
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def discover_runs(root: Path, names: list[str] | None = None) -> tuple[str, list[Run]]:
    """The base checkpoint and the finished runs in `root` (folders with `eval.json` and `train_config.json`).

    Every run must start from the same base: their `step_000000` checkpoints are compared byte for byte.
    """
    runs, base, digest = [], None, None
    for folder in sorted(p.parent for p in Path(root).glob("*/eval.json")):
        if names is not None and folder.name not in names:
            continue
        if names is None and folder.name.startswith("sparse-"):
            continue  # the sparse-RL arms are their own experiment
        cfg = json.loads((folder / "train_config.json").read_text())
        steps = sorted(folder.glob("step_*"))
        if not steps or steps[0].name != "step_000000" or len(steps) < 2:
            raise ValueError(f"{folder}: needs step_000000 and at least one later checkpoint")
        d = checkpoint_digest(steps[0])
        if digest is None:
            base, digest = str(steps[0]), d
        elif d != digest:
            raise ValueError(
                f"{folder}: its step_000000 differs from {base}; runs must share one base"
            )
        kind = "sft" if cfg["algo"] == "sft" else "rl"
        runs.append(Run(folder.name, kind, tuple(str(p) for p in steps[1:])))
    if not runs:
        raise ValueError(f"no finished runs (folders with eval.json) in {root}")
    return base, runs


def study_config(preset: Preset, resume: bool) -> StudyConfig:
    return StudyConfig(k=preset.k, include=preset.include, resume=resume)
