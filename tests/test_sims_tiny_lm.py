"""S4 (`sims.tiny_lm`) at quick size: files, claims, and what the theory guarantees on its real updates."""

import dataclasses
import json

import numpy as np
import pytest

from sims import load
from sims._tiny import pretrained
from sims.tiny_lm import RUNS, rl_config, train_run
from threegate._numerics import tol
from threegate.checkpoints import open_checkpoint
from threegate.claims import VERDICTS


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("s4")
    return load("tiny-lm").run(out, "quick", 0), out / "tiny-lm"


def test_result_file_and_claims(result):
    res, root = result
    assert json.loads((root / "result.json").read_text()) == res
    assert res["sim"] == "tiny-lm" and res["size"] == "quick"
    ids = [c["id"] for c in res["claims"]]
    assert len(ids) == len(set(ids)) >= 10 and all(i.startswith("S4.") for i in ids)
    assert all(c["verdict"] in VERDICTS and c["observed"] for c in res["claims"])
    for rel in (*res["figures"], *res["data"]):
        assert (root / rel).is_file()
    assert len(res["runs"]) == len(RUNS) == 6
    assert [r["kind"] for r in res["table1"]].count("rl") == 5


def test_step0_checkpoints_are_the_base_bitwise(result):
    _, root = result
    with open_checkpoint(root / "runs" / "base") as base:
        for name, *_ in RUNS:
            with open_checkpoint(root / "runs" / name / "step_000000") as s0:
                for t in base.names():
                    a, b = base.load(t), s0.load(t)
                    assert np.array_equal(a.view(np.uint16), b.view(np.uint16)), (name, t)


def test_table1_matches_the_trainers_bitwise_count(result):
    # two independent bitwise counts of the same final checkpoint: the trainer's (on device, vs step 0) and
    # compare's (on the host, from the files)
    res, _ = result
    by_run = {r["run"]: r for r in res["runs"]}
    for row in res["table1"]:
        assert row["sparsity"] == pytest.approx(by_run[row["run"]]["sparsity"], abs=1e-6)
        assert row["sparsity_linear"] == pytest.approx(
            by_run[row["run"]]["sparsity_linear"], abs=1e-6
        )


def test_gate2_theorems_hold_on_real_updates(result):
    _, root = result
    study = json.loads((root / "analysis" / "study.json").read_text())
    checked = 0
    for run in study["per_run"].values():
        for t in run["tensors"]:
            slack = tol("float32", max(t["shape"]))
            if t["weyl_ratio"] is not None:
                assert t["weyl_ratio"] <= 1 + slack, t
            if t["wedin_rigorous_ratio"] is not None:
                checked += 1
                assert t["wedin_rigorous_ratio"] <= 1 + slack, t
    assert checked > 0


def test_same_seed_same_run(tmp_path):
    base = pretrained("quick", 0)
    cfg = rl_config("quick", "grpo", 7)
    cfg = dataclasses.replace(cfg, steps=2)
    a = train_run(base, cfg, tmp_path / "a", (2,))
    b = train_run(base, cfg, tmp_path / "b", (2,))
    assert a["sparsity"] == b["sparsity"] and a["greedy_accuracy"] == b["greedy_accuracy"]
    with (
        open_checkpoint(tmp_path / "a" / "step_000002") as x,
        open_checkpoint(tmp_path / "b" / "step_000002") as y,
    ):
        for t in x.names():
            assert np.array_equal(x.load(t).view(np.uint16), y.load(t).view(np.uint16)), t
