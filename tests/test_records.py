"""`threegate.records`: the one JSON sanitiser (both non-finite rules) and the JSONL/JSON writers."""

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from threegate.records import (
    JsonlWriter,
    json_line,
    read_jsonl,
    to_jsonable,
    write_json,
    write_jsonl,
)


def test_sanitiser_makes_every_array_kind_plain_and_nonfinite_null():
    x = {
        "np": np.array([1.5, np.nan, -np.inf], np.float32),
        "jax": jnp.array([2.0, jnp.inf]),
        "scalars": (np.float64(0.25), np.int8(-3), np.bool_(True), np.float32("nan")),
        "ints": np.arange(3),
        1: None,
    }
    got = to_jsonable(x)
    assert got == {
        "np": [1.5, None, None],
        "jax": [2.0, None],
        "scalars": [0.25, -3, True, None],
        "ints": [0, 1, 2],
        "1": None,
    }
    assert type(got["scalars"][1]) is int and type(got["scalars"][2]) is bool
    json.dumps(got, allow_nan=False)  # strict JSON


def test_sanitiser_string_rule_keeps_inf_apart_from_nan():
    got = to_jsonable(
        {"r": math.inf, "v": [-math.inf, math.nan], "a": np.array([np.inf])}, nonfinite="str"
    )
    assert got == {"r": "inf", "v": ["-inf", "nan"], "a": ["inf"]}


def test_sanitiser_refuses_what_json_cannot_hold():
    with pytest.raises(TypeError, match="set"):
        to_jsonable({"a": {1, 2}})


def test_jsonl_writer_appends_repairs_and_starts_fresh(tmp_path):
    path = tmp_path / "sub" / "log.jsonl"
    with JsonlWriter(path, fresh=True) as w:
        w.write({"a": 1, "b": np.float32(0.5)})
        w({"c": float("nan")})
    assert read_jsonl(path) == [{"a": 1, "b": 0.5}, {"c": None}]
    with open(path, "a") as f:
        f.write('{"partial": ')
    assert len(read_jsonl(path)) == 2  # a truncated tail is ignored ...
    with JsonlWriter(path) as w:  # ... and cut off before appending
        w.write({"d": 2})
    assert read_jsonl(path)[-1] == {"d": 2} and len(read_jsonl(path)) == 3
    with JsonlWriter(path, fresh=True):
        pass
    assert read_jsonl(path) == []


def test_whole_file_writers_are_strict_and_leave_no_temporary(tmp_path):
    write_jsonl(
        tmp_path / "a" / "rows.jsonl",
        ({"i": i, "x": math.inf if i else 0.0} for i in range(2)),
    )
    assert (tmp_path / "a" / "rows.jsonl").read_text() == json_line({"i": 0, "x": 0.0}) + json_line(
        {"i": 1, "x": None}
    )
    write_json(tmp_path / "r.json", {"v": np.array([1.0, np.nan])}, indent=2)
    assert json.loads((tmp_path / "r.json").read_text()) == {"v": [1.0, None]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "r.json"]
