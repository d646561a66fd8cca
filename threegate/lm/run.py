"""A run of the lab as a value: `RunSpec` says everything a run does, `run_experiment` does it.

A `RunSpec` is a frozen dataclass of the model, the task, the training configuration (algorithm and its settings,
optimiser, schedule, mask or adapter, seed: `TrainConfig`), the evaluation protocol, the checkpoint schedule and the
gate checks. Its JSON is exact (`RunSpec.from_json(spec.to_json()) == spec`) and `run_experiment` writes it, with
every default resolved, to `OUT/run.json`, so `RunSpec.from_json(OUT / "run.json")` reproduces the run.

`run_experiment(spec, out)` owns the whole protocol of a run: building the model and task, the bf16 base, the
held-out evaluation before (or a reused one, checked to be of the same base and problems) and after, training with
its checkpoints, resume state and gate checks (`threegate.lm.fit.fit`), and `OUT/eval.json`. `threegate train`,
`threegate study` and the simulations build `RunSpec`s and call it.
"""

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

from threegate.lm.adapters import AdapterConfig
from threegate.lm.train import TrainConfig
from threegate.records import write_json

__all__ = [
    "EvalSpec",
    "ModelSpec",
    "RunResult",
    "RunSpec",
    "TaskSpec",
    "brief_summary",
    "evenly_spaced",
    "params_digest",
    "run_experiment",
    "spec_from_options",
]

