"""A queue of runs: named `RunSpec`s, each run into `ROOT/NAME` by `run_experiment`, resumable run by run.

A run is *finished* when its `eval.json` exists (`run_experiment` writes it last); a started one (its `log.jsonl`
exists) resumes from its `resume/` state; anything else starts afresh. So an interrupted sweep continues where it
stopped, and the records of a run do not depend on how the queue ran it. Three backends:

- `"inline"`: one after another in this process (compiled code and the model stay cached between runs);
- `"process"`: one after another, each in a fresh Python process (`python -m threegate.lm.queue`): the memory a
  run held — its compiled executables, the model, the optimizer state — goes back to the system when it ends,
  so a long sweep's peak is one run's peak;
- `"ray"`: every unfinished run as a Ray task (`ray_address` "local" or a cluster's), `cpus_per_run` CPUs each;
  the run folders must be on storage the workers share.

`on_finished(name, folder)` is called in the driver as each run finishes (in completion order), e.g. to commit its
small outputs. A run that finishes under the queue loses its `resume/` state (the float32 master and the Adam
moments: 2 GB for SmolLM2), which only an unfinished run needs and a queue never resumes a finished one.
"""

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from threegate.errors import ThreegateError
from threegate.lm.run import RunSpec

__all__ = ["BACKENDS", "drop_resume_state", "is_finished", "run_queue"]

#: "inline", "process" or "ray" (module docstring).
BACKENDS = ("inline", "process", "ray")


def is_finished(folder: Path) -> bool:
    """Whether the run in `folder` finished (its `eval.json`, written last, exists)."""
    return (Path(folder) / "eval.json").is_file()


def _started(folder: Path) -> bool:
    return (folder / "log.jsonl").is_file()


def _run_here(spec_json: str, folder: str) -> str:
    """Run (or resume) one spec in this process, then drop its resume state; returns the folder. Also the Ray
    task's body."""
    from threegate.lm.run import run_experiment

    out = Path(folder)
    run_experiment(RunSpec.from_json(spec_json), out, resume=_started(out))
    drop_resume_state(out)
    return folder


def drop_resume_state(folder: Path) -> None:
    """Delete a finished run's `resume/` folder (module docstring); an unfinished run keeps it."""
    import shutil

    if is_finished(folder) and (Path(folder) / "resume").is_dir():
        shutil.rmtree(Path(folder) / "resume")


def _check_same_spec(folder: Path, spec: RunSpec) -> None:
    """A finished run is reused only for the spec it was run with (its `run.json`)."""
    import dataclasses

    if not (folder / "run.json").is_file():
        return
    done = RunSpec.from_json(folder / "run.json")
    if done == spec:
        return
    a, b = dataclasses.asdict(done), dataclasses.asdict(spec)
    diff = sorted(
        f"{part}.{k}"
        for part in a
        for k in (a[part] if isinstance(a[part], dict) else {part: None})
        if (a[part].get(k) if isinstance(a[part], dict) else a[part])
        != (b[part].get(k) if isinstance(b[part], dict) else b[part])
    )
    raise ValueError(
        f"{folder} finished with another spec than this queue's ({', '.join(diff) or 'see run.json'}); "
        "use another folder, or remove it to train it anew"
    )


def _run_process(spec: RunSpec, folder: Path) -> None:
    """Run one spec in a fresh interpreter; a failure is one line with the child's last error line."""
    cmd = [sys.executable, "-m", "threegate.lm.queue", "--out", str(folder)]
    proc = subprocess.run(cmd, input=spec.to_json(), text=True, capture_output=True)
    if proc.returncode != 0:
        raise ThreegateError(
            f"run {folder.name} failed: {_child_failure(proc.returncode, proc.stderr)}"
        )


def _child_failure(returncode: int, stderr: str) -> str:
    """One line on why a child run ended: its last error line, and how it exited (a signal named: SIGKILL
    with no error line is most often the kernel's out-of-memory killer)."""
    import signal

    lines = [x.strip() for x in stderr.strip().splitlines() if x.strip()]
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        how = f"killed by {name}" + (" (out of memory?)" if -returncode == signal.SIGKILL else "")
    else:
        how = f"exit status {returncode}"
    return f"{lines[-1]} ({how})" if lines else how


def run_queue(
    runs: Sequence[tuple[str, RunSpec]],
    root: str | os.PathLike[str],
    *,
    backend: str = "process",
    ray_address: str = "local",
    cpus_per_run: float = 1.0,
    say: Callable[[str], None] | None = None,
    on_finished: Callable[[str, Path], None] | None = None,
) -> dict[str, str]:
    """Run every unfinished run of `runs` into `root/NAME` (module docstring).

    Returns `{name: "reused" | "ran"}` in the order of `runs`.

    Raises:
      ValueError: two runs with one name, an unknown backend, or a finished run of another spec.
      ThreegateError: a run failed (the runs before it are kept; rerunning the queue resumes).
    """
    names = [n for n, _ in runs]
    cpus_per_run = float(cpus_per_run)
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be unique, got {names}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    say = say or (lambda msg: None)
    root = Path(root)
    status = {n: "reused" for n, _ in runs}
    todo = []
    for n, spec in runs:
        if is_finished(root / n):
            _check_same_spec(root / n, spec)
            say(f"{n} finished, reused")
        else:
            todo.append((n, spec))
    if backend == "ray":
        for n in _run_ray(todo, root, ray_address, cpus_per_run, say, on_finished):
            status[n] = "ran"
        return status
    for n, spec in todo:
        folder = root / n
        say(f"{'resuming' if _started(folder) else 'training'} {n}")
        if backend == "inline":
            try:
                _run_here(spec.to_json(), str(folder))
            except (ValueError, OSError) as e:
                raise ThreegateError(f"run {n} failed: {e}") from e
        else:
            _run_process(spec, folder)
        status[n] = "ran"
        if on_finished is not None:
            on_finished(n, folder)
    return status


def _run_ray(todo, root: Path, address: str, cpus: float, say, on_finished) -> list[str]:
    from threegate.compare.distributed import get_result, import_ray, init_ray, thread_env

    if not todo:
        return []
    ray = import_ray()
    started = init_ray(ray, address)
    try:
        task = ray.remote(num_cpus=cpus, max_retries=0, runtime_env={"env_vars": thread_env()})(
            _run_here
        )
        pending = {task.remote(spec.to_json(), str((root / n).resolve())): n for n, spec in todo}
        say(f"ray: {len(pending)} runs dispatched")
        done = []
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            n = pending.pop(ref)
            get_result(ray, ref, n, 0)
            say(f"{n} finished")
            done.append(n)
            if on_finished is not None:
                on_finished(n, root / n)
        return done
    finally:
        if started:
            ray.shutdown()


def _main(argv: list[str] | None = None) -> int:
    """`python -m threegate.lm.queue --out FOLDER` with the spec's JSON on stdin: the process backend's child."""
    p = argparse.ArgumentParser(prog="python -m threegate.lm.queue")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    try:
        _run_here(sys.stdin.read(), args.out)
    except (ThreegateError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
