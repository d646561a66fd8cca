"""`threegate study controlled`: RL against SFT at matched learning rate and steps, KL and accuracy (issue 16).

Every run starts from the one bf16 SmolLM2 base, trains on the same task (chat-template addition) with the same
AdamW, the same prompts and optimizer updates per step, and differs only in its method, learning rate, seed
and (the ablation) the storage dtype:

* methods: GRPO (β = 0); off-policy SFT (cross-entropy on the reference answers); on-policy SFT (`rft`:
  cross-entropy on the policy's own correct samples of the group, rejection-sampling fine-tuning);
* a learning-rate grid (`Preset.lrs`) × seeds (`Preset.seeds`), each run with `Preset.checkpoints` evenly
  spaced checkpoints after step 0 and the drift accumulator on (`TrainConfig.track_drift`);
* the storage ablation: GRPO and off-policy SFT at the middle learning rate once more with float32 storage
  (`TrainConfig.storage`), no bf16 rounding anywhere in the forward passes.

The runs are a queue of `RunSpec`s (`threegate.lm.queue.run_queue`: one fresh process per run, or Ray tasks),
resumable run by run. Then, per checkpoint (`probes/<run>.jsonl`, resumable record by record; the base once, as
step 0): held-out avg@k and greedy accuracy, the forward KL(π₀‖π) along completions sampled once from the base,
the reverse KL(π‖π₀) along the policy's own samples, nats/token on a general English text and the cloze probe
(`threegate.lm.probes`). Per cell (method, lr, storage; both seeds together, so their Jaccard comes out):
`threegate compare` of every checkpoint against the base — all tensors without spectral work (sparsity,
low-magnitude overlaps) and the spectral tensors (`Preset.include`) at each k of `Preset.ks` (`geometry/`);
float32 runs are measured on their update restricted to its largest-|ΔW| entries at the density of the
matching bf16 run, tensor by tensor (`geometry/<cell>/topmask/`). The analysis (`threegate.study.matching`)
turns the rows into frontiers, the three matchings, the sparsity model and the claims; `study.json`,
`report.md` and the figures go in the study folder.

Presets:
  quick: one lr (1e-5) × 2 seeds × 3 methods + the ablation (seed 0), 2 steps of 2 prompts × 4, 2 checkpoints,
    tiny probes and one layer's geometry — for the tests (about 15 minutes); its numbers are not evidence.
  full: lrs 1e-6, 3e-6, 1e-5 × 2 seeds × 3 methods + the ablation (22 runs), 32 steps of 4 prompts × 8 with 4
    updates each and 16 new tokens (the task of reports/smollm2), 4 checkpoints, 160 held-out problems with
    avg@4, 64 × 2 forward-KL samples, 20 480 text tokens, geometry of every linear tensor of 8 layers at k = 64
    and 16 — CPU-hours, resumable.
"""

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from threegate.records import JsonlWriter, read_jsonl, write_json

__all__ = [
    "METHODS",
    "PRESETS",
    "Preset",
    "RunInfo",
    "grid",
    "run_specs",
]

#: The methods: the algorithm registry's names (`threegate.lm.algorithms`), and their kind in the analysis.
METHODS = {"grpo": "rl", "sft": "sft", "rft": "on-policy sft"}


@dataclasses.dataclass(frozen=True)
class Preset:
    """How the controlled study's runs are trained, probed and measured (module docstring)."""

    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    steps: int
    prompts: int
    group: int
    minibatches: int
    new_tokens: int
    checkpoints: int
    eval_size: int
    eval_k: int
    kl_prompts: int
    kl_samples: int
    text_tokens: int
    text_window: int
    ks: tuple[int, ...]
    include: str | None
    ablation: bool = True
    temperature: float = 0.7
    ablation_seeds: tuple[int, ...] | None = None  # None: every seed


PRESETS = {
    "quick": Preset(
        lrs=(1e-5,), seeds=(0, 1), steps=2, prompts=2, group=4, minibatches=2, new_tokens=8,
        checkpoints=2, eval_size=8, eval_k=1, kl_prompts=4, kl_samples=2, text_tokens=1024,
        text_window=256, ks=(16, 4), include=r"(?:^|\.)layers\.15\.", ablation_seeds=(0,),
    ),
    "full": Preset(
        lrs=(1e-6, 3e-6, 1e-5), seeds=(0, 1), steps=32, prompts=4, group=8, minibatches=4,
        new_tokens=16, checkpoints=4, eval_size=160, eval_k=4, kl_prompts=64, kl_samples=2,
        text_tokens=20480, text_window=512, ks=(64, 16),
        include=r"(?:^|\.)layers\.(?:0|4|8|12|16|20|24|29)\.",
    ),
}  # fmt: skip


