"""A training run's folder: its log, gate records, checkpoints, masks and resume state, in one object.

Layout of `OUT/` (what `fit` writes through `RunFolder`):
  train_config.json     the `TrainConfig` (a resumed run must have the same one)
  log.jsonl             one record per step (`threegate.records.JsonlWriter`: flushed per step)
  gates.jsonl           one record per gate-checked step (only when gates are checked)
  step_XXXXXX/          bf16 checkpoints (HF names): step 0 (the base) first, then the steps asked for and the last
  masks.npz             a sparse run's fixed trainable-entry masks, bit-packed (`save_masks` / `load_masks`)
  resume/               the full training state (float32 master, optimizer moments, step, drift path length if
                        tracked) of the latest checkpoint;
                        `latest.json` is swapped in last, so an interrupted write leaves the previous state intact

Every step's randomness is `fold_in(key, step)`, so a run resumed from `resume/` writes the same records as one
run; on resume, `log.jsonl` and `gates.jsonl` are cut back to the saved step.
"""

import dataclasses
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from threegate.errors import CheckpointError
from threegate.lm.checkpoint import save_checkpoint, step_dir
from threegate.lm.config import LlamaConfig
from threegate.lm.train import Masks, Params, TrainConfig, TrainState, to_stored
from threegate.records import JsonlWriter, read_jsonl, write_jsonl

__all__ = [
    "CONFIG_FILE",
    "GATES_FILE",
    "LOG_FILE",
    "MASKS_FILE",
    "RESUME_DIR",
    "RunFolder",
    "load_masks",
    "save_masks",
]

CONFIG_FILE = "train_config.json"
LOG_FILE = "log.jsonl"
GATES_FILE = "gates.jsonl"
RESUME_DIR = "resume"
#: the trainable-entry masks of a sparse run (`save_masks`), written at step 0
MASKS_FILE = "masks.npz"


def _config_json(cfg: TrainConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True, default=str)


def _same_config(text: str, cfg: TrainConfig) -> bool:
    """Whether a saved `train_config.json` describes `cfg`; fields it lacks (added to `TrainConfig` after it was
    written) count as their defaults, which is what the run that wrote it did."""
    saved = json.loads(text)
    defaults = json.loads(_config_json(TrainConfig()))
    return {**defaults, **saved} == json.loads(_config_json(cfg))


