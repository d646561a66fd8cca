"""`scripts/gpu_check.py` (`make gpu-check`): one-line failure without a GPU, and a CPU dry run at a tiny shape."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


def test_without_gpu_fails_in_one_line(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}  # no accelerator, whatever this machine has
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr == "gpu-check: no GPU backend found (jax backend: cpu)\n"
    assert proc.stdout == "" and not (tmp_path / "gpu_check.json").exists()


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_allow_cpu_dry_run_tiny(gpu_check, tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--shape", "48", "40", "--k", "4", "--repeats", "1"]
    rc = gpu_check.main(
        [
            *argv,
            "--model",
            "tiny",
            "--grpo-steps",
            "2",
            "--prompts",
            "2",
            "--group",
            "2",
            "--allow-cpu",
        ]
    )
    assert rc == 0
    assert "CPU numbers only" in capsys.readouterr().out
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert "timing_accelerator" not in report
    # the device bitwise pass counts exactly what compare's host pass counts, and something changed
    bit = report["bitwise_cpu"]
    assert bit["counts_agree"] and bit["changed"] == bit["changed_host"] > 0
    # the planted angle comes back at "highest" precision (CPU: no TF32 floor)
    s = report["sin_theta_cpu"]
    assert s["highest"] == pytest.approx(s["true_sin"], rel=1e-2)
    assert s["compare_angle_path_sin"] == pytest.approx(s["true_sin"], rel=1e-2)
    g = report["grpo_cpu"]
    assert g["model"] == "tiny" and len(g["loss"]) == 2 and g["finite"]
    assert g["first_step_s"] > 0 and g["best_step_s"] > 0
