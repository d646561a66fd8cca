"""`threegate study`'s run discovery and report on real (tiny) lab runs; the SmolLM2 training itself is the
`threegate train` code path, tested in tests/test_lab_smollm2.py."""

import json
from pathlib import Path

import jax
import pytest

from threegate.lm.config import LlamaConfig
from threegate.lm.fit import fit
from threegate.lm.model import init_params
from threegate.lm.tasks import CharTask
from threegate.lm.train import TrainConfig
from threegate.study.analyse import StudyConfig, analyse
from threegate.study.report import write_report
from threegate.study.smollm2 import PRESETS, discover_runs, run_specs

TASK = CharTask("modadd", modulus=7)
MCFG = LlamaConfig.tiny(TASK.vocab_size, d_model=32, n_layers=2, max_seq_len=16)


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    params0 = init_params(MCFG, jax.random.key(0))
    for name, algo, seed in (("rl-a", "grpo", 0), ("rl-b", "grpo", 1), ("sft", "sft", 0)):
        cfg = TrainConfig(
            algo=algo, steps=2, lr=1e-2, prompts_per_step=8, group_size=4, minibatches=1, seed=seed
        )
        fit(cfg, MCFG, TASK, params0, out=root / name, checkpoint_steps=[1])
        (root / name / "eval.json").write_text(json.dumps({"steps": 2}))
    (root / "unfinished").mkdir()  # no eval.json: not a finished run, ignored
    return root


@pytest.mark.slow
def test_discover_runs_finds_finished_runs_from_one_base(runs_root):
    base, runs = discover_runs(runs_root)
    assert base.endswith("step_000000")
    assert [(r.name, r.kind, len(r.checkpoints)) for r in runs] == [
        ("rl-a", "rl", 2),
        ("rl-b", "rl", 2),
        ("sft", "sft", 2),
    ]


@pytest.mark.slow
def test_discover_runs_rejects_runs_from_different_bases(runs_root, tmp_path):
    import shutil

    other = tmp_path / "runs"
    shutil.copytree(runs_root / "rl-a", other / "rl-a")
    params1 = init_params(MCFG, jax.random.key(1))
    cfg = TrainConfig(algo="sft", steps=1, lr=1e-2, prompts_per_step=8, minibatches=1)
    fit(cfg, MCFG, TASK, params1, out=other / "sft")
    (other / "sft" / "eval.json").write_text("{}")
    with pytest.raises(ValueError, match="share one base"):
        discover_runs(other)
    with pytest.raises(ValueError, match="no finished runs"):
        discover_runs(tmp_path / "nothing")


@pytest.mark.slow
def test_analysis_and_report_of_discovered_runs(runs_root, tmp_path):
    base, runs = discover_runs(runs_root)
    study = analyse(base, runs, tmp_path / "analysis", StudyConfig(k=4, figures=False))
    study["preset"] = "quick"
    path = write_report(study, tmp_path)
    text = path.read_text()
    assert text.splitlines()[0].startswith("# The paper's claims")
    assert (
        text.count("**agrees**") + text.count("**disagrees**") + text.count("**inconclusive**")
        == len(study["claims"])
        > 0
    )
    assert "## Table 1" in text and "rl-a" in text and "sft" in text


def test_presets_train_the_issue_runs():
    names = [n for n, _ in run_specs(PRESETS["full"], Path("r"))]
    assert names == ["grpo-s0", "sft-s0", "grpo-s1", "dapo-s0"]
    spec = dict(run_specs(PRESETS["quick"], Path("r")))["dapo-s0"]
    assert spec.train.algo == "dapo" and spec.model.name == "smollm2"
    assert spec.checkpoints == 3 and spec.gates == 3 and spec.train.steps == PRESETS["quick"].steps
