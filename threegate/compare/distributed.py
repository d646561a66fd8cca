"""`threegate compare --ray [ADDRESS]`: the units of `threegate.compare.work` as Ray tasks.

Each tensor is one task; each row block of a large non-spectral matrix (embedding / `lm_head`, see
`threegate.compare.work.block_ranges`) is one task, and the driver merges a tensor's blocks in row order once all
have come back. Workers open the checkpoints themselves by absolute path (shared storage), so only names, small
records and 1-D profiles travel through Ray; a worker writes a consensus map to the run folder itself.

The driver appends each unit's lines as it completes (flushed, fsync'ed), so `--resume` continues an interrupted
Ray run exactly as it continues a serial one; at the end `threegate.compare.order.canonicalize` rewrites the
files in stream order. A worker that dies mid-task (killed, out of memory, node lost) costs a retry
(`max_retries`, Ray's system-failure retries); an exception raised by the unit (bad input) is not retried and
ends the run with its own one-line message. Workers run BLAS/LAPACK with the driver's thread count
(`thread_env`), so that their records are the serial run's bit for bit. Without an address a local Ray instance is started with
`os.cpu_count()` CPUs and shut down at the end; with one (`auto`, `HOST:PORT`, `ray://HOST:PORT`) the driver
joins that cluster; if Ray is already initialized in this process (tests, notebooks) that instance is used.
"""

import logging
import os
import platform
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from threegate.checkpoints import open_checkpoint
from threegate.checkpoints.adapter import open_tuned
from threegate.compare.config import CompareConfig
from threegate.compare.work import Job, block_ranges, finish_blocked, run_block, run_tensor
from threegate.compare.writers import RunWriters, release_heap
from threegate.errors import CheckpointError, ThreegateError

__all__ = ["FAULT_HOOK", "get_result", "import_ray", "init_ray", "stream_ray", "thread_env"]

#: For fault-injection tests only: if set, called in the worker with the unit's tensor name before the unit
#: runs (it travels with each task, so it must be picklable by value).
FAULT_HOOK: Callable[[str], None] | None = None

_USER_ERRORS = (ThreegateError, ValueError, TypeError, OSError)
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def import_ray():
    """The `ray` module, or a one-line `ThreegateError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ThreegateError(
            "--ray needs Ray, which is not installed: pip install 'threegate[ray]'"
        ) from None
    return ray


@contextmanager
def _opened(paths: tuple[str, ...]):
    """The base and tuned checkpoints opened in this worker, closed afterwards."""
    opened = []
    try:
        for i, p in enumerate(paths):
            try:
                opened.append(open_checkpoint(p) if i == 0 else open_tuned(p, opened[0]))
            except CheckpointError as err:
                raise CheckpointError(f"on worker host {platform.node()}: {err}") from None
        yield opened[0], opened[1:]
    finally:
        for c in opened:
            c.close()


def _tensor_task(cfg: CompareConfig, paths: tuple[str, ...], job: Job, out: str, hook):
    if hook is not None:
        hook(job.name)
    with _opened(paths) as (base, tuned):
        value = run_tensor(cfg, list(paths[1:]), base, tuned, job, Path(out))
    release_heap()
    return value


def _block_task(cfg: CompareConfig, paths: tuple[str, ...], name: str, start: int, stop: int, hook):
    if hook is not None:
        hook(name)
    with _opened(paths) as (base, tuned):
        value = run_block(base, tuned, name, start, stop)
    release_heap()
    return value


def init_ray(ray, address: str) -> bool:
    """Start or join Ray unless it is running in this process; True if this call started it."""
    if ray.is_initialized():
        return False
    opts = dict(log_to_driver=False, logging_level=logging.WARNING)
    try:
        with warnings.catch_warnings():
            # Ray forks + execs its processes after jax has started threads: the exec makes it safe
            warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
            if address == "local":
                ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, **opts)
            else:
                ray.init(address=address, **opts)
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise ThreegateError(f"--ray {address}: cannot start or join Ray ({first})") from None
    return True


def get_result(ray, ref, name: str, retries: int):
    """`ray.get` with user errors re-raised as themselves and lost workers as one line."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, _USER_ERRORS):
            raise err.cause from None
        raise
    except ray.exceptions.RayError as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise ThreegateError(
            f"ray: the task for {name} failed after {retries} retries: {type(err).__name__}: {first}"
        ) from None


