"""`threegate.lm.run`: a run as a value. The spec's JSON is exact, `threegate train` and `run_experiment` with the
same settings write the same records, and a run folder's run.json reproduces the run (also the run.json of
commands that predate specs)."""

import dataclasses
import json

import pytest

from threegate.cli import main
from threegate.lm.adapters import AdapterConfig
from threegate.lm.run import RunSpec, run_experiment, spec_from_options
from threegate.lm.train import TrainConfig

TINY = dict(algo="grpo", steps=2, prompts=4, group_size=4, minibatches=2, eval_size=8)


def _records(folder):
    lines = (folder / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if "seconds" not in k} for x in lines]


def test_spec_json_round_trip_is_exact():
    spec = RunSpec(
        train=TrainConfig(
            algo="dapo", lr=3.5e-6, adapter=AdapterConfig("pissa", 4, 8.0, ("q_proj",))
        ),
        checkpoints=3,
        gates=2,
    )
    back = RunSpec.from_json(spec.to_json())
    assert back == spec and back.to_json() == spec.to_json()
    assert isinstance(back.train.adapter.targets, tuple)
    masked = dataclasses.replace(spec, train=TrainConfig(mask="safe", mask_rank=4))
    assert RunSpec.from_json(masked.to_json()) == masked


def test_options_resolve_the_model_defaults():
    scratch = spec_from_options(**TINY)
    assert scratch.train.lr == 3e-3 and scratch.train.temperature == 1.0 and scratch.eval.size == 8
    tuned = spec_from_options(**{**TINY, "lr": 2e-5, "eval_size": None, "init": "somewhere"})
    assert tuned.train.lr == 2e-5 and tuned.eval.size == 128
    assert spec_from_options(**{**TINY, "lr": None, "init": "x"}).train.lr == 1e-5


def test_cli_and_run_experiment_write_the_same_records(tmp_path):
    argv = ["train", "grpo", "--steps", "2", "--prompts", "4", "--group-size", "4"]
    argv += ["--minibatches", "2", "--eval-size", "8", "--gates", "1", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "cli")]) == 0
    res = run_experiment(spec_from_options(**TINY, gates=1), tmp_path / "lib")
    assert (
        _records(tmp_path / "cli")
        == _records(tmp_path / "lib")
        == [{k: v for k, v in r.items() if "seconds" not in k} for r in res.fit.logs]
    )
    assert (tmp_path / "cli" / "gates.jsonl").read_text() == (
        tmp_path / "lib" / "gates.jsonl"
    ).read_text()
    # run.json reproduces the run: the spec it holds is the one that ran, and running it again gives the records
    spec = RunSpec.from_json(tmp_path / "cli" / "run.json")
    assert spec == res.spec
    run_experiment(spec, tmp_path / "again")
    assert _records(tmp_path / "again") == _records(tmp_path / "cli")


def test_legacy_run_json_holds_argv(tmp_path):
    argv = {
        "algo": "sft",
        "model": "tiny",
        "steps": 3,
        "lr": None,
        "prompts": 4,
        "out": "x",
        "func": None,
    }
    (tmp_path / "run.json").write_text(json.dumps({"argv": argv}))
    spec = RunSpec.from_json(tmp_path / "run.json")
    assert spec.train.algo == "sft" and spec.train.steps == 3 and spec.train.lr == 3e-3


def test_a_folder_with_a_run_is_not_overwritten(tmp_path):
    run_experiment(spec_from_options(**{**TINY, "steps": 1}), tmp_path)
    with pytest.raises(ValueError, match="already holds a run"):
        run_experiment(spec_from_options(**{**TINY, "steps": 1}), tmp_path)
