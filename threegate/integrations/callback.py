"""`ThreeGateCallback`: `threegate compare` against step 0, live inside a `transformers` / TRL training run.

A `transformers.TrainerCallback` (so it runs in `Trainer`, TRL's `GRPOTrainer`, `SFTTrainer`, ...). At the
start of training it keeps the bf16 values of the chosen parameters on the CPU (2 bytes per entry) with their
base work (`threegate.compare.prepare_base`: M9 for every matrix, spectrum and M8 for the spectral ones, done
once). Every `every` optimizer steps it rounds the current parameters to bf16 — what `save_pretrained` in bf16
would store — and measures them against step 0 with `threegate.compare.tensor_metrics`, the function `compare`
runs, so a record equals `compare`'s record for a bf16 checkpoint saved at that step:

* `path` (default `OUTPUT_DIR/threegate_steps.jsonl`): per tensor and step, compare's record plus `step`;
  per step one `{"step", "summary": ...}` line (bf16 sparsity over all entries, the linear matrices and per
  layer type; mean overlap lifts over $M_{princ}$ and $M_{low}$; max principal angle of the spectral tensors).
  `threegate report` draws the summaries as curves over steps.
* the same summary through the trainer's own `log` (W&B, TensorBoard, ... get `threegate/...` keys) when the
  callback is attached with `attach(trainer)`; passed only in `callbacks=[...]` it cannot reach the trainer
  and writes the JSONL only.

Spectral tensors (angles, NSS, M8 overlaps; one decomposition of $W_t$ each time) are those matching
`spectral` (a regex; default: the matrices of the middle block); all other matrices get `--no-spectral`
records (sparsity, norms, M9 overlap, row/column ratios).
"""

import json
import re
import time
from pathlib import Path

import ml_dtypes
import numpy as np

from threegate.checkpoints import architecture_for, layer_index
from threegate.checkpoints.arch import PROJECTION_TYPES, Architecture
from threegate.compare.metrics import prepare_base, tensor_metrics
from threegate.records import JsonlWriter, to_jsonable

try:  # transformers is optional (the `hf` extra); the class still imports without it for documentation
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover
    TrainerCallback = object

__all__ = ["ThreeGateCallback", "step_summary", "to_bf16"]

_BF16 = np.dtype(ml_dtypes.bfloat16)


def to_bf16(t) -> np.ndarray:
    """A torch tensor as a bf16 NumPy array on the host (round to nearest even, as `tensor.to(bfloat16)`)."""
    import torch

    b = t.detach().to(device="cpu", dtype=torch.bfloat16).contiguous()
    return b.view(torch.int16).numpy().view(_BF16).copy()


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _lift(r: dict, key: str) -> float | None:
    v, b = r.get(key), r.get(f"{key}_random")
    return v / b if v is not None and b else None


def step_summary(records: list[dict]) -> dict:
    """The per-step aggregate of `records` (one step's tensor records)."""

    def sparsity(rs):
        ok = [r for r in rs if r.get("changed") is not None]
        n = sum(r["numel"] for r in ok)
        return 1 - sum(r["changed"] for r in ok) / n if n else None

    linear = [r for r in records if r["layer_type"] in PROJECTION_TYPES and len(r["shape"]) == 2]
    types = sorted({r["layer_type"] for r in linear})
    angles = {
        r["name"]: max(r["max_angle_u_deg"], r["max_angle_v_deg"])
        for r in records
        if r.get("max_angle_u_deg") is not None and r.get("max_angle_v_deg") is not None
    }
    return {
        "sparsity_all": sparsity(records),
        "sparsity_linear": sparsity(linear),
        "sparsity_by_type": {
            t: sparsity([r for r in linear if r["layer_type"] == t]) for t in types
        },
        "overlap_low_lift": _mean(_lift(r, "overlap_low") for r in linear),
        "overlap_principal_lift": _mean(_lift(r, "overlap_principal") for r in linear),
        "max_angle_deg": angles,
    }


