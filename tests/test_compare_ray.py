"""`threegate compare --ray`: the Ray driver writes what the serial driver writes, survives a dead worker, resumes.

One local Ray instance with 2 worker CPUs for the module (start-up is slow). Checkpoints are tiny planted bf16
pairs (two tuned checkpoints, so pairs and consensus maps are exercised); a small `block_bytes` makes the
embedding go through the row-blocked pass in several Ray tasks.
"""

import functools
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from threegate.checkpoints import save_safetensors
from threegate.cli import main
from threegate.compare import distributed
from threegate.compare.jsonl import read_jsonl
from threegate.compare.run import CompareConfig, run_compare
from threegate.compare.summary import summarize

try:
    import ray
except ImportError:
    ray = None

# ray.init forks its processes after jax has started threads; they exec at once, so the warning does not apply
pytestmark = [
    pytest.mark.filterwarnings("ignore:os.fork.. was called:RuntimeWarning"),
    # one xdist worker runs every Ray test (`--dist loadgroup`): one Ray instance, not one per worker
    pytest.mark.xdist_group("ray"),
]
needs_ray = pytest.mark.skipif(
    ray is None, reason="ray not installed (pip install 'threegate[ray]')"
)

BF16 = ml_dtypes.bfloat16
M, N = 40, 32
K = 6
BLOCK_BYTES = (
    2000  # the 40 x 32 bf16 embedding (2560 B) is read in row blocks of 7 rows: 6 block tasks
)
EMBED = "model.embed_tokens.weight"
WIDE = "model.layers.0.mlp.up_proj.weight"
NAMES = [
    f"model.layers.{i}.{m}"
    for i in (0, 1)
    for m in ("self_attn.q_proj.weight", "self_attn.o_proj.weight", "mlp.down_proj.weight")
]
FILES = ("tensors.jsonl", "pairs.jsonl", "profiles.jsonl", "summary.json")


