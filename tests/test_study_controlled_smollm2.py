"""`threegate study controlled --preset quick` end to end on the real model (issue 16's acceptance test).

Trains the quick grid (GRPO, off-policy and on-policy SFT at one learning rate × two seeds, and the float32
ablation), probes every checkpoint, measures the geometry and writes study.json, report.md and the figures; then
a study interrupted at several stages (a run's probes half written, a cell's geometry gone, the study files
gone) resumes to the same study.json.
"""

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from threegate.claims import VERDICTS
from threegate.cli import main
from threegate.study.controlled import PRESETS, grid

pytestmark = [pytest.mark.slow, pytest.mark.study, pytest.mark.xdist_group("smollm2")]


def _study(args: list[str]) -> None:
    """Run the command; on failure its last stderr line (the one-line error) is the assertion's message."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(args)
    lines = [x for x in err.getvalue().splitlines() if x.strip()]
    assert rc == 0, lines[-1] if lines else f"exit status {rc}"


def _without_timings(x):
    if isinstance(x, dict):
        return {k: _without_timings(v) for k, v in x.items() if k != "seconds"}
    if isinstance(x, list):
        return [_without_timings(v) for v in x]
    return x


def test_quick_preset_writes_a_verdict_per_claim_and_resumes(tmp_path):
    out = tmp_path / "quick"
    _study(["study", "controlled", "--preset", "quick", "--out", str(out)])
    study = json.loads((out / "study.json").read_text())
    ids = [c["id"] for c in study["claims"]]
    assert len(ids) == len(set(ids)) and all(
        c["verdict"] in VERDICTS and c["observed"] for c in study["claims"]
    )
    for cid in (
        "matched_lr.sparser",
        "matched_kl.off_principal",
        "matched_accuracy.less_rotation",
        "competing.sparsity_from_precision",
        "competing.forgetting_tracks_forward_kl",
        "competing.on_policy_sft_with_rl",
    ):
        assert cid in ids
    preset = PRESETS["quick"]
    runs = grid(preset)
    rows = json.loads((out / "rows.json").read_text())
    assert {r["run"] for r in rows} == {r.name for r in runs}
    assert len(rows) == len(runs) * (1 + preset.checkpoints)
    for r in rows:
        if r["step"]:  # the exact KL in float32: ≥ 0 up to its rounding (|error| ≲ 1e-6 nats/token)
            assert r["forward_kl"]["per_token"] > -1e-5 and r["reverse_kl"]["per_token"] > -1e-5
            assert r["sparsity_all"] is not None and f"max_angle_deg@{preset.ks[0]}" in r
        else:  # the base against itself
            assert r["forward_kl"]["per_token"] == 0.0
        if r["step"] and r["storage"] == "bfloat16" and r["sparsity_all"] < 1:
            assert (
                r["jaccard_seeds"] is not None
            )  # undefined only when neither seed changed a weight
        if (
            r["step"] and r["storage"] == "bfloat16" and r["sparsity_all"] == 1.0
        ):  # the zero-update control
            assert r["log_sparsity"] == 1.0 and r["forward_kl"]["per_token"] == 0.0
    assert study["ablation"] and all(a["twin"] for a in study["ablation"])
    report = (out / "report.md").read_text()
    assert report.startswith("# The controlled RL-vs-SFT study") and "## Claims" in report
    assert study["figures"] and all((out / "figures" / f).is_file() for f in study["figures"])
    # interrupted: a run's probes half written, a cell's geometry gone, the study files gone
    name = runs[0].name
    probes = out / "probes" / f"{name}.jsonl"
    probes.write_text(probes.read_text().splitlines()[0] + "\n")
    shutil.rmtree(out / "geometry" / runs[-1].cell)
    for f in ("study.json", "report.md", "rows.json"):
        (out / f).unlink()
    _study(["study", "controlled", "--preset", "quick", "--out", str(out), "--resume"])
    again = json.loads((out / "study.json").read_text())
    assert _without_timings(again) == _without_timings(study)
    # a new machine: only the committed small outputs, no checkpoints; one run's probes lost as well
    import subprocess
    import sys

    report, fresh = tmp_path / "report", tmp_path / "fresh"
    script = Path(__file__).parents[1] / "scripts" / "collect_controlled.py"
    subprocess.run([sys.executable, str(script), str(out), str(report)], check=True)
    assert not list(report.rglob("*.safetensors"))
    shutil.copytree(report, fresh)
    (fresh / "probes" / f"{runs[1].name}.jsonl").unlink()
    _study(["study", "controlled", "--preset", "quick", "--out", str(fresh), "--resume"])
    restored = json.loads((fresh / "study.json").read_text())
    assert _without_timings(restored) == _without_timings(study)
    retrained = [p.parent.name for p in (fresh / "runs").glob("*/step_000000")]
    assert retrained == [runs[1].name]  # only the run whose measurements were missing


def test_refuses_a_used_folder_without_resume(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "something").write_text("")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["study", "controlled", "--out", str(tmp_path / "x")]) == 2
    assert "--resume" in err.getvalue() and "Traceback" not in err.getvalue()