class ThreeGateCallback(TrainerCallback):
    """Measure the run against step 0 every `every` steps (module docstring).

    Args:
      every: steps between measurements (also at the last step).
      path: JSONL output (default `args.output_dir/threegate_steps.jsonl`).
      include, exclude: regexes on parameter names (`re.search`), as `compare --include/--exclude`.
      spectral: regex of the parameters that get spectral work; None: the middle block's matrices.
      k, alpha, dtype: as `compare --k/--alpha/--dtype`.
      config: a `config.json` folder or dict for layer typing (default: the model's own `config`).
    """

    def __init__(
        self,
        every: int = 10,
        path: str | Path | None = None,
        include: str | None = None,
        exclude: str | None = None,
        spectral: str | None = None,
        k: int = 64,
        alpha: float = 0.5,
        dtype: str = "float32",
        config=None,
    ):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.every, self.path, self.k, self.alpha, self.dtype = every, path, k, alpha, dtype
        self.include = re.compile(include) if include else None
        self.exclude = re.compile(exclude) if exclude else None
        self.spectral = re.compile(spectral) if spectral else None
        self.config = config
        self.trainer = None
        self.base: dict[str, np.ndarray] = {}
        self.states: dict = {}
        self.views: dict = {}
        self.seconds = 0.0  # all of the callback's own time: setup_seconds + sum(measure_seconds)
        self.setup_seconds = 0.0
        self.measure_seconds: list[float] = []
        self.last: dict | None = None
        self._writer = None

    def attach(self, trainer):
        """Add the callback to `trainer` and log through `trainer.log` (so reporting integrations see it)."""
        self.trainer = trainer
        trainer.add_callback(self)
        return self

    def _arch(self, model) -> Architecture:
        if isinstance(self.config, dict):
            return Architecture.from_config(self.config)
        if self.config is not None:
            return architecture_for(self.config)
        cfg = getattr(model, "config", None)
        return Architecture.from_config(cfg.to_dict() if cfg is not None else None)

    def _selected(self, model) -> dict:
        out = {}
        for name, p in model.named_parameters():
            if self.include and not self.include.search(name):
                continue
            if self.exclude and self.exclude.search(name):
                continue
            out[name] = p
        return out

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        t0 = time.perf_counter()
        params = self._selected(model)
        arch = self._arch(model)
        layers = sorted({i for i in map(layer_index, params) if i is not None})
        middle = layers[len(layers) // 2] if layers else None
        for name, p in params.items():
            w0 = to_bf16(p)
            self.base[name] = w0
            self.views[name] = arch.views(name, w0.shape)
            spectral = (
                bool(self.spectral.search(name))
                if self.spectral is not None
                else (w0.ndim == 2 and layer_index(name) == middle)
            )
            for v in self.views[name]:
                if v.layer_type in ("embed", "lm_head") and self.spectral is None:
                    spectral_v = False
                else:
                    spectral_v = spectral
                self.states[v.name] = (
                    prepare_base(
                        v.take(w0), self.k, self.alpha, spectral=spectral_v, dtype=self.dtype
                    ),
                    spectral_v,
                )
        path = Path(self.path) if self.path else Path(args.output_dir) / "threegate_steps.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._writer = JsonlWriter(path)
        self.setup_seconds = time.perf_counter() - t0
        self.seconds += self.setup_seconds

    def measure(self, model, step: int) -> list[dict]:
        """Compare's records of the current parameters against step 0 (each with `step`)."""
        records = []
        for name, p in self._selected(model).items():
            if name not in self.base:
                continue
            w1 = to_bf16(p)
            w0 = self.base[name]
            for v in self.views[name]:
                base, spectral = self.states[v.name]
                r = tensor_metrics(
                    v.name,
                    v.take(w0),
                    v.take(w1),
                    self.k,
                    self.alpha,
                    base=base,
                    spectral=spectral,
                    dtype=self.dtype,
                )
                records.append({**r.record, **v.fields(), "step": step})
        return records

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if step % self.every and step != state.max_steps:
            return control
        t0 = time.perf_counter()
        records = self.measure(model, step)
        summary = step_summary(records)
        for r in records:
            self._writer.write(r)
        self._writer.write({"step": step, "summary": summary})
        self.last = {"step": step, **summary}
        self.measure_seconds.append(time.perf_counter() - t0)
        self.seconds += self.measure_seconds[-1]
        if self.trainer is not None:
            self.trainer.log(_flat(summary))
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return control


def _flat(summary: dict) -> dict[str, float]:
    """The summary as flat `threegate/...` scalars for the trainer's log."""
    out = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                if v is not None:
                    out[f"threegate/{key}/{sub}"] = float(v)
        elif value is not None:
            out[f"threegate/{key}"] = float(value)
    return json.loads(json.dumps(to_jsonable(out)))
