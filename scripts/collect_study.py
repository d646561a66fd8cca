"""Copy a study's small outputs into a report folder: study.json, report.md, its figures, curvature.jsonl.

The figures keep their paths relative to the study's `analysis/` folder, so report.md's links work in the copy.
Nothing else (no compare folders' per-tensor arrays, no checkpoints).

Usage: python scripts/collect_study.py STUDY_OUT REPORT_OUT
"""

import json
import shutil
import sys
from pathlib import Path


def main(src: str, dst: str) -> int:
    src_dir, dst_dir = Path(src), Path(dst)
    study_file = src_dir / "study.json"
    if not study_file.is_file():
        print(f"collect_study: no study.json in {src_dir}", file=sys.stderr)
        return 2
    study = json.loads(study_file.read_text())
    dst_dir.mkdir(parents=True, exist_ok=True)
    for name in ("study.json", "report.md", "curvature/curvature.jsonl"):
        if (src_dir / name).is_file():
            (dst_dir / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src_dir / name, dst_dir / name)
    for fig in study.get("figures", []):
        target = dst_dir / "analysis" / fig
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src_dir / "analysis" / fig, target)
    print(f"collected {src_dir} into {dst_dir} ({len(study.get('figures', []))} figures)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: collect_study.py STUDY_OUT REPORT_OUT", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