class RunInfo(NamedTuple):
    """One run of the grid: its folder name, method, learning rate, seed and storage dtype."""

    name: str
    method: str
    lr: float
    seed: int
    storage: str = "bfloat16"

    @property
    def cell(self) -> str:
        """The cell (method, lr, storage) the run's seeds share."""
        return cell_name(self.method, self.lr, self.storage)


def cell_name(method: str, lr: float, storage: str = "bfloat16") -> str:
    return f"{method}-lr{lr:.0e}" + ("-f32" if storage == "float32" else "")


def grid(preset: Preset) -> list[RunInfo]:
    """Every run of the preset: methods × lrs × seeds, then the float32 ablation (GRPO and off-policy SFT at
    the middle lr, every seed)."""
    runs = [
        RunInfo(f"{cell_name(m, lr)}-s{s}", m, lr, s)
        for lr in preset.lrs
        for m in METHODS
        for s in preset.seeds
    ]
    if preset.ablation:
        mid = preset.lrs[len(preset.lrs) // 2]
        runs += [
            RunInfo(f"{cell_name(m, mid, 'float32')}-s{s}", m, mid, s, "float32")
            for m in ("grpo", "sft")
            for s in (preset.seeds if preset.ablation_seeds is None else preset.ablation_seeds)
        ]
    return runs


def run_spec(preset: Preset, run: RunInfo):
    """The `RunSpec` of one run: no evaluation of its own (the probes evaluate every checkpoint alike)."""
    from threegate.lm.run import EvalSpec, ModelSpec, RunSpec, TaskSpec
    from threegate.lm.train import TrainConfig

    train = TrainConfig(
        algo=run.method,
        steps=preset.steps,
        lr=run.lr,
        prompts_per_step=preset.prompts,
        group_size=preset.group,
        minibatches=preset.minibatches,
        temperature=preset.temperature,
        track_drift=True,
        storage=run.storage,
        seed=run.seed,
    )
    return RunSpec(
        train,
        ModelSpec("smollm2"),
        TaskSpec("addition", max_new_tokens=preset.new_tokens),
        EvalSpec(enabled=False, k=preset.eval_k, size=preset.eval_size),
        checkpoints=preset.checkpoints,
    )


def run_specs(preset: Preset) -> list[tuple[str, Any]]:
    """(name, `RunSpec`) of every run, for `run_queue`."""
    return [(r.name, run_spec(preset, r)) for r in grid(preset)]


def checkpoints_of(folder: Path) -> list[tuple[int, Path]]:
    """(step, folder) of a run's checkpoints after step 0, in step order."""
    out = []
    for p in sorted(Path(folder).glob("step_*")):
        step = int(p.name.split("_")[1])
        if step > 0:
            out.append((step, p))
    return out


# ----------------------------------------------------------------------------------------------- the probes


class _Prober:
    """Everything the probes of one study share: the base, the task, the prompts and the base's samples."""

    def __init__(self, preset: Preset, out: Path):
        import jax

        from threegate.lm import probes
        from threegate.lm.run import build

        spec = run_spec(preset, grid(preset)[0])
        self.mcfg, params, self.task = build(spec)
        self.base = jax.tree.map(lambda x: x.astype(jax.numpy.bfloat16), params)
        self.preset = preset
        self.problems = self.task.eval_problems(preset.eval_size)
        kl_problems = self.task.eval_problems(preset.kl_prompts, seed=1)
        prompts, pmask = self.task.prompts(kl_problems)
        self.prompts, self.pmask = prompts, pmask
        samples = (
            out / "base_samples.json"
        )  # token ids and masks, drawn once: every checkpoint is read on them
        if samples.is_file():
            saved = json.loads(samples.read_text())
            self.base_samples = probes.Samples(
                {
                    k: np.asarray(v, bool if k.endswith("mask") else np.int32)
                    for k, v in saved.items()
                }
            )
        else:
            self.base_samples = self._sample(self.base, jax.random.key(7))
            write_json(samples, {k: v.tolist() for k, v in self.base_samples.items()}, indent=None)
        self.text, self.text_source = probes.general_text(self.task.tokenizer, preset.text_tokens)
        self.cloze = probes.ClozeProbe(self.task.tokenizer)

    def _sample(self, params, key):
        from threegate.lm.probes import sample_completions

        return sample_completions(
            params,
            self.mcfg,
            self.prompts,
            self.pmask,
            key,
            group=self.preset.kl_samples,
            max_new_tokens=self.preset.new_tokens,
            temperature=self.preset.temperature,
            eos_id=self.task.eos_id,
        )

    def record(self, params) -> dict:
        import jax

        from threegate.lm import probes
        from threegate.lm.evaluation import eval_report

        t0 = time.perf_counter()
        p = self.preset
        ev = eval_report(
            params, self.mcfg, self.task, self.problems, jax.random.key(0),
            k=p.eval_k, temperature=p.temperature, batch_size=min(256, p.eval_size),
        )  # fmt: skip
        fwd = probes.sequence_kl(
            self.base, params, self.mcfg, self.base_samples, temperature=p.temperature
        )
        own = self._sample(params, jax.random.key(8))
        rev = probes.sequence_kl(params, self.base, self.mcfg, own, temperature=p.temperature)
        return {
            "accuracy": ev["accuracy"],
            "accuracy_ci": ev["accuracy_ci"],
            "greedy_accuracy": ev["greedy_accuracy"],
            "greedy_ci": ev["greedy_ci"],
            "per_problem": ev["per_problem"],
            "forward_kl": probes.kl_record(*fwd),
            "reverse_kl": probes.kl_record(*rev),
            "text": probes.text_nll(params, self.mcfg, self.text, window=p.text_window)
            | {"source": self.text_source},
            "cloze": self.cloze.record(params, self.mcfg),
            "seconds": time.perf_counter() - t0,
        }


def _probe_runs(
    preset: Preset, out: Path, runs: list[RunInfo], say, cache: dict | None = None
) -> None:
    """Probe records of the base (`probes/base.jsonl`) and of every checkpoint of every finished run
    (`probes/<run>.jsonl`); records already written are kept (resume). `cache` keeps the prober (the base,
    its samples, the compiled probes) from one call to the next."""
    from threegate.lm.checkpoint import load_checkpoint
    from threegate.lm.queue import is_finished

    folder = out / "probes"
    folder.mkdir(parents=True, exist_ok=True)
    todo = []
    for r in [None, *runs]:
        name = "base" if r is None else r.name
        done = {rec["step"] for rec in read_jsonl(folder / f"{name}.jsonl")}
        if r is None:
            steps = [] if 0 in done else [(0, None)]
        elif is_finished(out / "runs" / r.name):
            steps = [(s, p) for s, p in checkpoints_of(out / "runs" / r.name) if s not in done]
        else:
            steps = []
        todo += [(name, s, p) for s, p in steps]
    if not todo:
        return
    cache = {} if cache is None else cache
    if "prober" not in cache:
        cache["prober"] = _Prober(preset, folder)
    prober = cache["prober"]
    for name, step, path in todo:
        say(f"probing {name} step {step}")
        params = prober.base if path is None else load_checkpoint(path)[1]
        rec = {"run": name, "step": step} | prober.record(params)
        with JsonlWriter(folder / f"{name}.jsonl") as w:
            w.write(rec)


# --------------------------------------------------------------------------------------------- the geometry


def _base_checkpoint(out: Path, runs: list[RunInfo]) -> Path:
    """The shared base: the first run's step 0, checked byte for byte against every bf16 run's step 0."""
    from threegate.study.smollm2 import checkpoint_digest

    base, digest = None, None
    for r in runs:
        step0 = out / "runs" / r.name / "step_000000"
        if r.storage != "bfloat16" or not step0.is_dir():
            continue
        if base is not None and _same_files(base, step0):
            continue  # hard links of the base (`_link_base`): the same bytes, not read again
        d = checkpoint_digest(step0)
        if base is None:
            base, digest = step0, d
        elif d != digest:
            raise ValueError(f"{step0} differs from {base}: the runs must share one base")
    if base is None:
        raise ValueError(f"no finished bf16 run in {out / 'runs'}")
    return base


def _same_files(a: Path, b: Path) -> bool:
    """Whether two checkpoint folders hold the very same files (hard links)."""
    fa = sorted(p.name for p in a.glob("*.safetensors"))
    return fa == sorted(p.name for p in b.glob("*.safetensors")) and all(
        os.path.samefile(a / n, b / n) for n in fa
    )


def top_update_checkpoint(base: Path, tuned: Path, density: dict[str, float], dest: Path) -> Path:
    """`dest` ← base + ΔW restricted, tensor by tensor, to the ⌈density·numel⌉ entries of largest |ΔW| (ties
    at the threshold broken by position), in float32; names without a density keep the base values.

    The storage ablation's measurement: a float32-stored update changes nearly every entry, so its geometry
    is read on the entries it moved most, as many as the matching bf16 run changed.
    """
    from threegate.checkpoints import open_checkpoint, save_safetensors

    if (dest / "model.safetensors").is_file():
        return dest

    def items():
        with open_checkpoint(base) as b, open_checkpoint(tuned) as t:
            for name in b.names():
                w0 = b.load(name).astype(np.float32)
                if name not in density:
                    yield name, w0
                    continue
                dw = t.load(name).astype(np.float64) - w0.astype(np.float64)
                keep = int(np.ceil(density[name] * dw.size))
                flat = np.abs(dw).ravel()
                mask = np.zeros(flat.size, bool)
                if keep > 0:
                    mask[np.argsort(-flat, kind="stable")[:keep]] = True
                yield (
                    name,
                    (w0.astype(np.float64) + np.where(mask.reshape(dw.shape), dw, 0.0)).astype(
                        np.float32
                    ),
                )

    dest.mkdir(parents=True, exist_ok=True)
    save_safetensors(items(), dest)
    (dest / "config.json").write_text((Path(tuned) / "config.json").read_text())
    return dest


def _compare(base: Path, tuned: list[Path], out: Path, *, k: int, include, spectral: bool) -> dict:
    from threegate.compare import CompareConfig, run_compare, summarize

    if (out / "summary.json").is_file():
        return json.loads((out / "summary.json").read_text())
    cfg = CompareConfig(
        base=str(base),
        tuned=tuple(str(t) for t in tuned),
        out=str(out),
        k=k,
        include=include,
        spectral=spectral,
        resume=(out / "run.json").is_file(),
    )
    run_compare(cfg)
    return summarize(out)


def _geometry(preset: Preset, out: Path, runs: list[RunInfo], say) -> None:
    """The geometry of every cell whose runs all finished and still have their checkpoints: the compares
    (`geometry/<cell>/{all,k<K>}`), then what the analysis reads of them, small enough to commit:
    `geometry/<cell>/rows.json` (per run and step, `cell_geometry`) and, for a bf16 cell, the per-tensor
    changed fractions its float32 twin is measured at (`densities.json`). The float32 cells are compared on
    their top-|ΔW| checkpoints (`geometry/<cell>/topmask/`, deleted once measured)."""
    from threegate.lm.queue import is_finished

    cells: dict[str, list[RunInfo]] = {}
    for r in runs:
        cells.setdefault(r.cell, []).append(r)
    order = sorted(cells, key=lambda c: "f32" in c)  # the bf16 cells first: the ablation needs them
    base = None
    for cell in order:
        members = cells[cell]
        gdir = out / "geometry" / cell
        if (gdir / "rows.json").is_file():
            continue
        folders = {r.name: out / "runs" / r.name for r in members}
        if not all(is_finished(f) and checkpoints_of(f) for f in folders.values()):
            continue
        if base is None:  # checked once per call, only when a cell is measured
            base = _base_checkpoint(out, runs)
        keys = {}  # the compare's key of each measured checkpoint → (run, step)
        tuned = []
        for r in members:
            for step, path in checkpoints_of(folders[r.name]):
                if r.storage == "float32":
                    dens = _twin_densities(out, r, step)
                    if dens is None:
                        break
                    path = top_update_checkpoint(
                        base, path, dens, gdir / "topmask" / r.name / path.name
                    )
                tuned.append(path)
                keys[str(Path(path).resolve())] = (r.name, step)
        if len(tuned) != sum(len(checkpoints_of(f)) for f in folders.values()):
            continue  # a float32 cell whose bf16 twin is not measured yet
        say(f"geometry of {cell} ({len(tuned)} checkpoints)")
        _compare(base, tuned, gdir / "all", k=preset.ks[0], include=None, spectral=False)
        for k in preset.ks:
            _compare(base, tuned, gdir / f"k{k}", k=k, include=preset.include, spectral=True)
        if members[0].storage == "bfloat16":
            write_json(gdir / "densities.json", _densities(gdir / "all", keys), indent=None)
        write_json(gdir / "rows.json", cell_geometry(gdir, keys, preset.ks), indent=1)
        if (gdir / "topmask").is_dir():  # derived checkpoints, remade from the runs if ever needed
            shutil.rmtree(gdir / "topmask")


def _densities(folder: Path, keys: dict) -> dict:
    """{run: {step: {tensor: changed fraction}}} of a compare folder."""
    out: dict = {}
    for x in read_jsonl(folder / "tensors.jsonl"):
        if x["tuned"] in keys and x.get("changed") is not None:
            run, step = keys[x["tuned"]]
            out.setdefault(run, {}).setdefault(str(step), {})[x["name"]] = x["changed"] / x["numel"]
    return out


def _twin_densities(out: Path, r: RunInfo, step: int) -> dict | None:
    """The per-tensor changed fractions of run `r`'s bf16 twin (same method, lr, seed) at `step`."""
    f = out / "geometry" / cell_name(r.method, r.lr) / "densities.json"
    if not f.is_file():
        return None
    twin = f"{cell_name(r.method, r.lr)}-s{r.seed}"
    return json.loads(f.read_text()).get(twin, {}).get(str(step))


def cell_geometry(gdir: Path, keys: dict, ks: tuple[int, ...]) -> dict:
    """{run: {step: fields}} of one cell from its compares: sparsity (all, linear) and the Jaccard of the two
    seeds' update masks with its baseline (`all`, every tensor), the spectral fields at each k
    (`threegate.study.matching.geometry_summary`, named `field@k`)."""
    from threegate.study.matching import geometry_summary

    by_run: dict[str, dict[int, str]] = {}
    for key, (run, step) in keys.items():
        by_run.setdefault(run, {})[step] = key
    summary = json.loads((gdir / "all" / "summary.json").read_text())["per_tuned"]
    recs_all = read_jsonl(gdir / "all" / "tensors.jsonl")
    pairs = read_jsonl(gdir / "all" / "pairs.jsonl")
    spectral = {k: read_jsonl(gdir / f"k{k}" / "tensors.jsonl") for k in ks}
    out: dict = {}
    for run, steps in by_run.items():
        others = [o for o in by_run if o != run]
        for step, key in steps.items():
            twin = by_run[others[0]].get(step) if others else None
            row = {
                "sparsity_all": summary[key]["sparsity_all"],
                "sparsity_linear": summary[key]["sparsity_linear"],
            }
            g = geometry_summary(recs_all, pairs, key, twin)
            row |= {f: g[f] for f in ("jaccard_seeds", "jaccard_seeds_random") if f in g}
            for k in ks:
                g = geometry_summary(spectral[k], [], key)
                row |= {f"{n}@{k}": v for n, v in g.items()}
            out.setdefault(run, {})[str(step)] = row
    return out


# ---------------------------------------------------------------------------------------------- the rows


def rows(preset: Preset, out: Path) -> list[dict]:
    """One row per probed checkpoint (and the base as every run's step 0): run, method, lr, seed, storage,
    step, updates, then the probes, the trainer's log at that step and the geometry."""
    base = read_jsonl(out / "probes" / "base.jsonl")
    table = []
    for r in grid(preset):
        recs = {x["step"]: x for x in read_jsonl(out / "probes" / f"{r.name}.jsonl")}
        if not recs or not base:
            continue
        logs = {x.get("step"): x for x in read_jsonl(out / "runs" / r.name / "log.jsonl")}
        gfile = out / "geometry" / r.cell / "rows.json"
        geometry = json.loads(gfile.read_text()) if gfile.is_file() else {}
        for step, rec in sorted({0: base[0], **recs}.items()):
            row = {
                "run": r.name,
                "method": r.method,
                "kind": METHODS[r.method],
                "lr": r.lr,
                "seed": r.seed,
                "storage": r.storage,
                "cell": r.cell,
                "step": step,
                "updates": step * preset.minibatches,
            }
            row |= {k: v for k, v in rec.items() if k not in ("run", "step", "seconds")}
            if step > 0:
                log = logs.get(step, {})
                for f in (
                    "drift_efficiency",
                    "drift_travel",
                    "kl_exact",
                    "sparsity",
                    "sparsity_bf16",
                ):
                    if f in log:
                        row[f"log_{f}"] = log[f]
                row |= geometry.get(r.name, {}).get(str(step), {})
            table.append(row)
    return table


# ---------------------------------------------------------------------------------------------- the study


def run_study(
    out: str | Path,
    preset_name: str = "quick",
    *,
    resume: bool = False,
    backend: str = "process",
    ray_address: str = "local",
    say: Callable[[str], None] | None = None,
) -> dict:
    """Train (or reuse) every run, probe every checkpoint, measure the geometry, analyse; write `study.json`,
    `report.md` and the figures into `out`. Returns the study dict."""
    from threegate.lm.queue import run_queue
    from threegate.study.matching import analyse_rows
    from threegate.study.report_controlled import write_controlled_report

    say = say or (lambda m: None)
    if preset_name not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset_name!r}")
    preset = PRESETS[preset_name]
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not resume:
        raise ValueError(f"{out} is not empty; use --resume to continue a study there")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "preset.json", {"name": preset_name, **dataclasses.asdict(preset)}, indent=2)
    runs = grid(preset)
    t0 = time.perf_counter()
    cache: dict = {}
    _rerun_lost(preset, out, runs, say)

    def measure() -> list[dict]:
        """Everything a finished run allows: its probes, its cell's geometry once complete, the rows."""
        _probe_runs(preset, out, runs, say, cache)
        _geometry(preset, out, runs, say)
        table = rows(preset, out)
        write_json(out / "rows.json", table, indent=1)
        return table

    def finished(name: str, folder: Path) -> None:
        _link_base(out / "runs", runs, folder)
        measure()

    run_queue(
        run_specs(preset),
        out / "runs",
        backend=backend,
        ray_address=ray_address,
        say=say,
        on_finished=finished,
    )
    table = measure()  # what an interrupted study left: runs finished before it stopped
    study = analyse_rows(
        table,
        preset_name=preset_name,
        lrs=preset.lrs,
        base_sparsity=_base_thresholds(out, runs),
        ks=preset.ks,
    )
    study["preset"] = {"name": preset_name, **dataclasses.asdict(preset)}
    study["seconds"] = time.perf_counter() - t0
    study["figures"] = write_controlled_report(study, table, out)
    say(f"study written to {out / 'study.json'} and {out / 'report.md'}")
    write_json(out / "study.json", study, indent=1)
    return study


