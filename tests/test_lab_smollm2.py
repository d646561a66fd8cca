"""The real lab on SmolLM2-135M-Instruct: the bf16 base makes a zero update change no stored bit.

Issue 8's acceptance test: `threegate train grpo --model smollm2 --task addition --steps 1 --lr 1e-5
--reward-wrong 1` (a constant reward, so every advantage is zero and only AdamW's weight decay acts) must leave
every stored bit of every tensor unchanged, as `threegate compare` measures it (sparsity exactly 1.0). With the
master started from the dequantized Q4_1 float32 values instead of their bf16 rounding it was 0.9596.
"""

import json

import pytest

from threegate.cli import main

# one worker runs the SmolLM2 tests one after another: each holds GBs of memory
pytestmark = [pytest.mark.xdist_group("smollm2")]  # in `make test`: the real model's fast checks


@pytest.fixture(scope="module")
def constant_reward_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smol") / "run"
    argv = "train grpo --model smollm2 --task addition --steps 1 --lr 1e-5 --reward-wrong 1"
    argv += " --prompts 2 --group-size 2 --minibatches 1 --max-new-tokens 4 --no-eval --no-progress"
    assert main([*argv.split(), "--out", str(out)]) == 0
    return out


def test_constant_reward_step_changes_no_stored_bit(constant_reward_run, tmp_path):
    run = constant_reward_run
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert log[0]["reward"] == 1.0 and log[0]["grad_norm"] == 0.0
    assert log[0]["sparsity"] == 1.0  # the trainer's own bitwise count
    cmp = tmp_path / "cmp"
    argv = ["compare", str(run / "step_000000"), str(run / "step_000001"), "--out", str(cmp)]
    assert main([*argv, "--no-spectral", "--no-figures"]) == 0
    summary = json.loads((cmp / "summary.json").read_text())
    (stats,) = summary["per_tuned"].values()
    assert stats["sparsity_all"] == 1.0 and stats["sparsity_linear"] == 1.0
    assert (
        stats["tensors"] == 272
    )  # every tensor of SmolLM2-135M (30 layers × 9 + embedding + final norm)


def test_run_json_replays_the_cli_step_through_run_experiment(constant_reward_run, tmp_path):
    """The CLI's run.json, as a `RunSpec`, run again by `run_experiment`: the same records, times aside."""
    from threegate.lm.run import RunSpec, run_experiment

    def records(folder):
        lines = (folder / "log.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if "seconds" not in k} for x in lines]

    spec = RunSpec.from_json(constant_reward_run / "run.json")
    assert spec.model.name == "smollm2" and spec.train.steps == 1
    run_experiment(spec, tmp_path / "again")
    assert records(tmp_path / "again") == records(constant_reward_run)
