"""S5 (`sims.interventions`) at quick size: invariance is asserted (Prop D.1); overlaps are reported."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from sims import load
from sims._tiny import pretrained
from sims.interventions import intervene, invariance
from threegate._numerics import tol
from threegate.checkpoints import open_checkpoint
from threegate.claims import VERDICTS


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("s5")
    return load("interventions").run(out, "quick", 0), out / "interventions"


def test_interventions_preserve_the_function_in_float32():
    base = pretrained("quick", 0)
    plain = {k: jnp.asarray(v, jnp.float32) for k, v in base.params.items()}
    new, plan = intervene(plain, base.mcfg, 0)
    inv = invariance(plain, new, base)
    assert (
        inv["max_logit_diff_float32"] <= tol(jnp.float32, base.mcfg.d_model) * inv["max_abs_logit"]
    )
    # the edits did something: the rotated weights differ from the plain ones
    v0 = "model.layers.0.self_attn.v_proj.weight"
    assert not np.array_equal(np.asarray(new[v0]), np.asarray(plain[v0]))
    assert plan["perm_kv"] == [1, 0]


def test_result_and_claims(result):
    res, root = result
    assert json.loads((root / "result.json").read_text()) == res
    ids = {c["id"] for c in res["claims"]}
    assert ids == {
        "S5.intervened_overlap_random",
        "S5.untouched_overlap_high",
        "S5.permutation_mapped_back",
        "S5.invariance_float32",
    }
    assert all(c["verdict"] in VERDICTS for c in res["claims"])
    assert {c["id"]: c["verdict"] for c in res["claims"]}["S5.invariance_float32"] == "agrees"
    for rel in (*res["figures"], *res["data"]):
        assert (root / rel).is_file()


def test_overlap_rows_are_consistent(result):
    _, root = result
    rows = [json.loads(line) for line in (root / "overlaps.jsonl").read_text().splitlines()]
    assert {r["run"] for r in rows} == {"plain_seed2", "intervened_seed1", "intervened_seed2"}
    for r in rows:
        p, q = r["density_ref"], r["density"]
        assert r["random"] == pytest.approx(p * q / (p + q - p * q))
        assert 0 <= r["jaccard"] <= 1
        assert ("jaccard_unpermuted" in r) == (
            r["run"].startswith("intervened") and r["layer"] == 0 and r["edit"] is not None
        )


def test_intervened_run_starts_from_the_rounded_intervened_model(result):
    _, root = result
    base = pretrained("quick", 0)
    plain = {k: jnp.asarray(v, jnp.float32) for k, v in base.params.items()}
    new, _ = intervene(plain, base.mcfg, 0)
    with open_checkpoint(root / "runs" / "intervened_seed1" / "step_000000") as c:
        for name in c.names():
            want = np.asarray(new[name].astype(jnp.bfloat16))
            assert np.array_equal(c.load(name).view(np.uint16), want.view(np.uint16)), name