#: learning rates when none is given: a tiny model trained from scratch, and fine-tuning of a pretrained one
LR_SCRATCH, LR_FINETUNE = 3e-3, 1e-5
#: rollout / evaluation temperature when none is given: text tasks (SmolLM2) and the tiny char tasks
TEMPERATURE_TEXT, TEMPERATURE_CHAR = 0.7, 1.0
#: held-out problems when no size is given: text tasks, char tasks (drawn from the training distribution)
EVAL_SIZE_TEXT, EVAL_SIZE_CHAR = 240, 128


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The model: "tiny" (a 2-layer Llama from scratch, seeded by the run's seed), "smollm2" (the bf16 base of
    SmolLM2-135M-Instruct) or a checkpoint folder; `init` replaces the weights by another checkpoint's."""

    name: str = "tiny"
    init: str | None = None

    @property
    def from_scratch(self) -> bool:
        return self.name == "tiny" and self.init is None


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """The verifiable task: "modadd" (a+b mod p) or "addition" (digits-digit operands; for text models the
    operand `ranges` "1+1,2+1,…"), the wrong answer's reward, the reply length of text tasks and the held-out
    split ("unordered": a+b and b+a held out together; "ordered": the first split of reports/smollm2)."""

    kind: Literal["addition", "modadd"] = "modadd"
    digits: int = 2
    modulus: int = 7
    reward_wrong: float = -1.0
    ranges: str = "1+1,2+1,2+2"
    max_new_tokens: int = 16
    heldout_split: Literal["unordered", "ordered"] = "unordered"


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    """The evaluation protocol before and after training: `k` samples per problem (avg@k, text tasks) and greedy,
    on `size` held-out problems (None: 240 for text, 128 for char tasks); `reuse_before` takes the base
    evaluation from another run's `eval_before.json` (checked: same base, problems and settings)."""

    enabled: bool = True
    k: int = 4
    size: int | None = None
    reuse_before: str | None = None


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything a run does (see the module docstring). `checkpoints`: N evenly spaced checkpoints besides step
    0 (3: 1/3, 2/3 and the end); `checkpoint_every`: also every so many steps; `gates`: N evenly spaced
    gate-checked updates."""

    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    model: ModelSpec = dataclasses.field(default_factory=ModelSpec)
    task: TaskSpec = dataclasses.field(default_factory=TaskSpec)
    eval: EvalSpec = dataclasses.field(default_factory=EvalSpec)
    checkpoints: int = 0
    checkpoint_every: int = 0
    gates: int = 0

    def __post_init__(self):
        if self.checkpoints < 0 or self.checkpoint_every < 0 or self.gates < 0:
            raise ValueError("checkpoints, checkpoint_every and gates must be >= 0")
        if self.task.max_new_tokens < 1 or self.eval.k < 1:
            raise ValueError("max_new_tokens and the evaluation's k must be >= 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        """The inverse of `to_dict`; fields a saved spec lacks (added later) take their defaults."""
        train = dict(d.get("train", {}))
        if train.get("adapter") is not None:
            a = dict(train["adapter"])
            if "targets" in a:
                a["targets"] = tuple(a["targets"])
            train["adapter"] = AdapterConfig(**a)
        return cls(
            train=TrainConfig(**train),
            model=ModelSpec(**d.get("model", {})),
            task=TaskSpec(**d.get("task", {})),
            eval=EvalSpec(**d.get("eval", {})),
            **{k: d[k] for k in ("checkpoints", "checkpoint_every", "gates") if k in d},
        )

    @classmethod
    def from_json(cls, source: "str | os.PathLike[str]") -> "RunSpec":
        """A spec from its JSON text or from a file: `to_json`'s text, or a run folder's `run.json` (its
        "spec"; a run.json written before specs existed holds the command's options, "argv", instead)."""
        path = Path(source) if not str(source).lstrip().startswith("{") else None
        d = json.loads(path.read_text() if path is not None else str(source))
        if "spec" in d:
            return cls.from_dict(d["spec"])
        if "argv" in d:
            return spec_from_options(**d["argv"])
        return cls.from_dict(d)


class RunResult(NamedTuple):
    """The resolved spec, `fit`'s result (final state, logs, final params) and the `eval.json` summary."""

    spec: RunSpec
    fit: Any
    summary: dict


def brief_summary(summary: dict) -> dict:
    """`eval.json`'s summary without the per-problem scores: what `threegate train` prints."""
    brief = {k: v for k, v in summary.items() if k not in ("eval_before", "eval_after")}
    for key in ("eval_before", "eval_after"):
        if key in summary:
            brief[key] = {
                k: summary[key][k]
                for k in ("accuracy", "accuracy_ci", "greedy_accuracy", "greedy_ci", "reward")
                if k in summary[key]
            }
    return brief


def spec_from_options(**o: Any) -> RunSpec:
    """A `RunSpec` from `threegate train`'s option names (`algo`, `model`, `lr`, `group_size`, …; missing or None
    ones take the command's defaults; options that do not describe the run, like `out`, are ignored)."""
    g = lambda k, default: default if o.get(k) is None else o[k]  # noqa: E731
    adapter = None
    if o.get("adapter") is not None:
        adapter = AdapterConfig(o["adapter"], int(g("rank", 8)), float(g("lora_alpha", 16.0)))
    model = ModelSpec(g("model", "tiny"), o.get("init"))
    ev = EvalSpec(
        not o.get("no_eval", False),
        int(g("eval_k", 4)),
        None if o.get("eval_size") is None else int(o["eval_size"]),
        o.get("eval_before"),
    )
    train = dict(
        algo=g("algo", "grpo"),
        steps=int(g("steps", 50)),
        weight_decay=float(g("weight_decay", 0.01)),
        prompts_per_step=int(g("prompts", 16)),
        group_size=int(g("group_size", 8)),
        epochs=int(g("epochs", 1)),
        minibatches=int(g("minibatches", 4)),
        beta=float(g("beta", 0.0)),
        kl_estimator=g("kl", "k3"),
        mask=o.get("mask"),
        mask_alpha=float(g("mask_alpha", 0.5)),
        mask_rank=int(g("mask_rank", 16)),
        adapter=adapter,
        kl_metrics=not o.get("no_kl_metrics", False),
        remat=not o.get("no_remat", False),
        seed=int(g("seed", 0)),
    )
    for k in ("lr", "temperature"):
        if o.get(k) is not None:
            train[k] = float(o[k])
    task = TaskSpec(
        g("task", "modadd"),
        int(g("digits", 2)),
        int(g("modulus", 7)),
        float(g("reward_wrong", -1.0)),
        g("ranges", "1+1,2+1,2+2"),
        int(g("max_new_tokens", 16)),
        g("heldout_split", "unordered"),
    )
    text = _is_text_model(model)
    if o.get("lr") is None:
        train["lr"] = LR_SCRATCH if model.from_scratch else LR_FINETUNE
    if o.get("temperature") is None:
        train["temperature"] = TEMPERATURE_TEXT if text else TEMPERATURE_CHAR
    if ev.size is None:
        ev = dataclasses.replace(ev, size=EVAL_SIZE_TEXT if text else EVAL_SIZE_CHAR)
    return RunSpec(
        TrainConfig(**train),
        model,
        task,
        ev,
        int(g("checkpoints", 0)),
        int(g("checkpoint_every", 0)),
        int(g("gates", 0)),
    )


def _is_text_model(model: ModelSpec) -> bool:
    """Whether the model reads text (SmolLM2's tokenizer) rather than the tiny char vocabulary."""
    if model.name in ("smollm2", "tiny"):
        return model.name == "smollm2"
    from threegate.lm.checkpoint import CONFIG_FILE
    from threegate.lm.config import LlamaConfig
    from threegate.lm.tasks import CHAR_VOCAB

    cfg = Path(model.name) / CONFIG_FILE
    if not cfg.is_file():
        raise ValueError(f"--model {model.name}: no {CONFIG_FILE} (not a threegate checkpoint)")
    return LlamaConfig.from_json(cfg.read_text()).vocab_size != CHAR_VOCAB


def evenly_spaced(steps: int, n: int) -> list[int]:
    """n steps spread over 1..steps ending at `steps` (e.g. 30, 3 → [10, 20, 30]); [] for n = 0."""
    return (
        sorted({max(1, round(steps * j / n)) for j in range(1, n + 1)})
        if n > 0 and steps > 0
        else []
    )


def params_digest(params: dict) -> str:
    """sha256 of a params dict: names, dtypes, shapes and bytes, in name order."""
    import numpy as np

    h = hashlib.sha256()
    for name in sorted(params):
        x = np.asarray(params[name])
        h.update(f"{name}|{x.dtype}|{x.shape}|".encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def build(spec: RunSpec):
    """(model config, initial params, task) of a spec."""
    import jax

    from threegate.lm.checkpoint import load_checkpoint
    from threegate.lm.config import LlamaConfig
    from threegate.lm.model import check_params, init_params
    from threegate.lm.tasks import CHAR_VOCAB, CharTask, TextTask, parse_ranges

    t = spec.task

    def char_task():
        return CharTask(t.kind, t.digits, t.modulus, 1.0, t.reward_wrong)

    def text_task(tok):
        return TextTask(
            tok,
            t.kind,
            t.digits,
            t.modulus,
            1.0,
            t.reward_wrong,
            max_new_tokens=t.max_new_tokens,
            ranges=parse_ranges(t.ranges),
            heldout_commuted=t.heldout_split == "unordered",
        )

    name = spec.model.name
    if name == "smollm2":
        from threegate.lm.smollm2 import load_smollm2

        mcfg, params, tok = load_smollm2()
        task = text_task(tok)
    elif name == "tiny":
        task = char_task()
        mcfg = LlamaConfig.tiny(CHAR_VOCAB, d_model=64, n_layers=2, max_seq_len=32)
        params = init_params(mcfg, jax.random.key(spec.train.seed))
    else:
        mcfg, params = load_checkpoint(name)
        if mcfg.vocab_size == CHAR_VOCAB:
            task = char_task()
        else:
            from threegate.lm.smollm2 import load_smollm2

            task = text_task(load_smollm2()[2])
    if spec.model.init is not None:
        mcfg, params = load_checkpoint(spec.model.init)
        check_params(params, mcfg)
    return mcfg, params, task


def _is_text(task) -> bool:
    from threegate.lm.tasks import TextTask

    return isinstance(task, TextTask)


def _evaluate(params, mcfg, task, problems, spec: RunSpec) -> dict:
    import jax

    from threegate.lm.evaluation import eval_report
    from threegate.lm.fit import evaluate

    t0 = time.perf_counter()
    if _is_text(task):
        rep = eval_report(
            params,
            mcfg,
            task,
            problems,
            jax.random.key(0),
            k=spec.eval.k,
            temperature=spec.train.temperature,
        )
    else:
        rep = evaluate(params, mcfg, task, problems, jax.random.key(0))
    rep["seconds"] = time.perf_counter() - t0
    return rep


def _reuse_eval(path, problems, settings: dict) -> dict:
    """A base evaluation from another run, after checking it evaluated this base on these problems alike."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--eval-before: no such file {path}")
    before = json.loads(path.read_text())
    if not isinstance(before, dict) or not isinstance(before.get("problems"), dict):
        raise ValueError(f"--eval-before {path}: not an eval_before.json (no problems recorded)")
    for key, want in settings.items():
        if before.get(key) != want:
            raise ValueError(
                f"--eval-before {path}: {key} is {before.get(key)!r}, this run needs {want!r}"
            )
    got = before["problems"]
    if (
        got.get("a") != np.asarray(problems.a).tolist()
        or got.get("b") != np.asarray(problems.b).tolist()
    ):
        raise ValueError(f"--eval-before {path}: evaluated other problems than this run's")
    return before


def _write_run_json(out: Path, spec: RunSpec, resume: bool, options: dict | None) -> None:
    """`OUT/run.json`: the resolved spec (and the command's options, when a command started it); a resumed run
    keeps the first record and notes the resumption."""
    run_file = out / "run.json"
    entry = {"spec": spec.to_dict()} | ({"argv": options} if options is not None else {})
    if resume and run_file.is_file():
        record = json.loads(run_file.read_text())
        record.setdefault("resumed", []).append(entry.get("argv", entry["spec"]))
        record.setdefault("spec", entry["spec"])
    else:
        record = entry
    write_json(run_file, json.loads(json.dumps(record, default=str)), indent=2)  # paths as text


def _before(spec: RunSpec, out: Path, resume: bool, base, mcfg, task, problems):
    """The base evaluation (computed, reused from another run, or this run's own on resume) and the problems
    the evaluation after must use."""
    import jax.numpy as jnp
    import numpy as np

    text = _is_text(task)
    settings = {
        "k": spec.eval.k if text else None,
        "temperature": spec.train.temperature,
        "max_new_tokens": spec.task.max_new_tokens if text else None,
        "base_digest": params_digest(base),
    }
    before_file = out / "eval_before.json"
    if resume and before_file.is_file():
        before = json.loads(before_file.read_text())
        if "problems" in before:  # evaluate after on exactly the problems evaluated before
            problems = type(problems)(
                jnp.asarray(before["problems"]["a"], jnp.int32),
                jnp.asarray(before["problems"]["b"], jnp.int32),
            )
        return before, problems
    if spec.eval.reuse_before is not None:
        before = _reuse_eval(spec.eval.reuse_before, problems, settings)
        before["reused_from"] = str(spec.eval.reuse_before)
    else:
        before = _evaluate(base, mcfg, task, problems, spec)
        before["problems"] = {
            "a": np.asarray(problems.a).tolist(),
            "b": np.asarray(problems.b).tolist(),
        }
        before |= settings
    write_json(before_file, before, indent=2)
    return before, problems


def run_experiment(
    spec: RunSpec,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
    options: dict | None = None,
) -> RunResult:
    """Run `spec` into the folder `out` (see the module docstring); `resume` continues an interrupted run from
    `out/resume/` (same records as one uninterrupted run); `callback` gets each step's record; `options` (the
    command's settings, when a command started the run) are kept in run.json beside the spec."""
    import jax
    import jax.numpy as jnp

    from threegate.lm.evaluation import paired_difference
    from threegate.lm.fit import fit

    if spec.eval.size is None:
        raise ValueError("RunSpec.eval.size must be set (spec_from_options sets it from the model)")
    mcfg, params, task = build(spec)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.jsonl"
    if not resume and log.exists() and log.stat().st_size:
        raise ValueError(f"{out} already holds a run (log.jsonl); use --resume or another --out")
    _write_run_json(out, spec, resume, options)
    text = _is_text(task)
    if text:
        problems = task.eval_problems(spec.eval.size)
    else:  # tiny char tasks: problems of the training distribution (modadd 7 has only 49)
        problems = task.sample(jax.random.key(10_000 + spec.train.seed), spec.eval.size)
    # the base as every run starts from it: bf16(params) (a float32 source is rounded once)
    base = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
    before = None
    if spec.eval.enabled:
        before, problems = _before(spec, out, resume, base, mcfg, task, problems)
    steps = spec.train.steps
    res = fit(
        spec.train,
        mcfg,
        task,
        params,
        out=out,
        checkpoint_every=spec.checkpoint_every,
        checkpoint_steps=evenly_spaced(steps, spec.checkpoints),
        callback=callback,
        resume=resume,
        gates_steps=evenly_spaced(steps, spec.gates),
    )
    summary = {"steps": steps, "eval_size": spec.eval.size, "temperature": spec.train.temperature}
    if before is not None:
        after = _evaluate(res.params, mcfg, task, problems, spec)
        summary |= {"eval_before": before, "eval_after": after}
        if text:
            summary["difference"] = {
                "accuracy": paired_difference(before, after, "avg_at_k"),
                "greedy_accuracy": paired_difference(before, after, "greedy"),
            }
    write_json(out / "eval.json", summary, indent=2)
    return RunResult(spec, res, summary)