class RunFolder:
    """The files of one run in `out` (module docstring). `open` starts or resumes; then `log`, `gates` and
    `checkpoint` per step; `close` at the end (also a context manager)."""

    def __init__(
        self,
        out: str | os.PathLike[str],
        cfg: TrainConfig,
        mcfg: LlamaConfig,
        *,
        gates: bool = False,
    ):
        self.out = Path(out)
        self.cfg, self.mcfg, self.with_gates = cfg, mcfg, gates
        self._log = self._gates = None

    def open(
        self, state: TrainState, params0: Params, masks: Masks | None, *, resume: bool
    ) -> tuple[TrainState, int, list[dict]]:
        """Start the run (config, step-0 checkpoint of `params0`, masks, empty logs) or, with `resume` and a saved
        state, continue it. Returns the state to continue from, its step, and the records logged up to it."""
        self.out.mkdir(parents=True, exist_ok=True)
        cfg_file = self.out / CONFIG_FILE
        if resume and cfg_file.is_file() and not _same_config(cfg_file.read_text(), self.cfg):
            raise ValueError(
                f"{self.out}: --resume with a different configuration than {CONFIG_FILE}"
            )
        saved = self._load_resume(state) if resume else None
        if saved is not None:
            state, step = saved
            logs = _truncate_jsonl(self.out / LOG_FILE, step)
            _truncate_jsonl(self.out / GATES_FILE, step)
        else:
            step, logs = 0, []
            cfg_file.write_text(_config_json(self.cfg))
            self._save_params(0, params0)
            if self.cfg.mask is not None and masks is not None:
                save_masks(self.out / MASKS_FILE, masks)
            for f in (LOG_FILE, GATES_FILE):
                (self.out / f).write_text("")
        self._log = JsonlWriter(self.out / LOG_FILE)
        self._gates = JsonlWriter(self.out / GATES_FILE) if self.with_gates else None
        return state, step, logs

    def log(self, record: dict) -> None:
        """Append one step's record to `log.jsonl`."""
        self._log.write(record)

    def gates(self, record: dict) -> None:
        """Append one gate-check record to `gates.jsonl`."""
        self._gates.write(record)

    def checkpoint(self, step: int, params: Params, state: TrainState) -> None:
        """The bf16 checkpoint of `params` at `step` and the resume state beside it."""
        self._save_params(step, params)
        self._save_resume(step, state)

    def close(self) -> None:
        for w in (self._log, self._gates):
            if w is not None:
                w.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _save_params(self, step: int, params: Params) -> None:
        save_checkpoint(
            step_dir(self.out, step),
            params,
            self.mcfg,
            metadata={"step": str(step)},
            dtype=np.dtype(self.cfg.stored_dtype),
        )

    def _save_resume(self, step: int, state: TrainState) -> None:
        """The full training state at `step` (master, optimizer, step) as safetensors; the pointer last."""
        from safetensors.numpy import save_file

        folder = self.out / RESUME_DIR
        folder.mkdir(exist_ok=True)
        leaves = jax.tree.leaves((state.master, state.opt_state, state.travel))
        name = f"state_{step:06d}.safetensors"
        save_file({f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}, folder / name)
        tmp = folder / "latest.json.tmp"
        tmp.write_text(json.dumps({"step": step, "file": name, "leaves": len(leaves)}))
        os.replace(tmp, folder / "latest.json")
        for old in folder.glob("state_*.safetensors"):
            if old.name != name:
                old.unlink()

    def _load_resume(self, state: TrainState) -> tuple[TrainState, int] | None:
        """(state, step) from `resume/`, shaped like `state`; None when nothing was saved."""
        from safetensors.numpy import load_file

        pointer = self.out / RESUME_DIR / "latest.json"
        if not pointer.is_file():
            return None
        meta = json.loads(pointer.read_text())
        leaves, treedef = jax.tree.flatten((state.master, state.opt_state, state.travel))
        stored = load_file(self.out / RESUME_DIR / meta["file"])
        if len(stored) != len(leaves):
            raise CheckpointError(
                f"{pointer}: saved state has {len(stored)} leaves, this run {len(leaves)}"
            )
        new = []
        for i, like in enumerate(leaves):
            x = stored[f"leaf_{i:05d}"]
            if x.shape != like.shape or x.dtype != like.dtype:
                raise CheckpointError(
                    f"{pointer}: leaf {i} is {x.dtype}{x.shape}, expected {like.dtype}{like.shape}"
                )
            new.append(jnp.asarray(x))
        master, opt_state, travel = jax.tree.unflatten(treedef, new)
        step = int(meta["step"])
        stored_params = to_stored(master, self.cfg.stored_dtype)
        step0 = jnp.asarray(step, jnp.int32)
        return TrainState(master, stored_params, opt_state, step0, travel), step


def _truncate_jsonl(path: Path, step: int) -> list[dict]:
    """Keep the records of `path` with `step` ≤ `step` (rewritten in place); return them."""
    keep = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    if path.is_file():
        write_jsonl(path, keep)
    return keep


def save_masks(path: Path, masks: Masks) -> None:
    """The trainable-entry masks of a sparse run, bit-packed (`np.packbits`, row-major) with their shapes."""
    arrays = {}
    for i, (_, m) in enumerate(sorted(masks.items())):
        m = np.asarray(m, bool)
        arrays[f"bits_{i:04d}"] = np.packbits(m.ravel())
        arrays[f"shape_{i:04d}"] = np.asarray(m.shape, np.int64)
    names = np.asarray(sorted(masks), dtype=np.str_)
    np.savez_compressed(path, names=names, **arrays)


def load_masks(path: Path) -> dict[str, np.ndarray]:
    """`save_masks`'s file back as `{name: bool [m, n]}`."""
    with np.load(path) as z:
        out = {}
        for i, name in enumerate(z["names"].tolist()):
            shape = tuple(int(x) for x in z[f"shape_{i:04d}"])
            bits = np.unpackbits(z[f"bits_{i:04d}"], count=int(np.prod(shape)))
            out[name] = bits.astype(bool).reshape(shape)
    return out
