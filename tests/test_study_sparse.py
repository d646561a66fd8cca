"""The sparse-RL experiment on real (tiny) lab runs: `threegate.study.sparse.sparse_runs_study`, the masks file the
trainer writes, the frozen-bits control, and `threegate train --eval-before` (the base evaluation reused)."""

import json

import jax
import numpy as np
import pytest

from threegate.claims import VERDICTS
from threegate.lm.evaluation import eval_report
from threegate.lm.fit import fit
from threegate.lm.run_folder import MASKS_FILE, load_masks, save_masks
from threegate.lm.train import TrainConfig
from threegate.masks import selection_count
from threegate.study.sparse import MASKS, sparse_runs_study


def _run(root, name, mask, seed, base, problems, before):
    cfg = TrainConfig(
        algo="grpo",
        steps=3,
        lr=1e-3,
        prompts_per_step=8,
        group_size=4,
        minibatches=1,
        seed=seed,
        mask=mask,
        mask_rank=4,
    )
    res = fit(cfg, base.mcfg, base.task, base.params, out=root / name)
    after = eval_report(res.params, base.mcfg, base.task, problems, jax.random.key(0), k=2)
    for ev in (before, after):
        ev["problems"] = {
            "a": np.asarray(problems.a).tolist(),
            "b": np.asarray(problems.b).tolist(),
        }
    (root / name / "eval.json").write_text(
        json.dumps({"steps": 3, "eval_before": before, "eval_after": after})
    )
    return root / name


@pytest.fixture(scope="module")
def arms(tmp_path_factory):
    from sims._tiny import pretrained

    root = tmp_path_factory.mktemp("sparse")
    base = pretrained("quick", 0)  # the S4–S7 tiny base: mixed rewards, so GRPO has a gradient
    problems = base.task.all_problems()
    before = eval_report(base.params, base.mcfg, base.task, problems, jax.random.key(0), k=2)
    folders = {
        m: _run(root, f"sparse-{m}", None if m == "dense" else m, 0, base, problems, dict(before))
        for m in MASKS
    }
    extra = _run(root, "dense-s1", None, 1, base, problems, dict(before))
    return folders, extra


@pytest.mark.slow
def test_sparse_study_reports_every_arm_with_the_frozen_control(arms, tmp_path):
    folders, extra = arms
    sp = sparse_runs_study(folders, extra_dense=[extra], out=tmp_path)
    assert [c["id"] for c in sp["claims"]] == [
        "dense_learns",
        "nonprincipal_beats_principal",
        "safe_matches_dense",
        "safe_beats_random",
        "safe_tracks_dense_kl",
        "principal_kl_slowest",
    ]
    assert all(c["verdict"] in VERDICTS for c in sp["claims"])
    assert (
        "one seed" not in sp["claims"][4]["observed"]
    )  # the extra dense seed is the noise baseline
    assert len(sp["kl"]["dense"]) == 2 and all(len(sp["kl"][m]) == 1 for m in MASKS[1:])
    rows = {r["arm"]: r for r in sp["arms"]}
    assert rows["dense"]["param_share"] == 1.0 and "changed_outside_mask" not in rows["dense"]
    for m in MASKS[1:]:
        assert rows[m]["changed_outside_mask"] == 0, m  # frozen entries keep their bf16 bits
        assert rows[m]["changed_inside_mask"] > 0, m  # and the run did train
    masks = {m: load_masks(folders[m] / MASKS_FILE) for m in MASKS[1:]}
    for name, p in masks["principal"].items():
        assert p.sum() == selection_count(0.5, p.size)
        assert not np.any(p & masks["nonprincipal"][name])
        assert masks["random"][name].sum() == masks["safe"][name].sum()  # same per-layer size
    for f in sp["figures"]:
        assert (tmp_path / f).stat().st_size > 1000


@pytest.mark.slow
def test_frozen_control_fails_when_the_mask_is_wrong(arms, tmp_path):
    """The control can fail: a masks file that freezes everything makes every change an outside change."""
    import shutil

    folders, _ = arms
    bad = tmp_path / "sparse-safe"
    shutil.copytree(folders["safe"], bad)
    masks = load_masks(bad / MASKS_FILE)
    save_masks(bad / MASKS_FILE, {n: np.zeros_like(m) for n, m in masks.items()})
    sp = sparse_runs_study({**folders, "safe": bad})
    row = next(r for r in sp["arms"] if r["arm"] == "safe")
    assert row["changed_outside_mask"] > 0 and row["changed_inside_mask"] == 0
    with pytest.raises(ValueError, match="missing"):
        sparse_runs_study({m: f for m, f in folders.items() if m != "random"})


@pytest.mark.slow
def test_train_reuses_a_matching_base_evaluation_and_refuses_others(tmp_path, capsys):
    from threegate.cli import main

    common = ["train", "grpo", "--model", "tiny", "--task", "modadd", "--steps", "1",
              "--prompts", "4", "--group-size", "2", "--minibatches", "1", "--eval-size", "8",
              "--no-progress"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    first = json.loads((tmp_path / "a" / "eval_before.json").read_text())
    assert len(first["base_digest"]) == 64
    src = str(tmp_path / "a" / "eval_before.json")
    assert main([*common, "--mask", "safe", "--mask-rank", "4", "--eval-before", src,
                 "--out", str(tmp_path / "b")]) == 0  # fmt: skip
    reused = json.loads((tmp_path / "b" / "eval_before.json").read_text())
    assert reused.pop("reused_from") == src and reused == first
    capsys.readouterr()
    rc = main([*common, "--temperature", "0.5", "--eval-before", src, "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "temperature" in err[0]
    rc = main([*common, "--eval-before", str(tmp_path / "none.json"), "--out", str(tmp_path / "d")])
    assert rc != 0 and "no such file" in capsys.readouterr().err
    (tmp_path / "list.json").write_text("[]")
    rc = main([*common, "--eval-before", str(tmp_path / "list.json"), "--out", str(tmp_path / "e")])
    assert rc != 0 and "not an eval_before.json" in capsys.readouterr().err