def _planted(w: np.ndarray, idx: np.ndarray) -> np.ndarray:
    bits = w.view(np.uint16).copy().ravel()
    bits[idx] += np.uint16(1)  # one ULP away from zero: changed, bit for bit
    return bits.reshape(w.shape).view(BF16)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    rng = np.random.default_rng(11)
    root = tmp_path_factory.mktemp("ckpt")
    base = {EMBED: (rng.standard_normal((M, N)) * 0.02).astype(BF16)}
    for name in NAMES:
        base[name] = (rng.standard_normal((M, N)) * 0.05).astype(BF16)
    # large enough for multi-threaded LAPACK (results change in the last bits with the thread count)
    base[WIDE] = (rng.standard_normal((640, 256)) * 0.05).astype(BF16)
    base["model.norm.weight"] = np.ones(N, BF16)
    save_safetensors(base, root / "base", max_shard_bytes=3000)
    planted = {}
    for t, n in (("a", 37), ("b", 50)):
        sets = {
            name: np.sort(rng.choice(w.size, min(n, w.size // 2), replace=False))
            for name, w in base.items()
        }
        save_safetensors(
            {k: _planted(w, sets[k]) for k, w in base.items()}, root / f"tuned_{t}.safetensors"
        )
        planted[t] = sets
    return root, base, planted


@pytest.fixture(scope="module")
def ray_local():
    if ray is None:
        pytest.skip("ray not installed (pip install 'threegate[ray]')")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _cfg(root: Path, out: Path, **kw) -> CompareConfig:
    return CompareConfig(
        base=str(root / "base"),
        tuned=(str(root / "tuned_a.safetensors"), str(root / "tuned_b.safetensors")),
        out=str(out),
        k=K,
        block_bytes=BLOCK_BYTES,
        **kw,
    )


def _run(cfg: CompareConfig) -> Path:
    out = run_compare(cfg)
    summarize(out)
    return out


@pytest.fixture(scope="module")
def serial_run(ckpts, tmp_path_factory):
    root, _, _ = ckpts
    return _run(_cfg(root, tmp_path_factory.mktemp("serial")))


def _assert_same_outputs(a: Path, b: Path) -> None:
    """The final files are the same bytes; consensus maps are the same arrays."""
    for f in FILES:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    maps = sorted(p.name for p in (a / "consensus").glob("*.npz"))
    assert maps and maps == sorted(p.name for p in (b / "consensus").glob("*.npz"))
    for m in maps:
        with np.load(a / "consensus" / m) as x, np.load(b / "consensus" / m) as y:
            np.testing.assert_array_equal(x["count"], y["count"])
            assert int(x["runs"]) == int(y["runs"]) == 2


def _workers(out: Path) -> set[int]:
    return {c["pid"] for c in read_jsonl(out / "costs.jsonl")}


def test_without_ray_one_line(ckpts, tmp_path, capsys, monkeypatch):
    root, _, _ = ckpts
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    rc = main(
        [
            "compare",
            str(root / "base"),
            str(root / "tuned_a.safetensors"),
            "--out",
            str(tmp_path),
            "--ray",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "threegate[ray]" in err and "Traceback" not in err


@needs_ray
def test_ray_outputs_identical_to_serial(ckpts, serial_run, ray_local, tmp_path):
    root, base, planted = ckpts
    out = _run(_cfg(root, tmp_path, ray="local"))
    _assert_same_outputs(serial_run, out)
    # the planted answer comes back exactly (so "identical" is not two equal wrong answers)
    recs = {(r["name"], r["tuned"]): r for r in read_jsonl(out / "tensors.jsonl")}
    key_a = str((root / "tuned_a.safetensors").resolve())
    for name, idx in planted["a"].items():
        assert recs[(name, key_a)]["changed"] == idx.size
    assert recs[(EMBED, key_a)]["blocked_rows"] is True
    # the units ran in Ray workers, not in this process; the embedding as 6 row-block tasks
    costs = read_jsonl(out / "costs.jsonl")
    assert os.getpid() not in _workers(out) and _workers(serial_run) == {os.getpid()}
    assert sorted(c["rows"] for c in costs if c["kind"] == "block") == [
        [s, min(M, s + 7)] for s in range(0, M, 7)
    ]
    assert sum(c["kind"] == "tensor" for c in costs) == len(base) - 1


@needs_ray
def test_cli_ray_starts_local_instance_and_matches_serial(ckpts, tmp_path):
    """The user's path: `threegate compare ... --ray` in a fresh process starts (and stops) its own Ray."""
    root, _, _ = ckpts
    args = [str(root / "base"), str(root / "tuned_a.safetensors"), "--k", str(K), "--no-figures"]
    assert main(["compare", *args, "--out", str(tmp_path / "s")]) == 0
    cli = "import sys; from threegate.cli import main; sys.exit(main())"
    cmd = [sys.executable, "-c", cli, "compare", *args, "--out", str(tmp_path / "r")]
    proc = subprocess.run([*cmd, "--ray"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sparsity" in proc.stdout
    for f in FILES:
        assert (tmp_path / "s" / f).read_bytes() == (tmp_path / "r" / f).read_bytes(), f
    assert os.getpid() not in _workers(tmp_path / "r")


def _fail_on(target: str, name: str) -> None:
    if name == target:
        raise ValueError(f"planted failure on {name}")


def _crash_once(marker: str, target: str, name: str) -> None:
    """Kill this worker process the first time it starts `target` (the marker file remembers)."""
    if name == target and not os.path.exists(marker):
        Path(marker).write_text("crashed\n")
        os._exit(1)


@pytest.fixture
def by_value():
    """Ship this module's hook functions to the workers by value (they cannot import the test module)."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@needs_ray
def test_resume_after_interrupted_ray_run(
    ckpts, serial_run, ray_local, by_value, tmp_path, monkeypatch
):
    root, base, _ = ckpts
    target = "model.layers.1.mlp.down_proj.weight"
    monkeypatch.setattr(distributed, "FAULT_HOOK", functools.partial(_fail_on, target))
    with pytest.raises(ValueError) as info:  # the unit's own error, not retried, not wrapped by Ray
        run_compare(_cfg(root, tmp_path, ray="local"))
    assert type(info.value) is ValueError and str(info.value) == f"planted failure on {target}"
    partial = read_jsonl(tmp_path / "tensors.jsonl")
    assert target not in {r["name"] for r in partial} and len(partial) < 2 * len(base)
    data = (tmp_path / "tensors.jsonl").read_bytes()
    if partial:  # and a crash mid-write: the last line cut off
        (tmp_path / "tensors.jsonl").write_bytes(data[: len(data) - 25])
    count = Counter(r["name"] for r in read_jsonl(tmp_path / "tensors.jsonl"))
    paired = {r["name"] for r in read_jsonl(tmp_path / "pairs.jsonl")}
    done = {name for name, c in count.items() if c == 2 and name in paired}
    monkeypatch.setattr(distributed, "FAULT_HOOK", None)
    before = len(read_jsonl(tmp_path / "costs.jsonl"))
    out = _run(_cfg(root, tmp_path, ray="local", resume=True))
    # the resumed run computed the tensors the interrupted one had not finished, and no finished one
    redone = {c["name"] for c in read_jsonl(out / "costs.jsonl")[before:]}
    assert target in redone and not (redone & done)
    _assert_same_outputs(serial_run, out)


@needs_ray
def test_worker_killed_mid_tensor_is_retried(
    ckpts, serial_run, ray_local, by_value, tmp_path, monkeypatch
):
    root, _, _ = ckpts
    marker = tmp_path / "crashed"
    target = "model.layers.1.self_attn.q_proj.weight"  # in the chosen layer: it also writes a consensus map
    monkeypatch.setattr(
        distributed, "FAULT_HOOK", functools.partial(_crash_once, str(marker), target)
    )
    out = _run(_cfg(root, tmp_path / "out", ray="local", max_retries=2))
    assert marker.exists()  # the first attempt did die
    _assert_same_outputs(serial_run, out)
    assert sum(c["name"] == target for c in read_jsonl(out / "costs.jsonl")) == 1


@needs_ray
def test_worker_killed_without_retries_fails_in_one_line(
    ckpts, ray_local, by_value, tmp_path, monkeypatch
):
    root, _, _ = ckpts
    target = "model.layers.0.mlp.down_proj.weight"
    monkeypatch.setattr(
        distributed, "FAULT_HOOK", functools.partial(_crash_once, str(tmp_path / "m"), target)
    )
    with pytest.raises(
        distributed.ThreegateError, match=f"^ray: the task for {target} failed after 0 retries"
    ):
        run_compare(_cfg(root, tmp_path / "out", ray="local", max_retries=0))
    assert (tmp_path / "m").exists()
    # what finished before the failure is on disk, so --resume would continue from there
    assert json.loads((tmp_path / "out" / "run.json").read_text())["k"] == K
