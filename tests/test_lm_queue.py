"""`threegate.lm.queue`: a sweep as a queue of `RunSpec`s. Every backend writes the records `run_experiment`
writes; a finished run is reused, a started one resumed; a failed run is one line naming it."""

import json
import shutil

import pytest

from threegate.errors import ThreegateError
from threegate.lm.queue import is_finished, run_queue
from threegate.lm.run import run_experiment, spec_from_options

TINY = dict(algo="grpo", steps=2, prompts=4, group_size=4, minibatches=1, eval_size=8)
RUNS = [("a", spec_from_options(**TINY, seed=0)), ("b", spec_from_options(**TINY, seed=1))]


def _timeless(x):
    if isinstance(x, dict):
        return {k: _timeless(v) for k, v in x.items() if "seconds" not in k}
    return [_timeless(v) for v in x] if isinstance(x, list) else x


def _eval(folder):
    return _timeless(json.loads((folder / "eval.json").read_text()))


def _records(folder):
    lines = (folder / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if "seconds" not in k} for x in lines]


@pytest.fixture(scope="module")
def inline(tmp_path_factory):
    root = tmp_path_factory.mktemp("inline")
    assert run_queue(RUNS, root, backend="inline") == {"a": "ran", "b": "ran"}
    return root


def test_inline_runs_are_run_experiments(inline, tmp_path):
    run_experiment(RUNS[1][1], tmp_path / "b")
    assert _records(inline / "b") == _records(tmp_path / "b")
    assert _records(inline / "a") != _records(inline / "b")  # the seeds differ
    assert _eval(inline / "b") == _eval(tmp_path / "b")


def test_process_backend_writes_the_same_records(inline, tmp_path):
    seen = []
    status = run_queue(RUNS, tmp_path, backend="process", on_finished=lambda n, f: seen.append(n))
    assert status == {"a": "ran", "b": "ran"} and seen == ["a", "b"]
    for name, _ in RUNS:
        assert _records(tmp_path / name) == _records(inline / name)
        assert _eval(tmp_path / name) == _eval(inline / name)
        assert not (tmp_path / name / "resume").exists()


def test_finished_runs_are_reused_and_started_ones_resumed(inline, tmp_path):
    root = tmp_path / "q"
    shutil.copytree(inline / "a", root / "a")
    run_experiment(RUNS[1][1], root / "b")
    (
        root / "b" / "eval.json"
    ).unlink()  # b stopped after its last checkpoint, before its evaluation
    assert not is_finished(root / "b") and (root / "b" / "resume").is_dir()
    msgs = []
    assert run_queue(RUNS, root, backend="inline", say=msgs.append) == {"a": "reused", "b": "ran"}
    assert msgs == ["a finished, reused", "resuming b"]
    assert _records(root / "b") == _records(inline / "b")
    assert is_finished(root / "b")
    assert not (root / "b" / "resume").exists()  # a finished run's resume state is dropped


def test_a_failed_run_is_one_line_naming_it(tmp_path):
    bad = spec_from_options(**{**TINY, "init": str(tmp_path / "no-such-checkpoint")})
    with pytest.raises(ThreegateError, match=r"^run bad failed: .*no-such-checkpoint") as err:
        run_queue([("ok", RUNS[0][1]), ("bad", bad)], tmp_path, backend="process")
    assert "\n" not in str(err.value)
    assert is_finished(tmp_path / "ok")  # the runs before it are kept


def test_duplicate_names_and_unknown_backends_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        run_queue([RUNS[0], RUNS[0]], tmp_path)
    with pytest.raises(ValueError, match="backend"):
        run_queue(RUNS, tmp_path, backend="threads")


@pytest.mark.xdist_group("ray")
def test_ray_backend_writes_the_same_records(inline, tmp_path):
    pytest.importorskip("ray")
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        done = []
        status = run_queue(RUNS, tmp_path, backend="ray", on_finished=lambda n, f: done.append(n))
    finally:
        ray.shutdown()
    assert status == {"a": "ran", "b": "ran"} and sorted(done) == ["a", "b"]
    for name, _ in RUNS:
        assert _records(tmp_path / name) == _records(inline / name)
        assert _eval(tmp_path / name) == _eval(inline / name)


def test_a_dead_child_is_named_with_its_signal():
    import signal

    from threegate.lm.queue import _child_failure

    assert (
        _child_failure(1, "loading\nerror: no such file x\n")
        == "error: no such file x (exit status 1)"
    )
    assert _child_failure(-signal.SIGKILL, "") == "killed by SIGKILL (out of memory?)"
    assert _child_failure(-signal.SIGTERM, "step 3\n") == "step 3 (killed by SIGTERM)"
    assert _child_failure(2, "") == "exit status 2"


def test_a_finished_run_of_another_spec_is_refused(inline, tmp_path):
    shutil.copytree(inline / "a", tmp_path / "a")
    other = spec_from_options(**{**TINY, "steps": 3}, seed=0)
    with pytest.raises(ValueError, match=r"another spec .*train\.steps"):
        run_queue([("a", other)], tmp_path, backend="inline")