def stream_ray(
    cfg: CompareConfig, base, tuned, keys: list[str], jobs: list[Job], out: Path, progress
):
    """Run `jobs` as Ray tasks and write their lines as they complete (see the module docstring).

    Args:
      cfg: settings; `cfg.ray` is "local" or a cluster address, `cfg.max_retries` the retries per task.
      base, tuned: the driver's open checkpoints (headers only: shapes and dtypes of blocked tensors).
      keys: the tuned checkpoints' resolved paths, in command-line order.
      jobs: `threegate.compare.run.plan_jobs`.
      out: the run folder (on storage the workers share).
      progress: optional wrapper for an iterable with one item per task.
    """
    ray = import_ray()
    started = init_ray(ray, cfg.ray)
    try:
        _drive(ray, cfg, base, tuned, keys, jobs, out, progress)
    finally:
        if started:
            ray.shutdown()


def thread_env() -> dict[str, str]:
    """The driver's BLAS/LAPACK thread settings, for the workers: `OMP_NUM_THREADS` (default: this process's
    CPU count, OpenBLAS's own default) and `OPENBLAS_NUM_THREADS` / `MKL_NUM_THREADS` where set.

    LAPACK's `syevd` (jax's CPU `eigh`) gives results that differ in the last bits with the thread count, and Ray
    would run each 1-CPU task with one thread; with the driver's setting a worker computes what the serial run
    computes on the same kind of machine.
    """
    env = {k: os.environ[k] for k in _THREAD_VARS if k in os.environ}
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env.setdefault("OMP_NUM_THREADS", str(cpus or 1))
    return env


def _drive(ray, cfg, base, tuned, keys, jobs, out, progress) -> None:
    opts = dict(
        num_cpus=1,
        max_retries=cfg.max_retries,
        retry_exceptions=False,
        runtime_env={"env_vars": thread_env()},
    )
    tensor_task = ray.remote(**opts)(_tensor_task)
    block_task = ray.remote(**opts)(_block_task)
    paths = (str(Path(cfg.base).resolve()), *keys)
    out_abs = str(Path(out).resolve())
    hook = FAULT_HOOK
    pending: dict = {}
    blocks: dict[str, list] = {}
    for job in jobs:
        if job.blocked:
            ranges = block_ranges(base.info(job.name), cfg.block_bytes)
            blocks[job.name] = [None] * len(ranges)
            for i, (a, b) in enumerate(ranges):
                pending[block_task.remote(cfg, paths, job.name, a, b, hook)] = (job, i)
        else:
            pending[tensor_task.remote(cfg, paths, job, out_abs, hook)] = (job, None)
    labels = [job.name for job, _ in pending.values()]
    try:
        with RunWriters(out) as w:
            for _ in progress(labels) if progress is not None else labels:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                job, i = pending.pop(ref)
                value = get_result(ray, ref, job.name, cfg.max_retries)
                if i is None:
                    res, cost = value
                    w.write(res, [cost])
                    continue
                parts = blocks[job.name]
                parts[i] = value
                if all(p is not None for p in parts):
                    info = base.info(job.name)
                    dtypes = [t.info(job.name).dtype for t in tuned]
                    res = finish_blocked(cfg, keys, job, info, dtypes, [p for p, _ in parts])
                    w.write(res, [c for _, c in parts])
                    del blocks[job.name]
    finally:
        for ref in pending:
            ray.cancel(ref)
