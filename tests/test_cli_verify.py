"""`threegate verify`: table, JSONL schema, errata, exit statuses, and the full registry at "tiny" size."""

import json

import proofs_numeric
from proofs_numeric import REGISTRY
from threegate._types import BoundCheck
from threegate.cli import main

REQUIRED = {
    "id",
    "statement",
    "instances",
    "max_ratio",
    "violations",
    "status",
    "seed",
    "dtype",
    "backend",
    "jax_version",
    "numpy_version",
    "elapsed_s",
}


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_verify_only_writes_jsonl_and_errata(tmp_path, capsys):
    rc = main(
        ["verify", "--only", "E.1", "3.4", "--size", "tiny", "--seed", "3", "--out", str(tmp_path)]
    )
    out, err = capsys.readouterr()
    assert rc == 0
    rows = _lines(tmp_path / "verify.jsonl")
    assert [r["id"] for r in rows] == ["E.1", "3.4"]
    for r in rows:
        assert REQUIRED <= set(r) and r["seed"] == 3 and r["backend"]
    e1, w = rows
    assert e1["status"] == "violated-as-stated" and w["status"] == "holds"
    assert e1["corrected"]["violations"] == 0 and e1["counter_example"]["instance"]["y"] == 2.0
    errata = json.loads((tmp_path / "errata.json").read_text())
    assert sum(e["verdict"] == "erratum" for e in errata["tables"]) == 3
    assert [r["id"] for r in errata["results"]] == ["E.1"]
    header = out.splitlines()[0].split()
    assert header[:3] == ["id", "result", "inst"] and header[-1] == "status"
    assert "Table 5, M_princ: reported Avg 55.44" in out
    # the table shortens statements; the full ones (and E.1's corrected form) follow it, wrapped
    flat = " ".join(out.split())
    e1 = proofs_numeric.load("E.1")
    assert " ".join(e1.STATEMENT.split()) in flat
    assert "corrected: " + " ".join(e1.STATEMENT_CORRECTED.split()) in flat
    assert " ".join(proofs_numeric.load("3.4").STATEMENT.split()) in flat
    assert "verify [1/2] E.1" in err and "verify [2/2] 3.4" in err


def test_unknown_id_is_a_one_line_error(capsys):
    assert main(["verify", "--only", "3.3", "9.9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("threegate verify: error: unknown result id(s) 9.9") and "\n" not in err


def test_missing_checker_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(REGISTRY, "F.12", "not_written_yet")
    assert main(["verify", "--only", "F.12", "E.1", "--size", "tiny", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "threegate verify: error: 1 result(s) have no checker" in err and "Traceback" not in err
    assert [r["id"] for r in _lines(tmp_path / "verify.jsonl")] == ["E.1"]  # the others still ran


def test_a_violated_result_gives_exit_status_1(monkeypatch, capsys):
    module = proofs_numeric.load("F.12")
    real = module.weyl_check
    monkeypatch.setattr(
        module, "weyl_check", lambda a, b: BoundCheck(real(a, b).lhs, real(a, b).rhs / 2, True)
    )
    assert main(["verify", "--only", "F.12", "--size", "tiny"]) == 1
    assert " violated" in capsys.readouterr().out


def test_registry_modules_are_complete():
    for id, name in REGISTRY.items():
        module = proofs_numeric.load(id)
        assert module.__name__ == f"proofs_numeric.{name}" and module.ID == id
        assert module.STATEMENT and module.KIND in ("exact", "asymptotic") and callable(module.run)
