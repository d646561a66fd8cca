"""`threegate study smollm2 --preset quick` end to end on the real model (issue 9's acceptance test).

Trains the quick preset's runs (SFT, GRPO ×2, DAPO; six sparse-RL arms), analyses them, measures the curvature,
and writes study.json, report.md and the figures; then a study interrupted at several stages (a sparse arm before
its evaluation, the curvature half done, the study files gone) resumes to the same study.json.
"""

import contextlib
import io
import json

import pytest

from threegate.claims import VERDICTS
from threegate.cli import main
from threegate.study.sparse import MASKS

pytestmark = [pytest.mark.slow, pytest.mark.study, pytest.mark.xdist_group("smollm2")]


def _without_timings(x):
    if isinstance(x, dict):
        return {k: _without_timings(v) for k, v in x.items() if k not in ("seconds", "reused_from")}
    if isinstance(x, list):
        return [_without_timings(v) for v in x]
    return x


def _study(args: list[str]) -> None:
    """Run the command; on failure its last stderr line (the one-line error) is the assertion's message, so
    the cause shows in the test summary (CI keeps only the tail of the log)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(args)
    lines = [x for x in err.getvalue().splitlines() if x.strip()]
    assert rc == 0, lines[-1] if lines else f"exit status {rc}"


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "quick"
    _study(["study", "smollm2", "--preset", "quick", "--out", str(out)])
    return out


def test_quick_preset_writes_every_file_a_verdict_per_claim_and_resumes(quick_study):
    """One test, not two sharing a module fixture: pytest-xdist may hand two tests of one module to two workers,
    and each would then run the whole study (two SmolLM2 runs at once, twice the memory)."""
    _check_files_and_verdicts(quick_study)
    _check_interrupted_study_resumes(quick_study)


def _check_files_and_verdicts(out):
    import matplotlib.image as mpimg

    study = json.loads((out / "study.json").read_text())
    ids = [c["id"] for c in study["claims"]]
    assert len(ids) == len(set(ids))
    for cid in (
        "sparsity_rl_above_sft",
        "jaccard_above_random",
        "dense_learns",
        "safe_matches_dense",
        "curvature_principal_above_complement",
    ):
        assert cid in ids
    assert all(c["verdict"] in VERDICTS and c["observed"] for c in study["claims"])
    assert {r["run"] for r in study["table1"]} == {"grpo-s0", "grpo-s1", "dapo-s0", "sft-s0"}
    arms = {r["arm"]: r for r in study["sparse"]["arms"]}
    assert set(arms) == set(MASKS)
    assert all(arms[m]["changed_outside_mask"] == 0 for m in MASKS[1:])
    assert len(study["curvature"]["tensors"]) == 7  # every projection of layer 15
    report = (out / "report.md").read_text()
    assert report.startswith("# The paper's claims") and "Tables 4–5" in report
    for f in study["figures"]:
        img = mpimg.imread(out / "analysis" / f)
        assert img.shape[0] > 100 and img.shape[1] > 100


def _check_interrupted_study_resumes(out):
    """On the same folder (a copy would move the paths its compare runs recorded)."""
    first = json.loads((out / "study.json").read_text())
    (out / "runs" / "sparse-random" / "eval.json").unlink()  # stopped before its evaluation
    cur = out / "curvature" / "curvature.jsonl"
    cur.write_text("\n".join(cur.read_text().splitlines()[:3]) + "\n")  # curvature half done
    (out / "study.json").unlink()
    (out / "report.md").unlink()
    _study(["study", "smollm2", "--preset", "quick", "--out", str(out), "--resume"])
    again = json.loads((out / "study.json").read_text())
    assert _without_timings(again) == _without_timings(first)
