"""The serial backend of `threegate compare`: the units of work one after the other, in stream order.

`stream_serial` has the signature of the Ray backend, `threegate.compare.distributed.stream_ray`; the driver
(`threegate.compare.run.run_compare`) picks one of the two.
"""

from pathlib import Path

from threegate.compare.config import CompareConfig
from threegate.compare.work import Job, block_ranges, finish_blocked, run_block, run_tensor
from threegate.compare.writers import RunWriters, release_heap

__all__ = ["stream_serial"]


def stream_serial(
    cfg: CompareConfig, base, tuned, keys: list[str], jobs: list[Job], out: Path, progress
) -> None:
    """The serial driver: one unit after the other, in stream order."""
    it = progress(jobs) if progress is not None else jobs
    with RunWriters(out) as w:
        for job in it:
            if job.blocked:
                info = base.info(job.name)
                parts = [
                    run_block(base, tuned, job.name, a, b)
                    for a, b in block_ranges(info, cfg.block_bytes)
                ]
                dtypes = [t.info(job.name).dtype for t in tuned]
                res = finish_blocked(cfg, keys, job, info, dtypes, [p for p, _ in parts])
                w.write(res, [c for _, c in parts])
            else:
                res, cost = run_tensor(cfg, keys, base, tuned, job, out)
                w.write(res, [cost])
            release_heap()