def _rerun_lost(preset: Preset, out: Path, runs: list[RunInfo], say) -> None:
    """A study resumed from its committed small outputs (`scripts/collect_controlled.py`) has each finished
    run's records but not its checkpoints. A run whose probes or whose cell's geometry are still missing is
    trained again (its `eval.json` removed; the same spec gives the same records), so they can be measured."""
    from threegate.lm.queue import is_finished
    from threegate.lm.run import evenly_spaced

    want = set(evenly_spaced(preset.steps, preset.checkpoints))
    for r in runs:
        folder = out / "runs" / r.name
        if not is_finished(folder) or checkpoints_of(folder):
            continue
        probed = {x["step"] for x in read_jsonl(out / "probes" / f"{r.name}.jsonl")}
        measured = (out / "geometry" / r.cell / "rows.json").is_file()
        if not want <= probed or not measured:
            say(
                f"{r.name}: finished in an earlier session, its checkpoints gone; training it again"
            )
            (folder / "eval.json").unlink()


def _link_base(root: Path, runs: list[RunInfo], folder: Path) -> None:
    """Replace a finished bf16 run's `step_000000` files by hard links to the first bf16 run's when they are
    byte for byte the same (every run writes the one base; 257 MB each for SmolLM2)."""
    from threegate.study.smollm2 import checkpoint_digest

    mine = Path(folder) / "step_000000"
    first = next(
        (
            root / r.name / "step_000000"
            for r in runs
            if r.storage == "bfloat16"
            and (root / r.name / "step_000000").is_dir()
            and (root / r.name).resolve() != Path(folder).resolve()
        ),
        None,
    )
    if first is None or not mine.is_dir() or _same_files(first, mine):
        return
    if checkpoint_digest(first) != checkpoint_digest(mine):
        return
    for f in first.iterdir():
        target = mine / f.name
        if target.is_file() and not os.path.samefile(f, target):
            tmp = mine / (f.name + ".link")
            os.link(f, tmp)
            os.replace(tmp, target)


def _base_thresholds(out: Path, runs: list[RunInfo]) -> dict:
    """The base's half-ULP distribution (`threegate.study.matching.half_ulp_histogram`), cached."""
    from threegate.study.matching import half_ulp_histogram

    cache = out / "geometry" / "base_half_ulp.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    hist = half_ulp_histogram(_base_checkpoint(out, runs))
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_json(cache, hist, indent=1)
    return hist
