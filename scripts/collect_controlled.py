"""Copy the controlled study's small outputs into a report folder, finished or not (a sweep is committed as it
goes): preset.json, rows.json, study.json, report.md, figures/, the probes (and the base's samples), per run its
eval.json, log.jsonl, run.json and train_config.json, per cell its geometry rows and densities. Never
checkpoints, resume states or the compares' per-tensor records.

Copied back into a study folder (`cp -r REPORT_OUT/. STUDY_OUT/`), they let `threegate study controlled
--resume` continue a sweep on a new machine: finished, measured runs are reused; a run whose measurements are
incomplete is trained again (`threegate.study.controlled`).

Usage: python scripts/collect_controlled.py STUDY_OUT REPORT_OUT
"""

import shutil
import sys
from pathlib import Path

#: (glob under the study folder) of what is copied.
SMALL = (
    "preset.json",
    "rows.json",
    "study.json",
    "report.md",
    "figures/*.png",
    "probes/*.jsonl",
    "probes/base_samples.json",
    "runs/*/eval.json",
    "runs/*/log.jsonl",
    "runs/*/run.json",
    "runs/*/train_config.json",
    "geometry/*/rows.json",
    "geometry/*/densities.json",
    "geometry/base_half_ulp.json",
)


def main(src: str, dst: str) -> int:
    src_dir, dst_dir = Path(src), Path(dst)
    if not (src_dir / "preset.json").is_file():
        print(
            f"collect_controlled: no preset.json in {src_dir} (not a controlled study)",
            file=sys.stderr,
        )
        return 2
    n = 0
    for pattern in SMALL:
        for f in sorted(src_dir.glob(pattern)):
            target = dst_dir / f.relative_to(src_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
            n += 1
    print(f"collected {n} files of {src_dir} into {dst_dir}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: collect_controlled.py STUDY_OUT REPORT_OUT", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
