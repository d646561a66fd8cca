"""Checkpoint reading, writing and streaming on tiny safetensors files made here (no downloads)."""

import json
import re
import weakref
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy

from threegate.checkpoints import (
    LAYER_TYPES,
    Checkpoint,
    aligned,
    check_alignment,
    classify,
    is_linear,
    layer_index,
    open_checkpoint,
    save_safetensors,
    save_safetensors_stream,
)
from threegate.errors import CheckpointError, FormatError, MismatchError

BF16 = np.dtype(ml_dtypes.bfloat16)


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def _model(
    rng: np.random.Generator, layers=(0, 1, 2, 10), scale: float = 1.0
) -> dict[str, np.ndarray]:
    """A tiny Llama-named model: bf16 projections, f16 norms, f32 embedding/head, one f64 bias."""
    out = {"model.embed_tokens.weight": rng.standard_normal((16, 8)).astype(np.float32)}
    for i in layers:
        p = f"model.layers.{i}."
        out[p + "self_attn.q_proj.weight"] = (scale * rng.standard_normal((8, 8))).astype(BF16)
        out[p + "mlp.down_proj.weight"] = (scale * rng.standard_normal((8, 12))).astype(BF16)
        out[p + "input_layernorm.weight"] = rng.standard_normal(8).astype(np.float16)
    out["model.layers.0.self_attn.q_proj.bias"] = rng.standard_normal(8)
    out["model.norm.weight"] = np.ones(8, np.float16)
    out["lm_head.weight"] = rng.standard_normal((16, 8)).astype(np.float32)
    return out


def _assert_bitwise(ckpt: Checkpoint, tensors: dict[str, np.ndarray]) -> None:
    assert ckpt.names() == sorted(tensors)
    for name, ref in tensors.items():
        got = ckpt.load(name)
        assert got.dtype == ref.dtype and got.shape == ref.shape, name
        np.testing.assert_array_equal(_bits(got), _bits(ref), err_msg=name)
        assert ckpt.info(name) == (name, ref.shape, ref.dtype)


def _one_line(err: pytest.ExceptionInfo, *needles: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)


# ---------------------------------------------------------------- round trips


def test_single_file_round_trip_bitwise(tmp_path, rng):
    tensors = _model(rng)
    files = save_safetensors(tensors, tmp_path / "m")
    assert files == [tmp_path / "m" / "model.safetensors"]
    for path in (tmp_path / "m", files[0]):
        with open_checkpoint(path) as ck:
            assert ck.format == "safetensors"
            _assert_bitwise(ck, tensors)


def test_file_path_target_and_reference_reader_agree(tmp_path, rng):
    tensors = _model(rng, layers=(0,))
    (target,) = save_safetensors(tensors, tmp_path / "x.safetensors", metadata={"k": "v"})
    ref = safetensors.numpy.load_file(target)  # the reference implementation reads our files
    for name, a in tensors.items():
        np.testing.assert_array_equal(_bits(ref[name]), _bits(a))
    ck = open_checkpoint(target)
    assert ck.metadata == {"format": "pt", "k": "v"}


def test_reads_files_written_by_the_reference_writer(tmp_path, rng):
    tensors = _model(rng, layers=(0, 3))
    safetensors.numpy.save_file(tensors, tmp_path / "ref.safetensors")
    _assert_bitwise(open_checkpoint(tmp_path / "ref.safetensors"), tensors)


def test_sharded_round_trip_bitwise(tmp_path, rng):
    tensors = _model(rng)
    files = save_safetensors(tensors, tmp_path, max_shard_bytes=300)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted({*index["weight_map"].values()})
    assert len(shards) > 2 and files[-1].name == "model.safetensors.index.json"
    assert shards == [
        f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)
    ]
    assert index["metadata"]["total_size"] == sum(a.nbytes for a in tensors.values())
    for shard in shards:  # every shard respects the limit unless it holds a single bigger tensor
        sizes = [tensors[k].nbytes for k, v in index["weight_map"].items() if v == shard]
        assert sum(sizes) <= 300 or len(sizes) == 1
    for path in (tmp_path, tmp_path / "model.safetensors.index.json"):
        ck = open_checkpoint(path)
        assert ck.format == "safetensors-sharded"
        _assert_bitwise(ck, tensors)


def test_streaming_writer_holds_one_array_at_a_time_and_resave_replaces_layout(tmp_path, rng):
    tensors = _model(rng)
    refs: list[weakref.ref] = []

    def gen():
        for k, v in tensors.items():
            # the writer has let go of the previous array before it asks for the next one
            assert not refs or refs[-1]() is None, k
            a = v.copy()
            refs.append(weakref.ref(a))
            yield k, a
            del a

    save_safetensors_stream(gen(), tmp_path, max_shard_bytes=200)
    assert len(refs) == len(tensors)
    _assert_bitwise(open_checkpoint(tmp_path), tensors)
    # saving a single file into the same folder removes the old shards + index (no ambiguous folder)
    save_safetensors(tensors, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    _assert_bitwise(open_checkpoint(tmp_path), tensors)


def test_writer_is_atomic_on_error(tmp_path, rng):
    def gen():
        yield "a", np.zeros(4, np.float32)
        yield "b", np.zeros(4, np.int32)  # unsupported dtype

    with pytest.raises(TypeError, match="int32"):
        save_safetensors_stream(gen(), tmp_path / "m")
    assert list((tmp_path / "m").iterdir()) == []
    with pytest.raises(ValueError, match="duplicate"):
        save_safetensors_stream(iter([("a", np.zeros(1)), ("a", np.zeros(1))]), tmp_path / "m")
    assert list((tmp_path / "m").iterdir()) == []


def test_load_rows_matches_load(tmp_path, rng):
    tensors = _model(rng, layers=(0,))
    save_safetensors(tensors, tmp_path)
    ck = open_checkpoint(tmp_path)
    for name in (
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.norm.weight",
    ):
        full = ck.load(name)
        for start, stop in ((0, 3), (2, 8), (5, 5)):
            np.testing.assert_array_equal(
                _bits(ck.load_rows(name, start, stop)), _bits(full[start:stop])
            )
    np.testing.assert_array_equal(  # NumPy integers are fine as row bounds
        ck.load_rows("model.norm.weight", np.int64(1), np.int32(3)),
        ck.load("model.norm.weight")[1:3],
    )
    with pytest.raises(ValueError, match="out of range"):
        ck.load_rows("model.norm.weight", 4, 9)


# ---------------------------------------------------------------- bad input: one-line errors


def test_truncated_file(tmp_path, rng):
    save_safetensors(_model(rng), tmp_path)
    f = tmp_path / "model.safetensors"
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(tmp_path)
    _one_line(err, "model.safetensors", "truncated", "bytes of data")
    f.write_bytes(raw[:5])
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(f)
    _one_line(err, "model.safetensors", "truncated")
    f.write_bytes(raw[:40])  # header cut
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(f)
    _one_line(err, "model.safetensors", "truncated", "header length")


def test_corrupt_header(tmp_path, rng):
    save_safetensors(_model(rng), tmp_path)
    f = tmp_path / "model.safetensors"
    raw = bytearray(f.read_bytes())
    f.write_bytes(bytes(rng.integers(0, 256, len(raw), dtype=np.uint8)))  # garbage
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(f)
    _one_line(err, "model.safetensors", "corrupt")
    raw[8:12] = b"\xff\xfe{["  # bytes inside the JSON
    f.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(f)
    _one_line(err, "model.safetensors", "corrupt header", "JSON")


def test_header_offsets_inconsistent_with_shape(tmp_path):
    head = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}).encode()
    f = tmp_path / "bad.safetensors"
    f.write_bytes(len(head).to_bytes(8, "little") + head + bytes(16))
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(f)
    _one_line(err, "bad.safetensors", "'w'", "12 bytes")
    for offsets, problem in (([[0, 16], [8, 24]], "overlaps"), ([[0, 16], [24, 40]], "has a gap")):
        entries = {
            f"w{i}": {"dtype": "F32", "shape": [4], "data_offsets": o}
            for i, o in enumerate(offsets)
        }
        head = json.dumps(entries).encode()
        f.write_bytes(len(head).to_bytes(8, "little") + head + bytes(64))
        with pytest.raises(CheckpointError) as err:
            open_checkpoint(f)
        _one_line(err, "bad.safetensors", problem)


def _raw(header: bytes, data: bytes) -> bytes:
    return len(header).to_bytes(8, "little") + header + data


_F32_2 = b'"dtype":"F32","shape":[2],"data_offsets":[0,8]'


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (_raw(b'{"w":{' + _F32_2 + b"}}", bytes(12)), "4 bytes after the 8 bytes"),
        (
            _raw(
                b'{"w":{' + _F32_2 + b'},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
                bytes(8),
            ),
            "duplicate key 'w'",
        ),
        (_raw(b'{"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}', bytes(8)), "bad entry"),
        (
            _raw(b'{"w":{"dtype":"F32","shape":[true,2],"data_offsets":[0,8]}}', bytes(8)),
            "bad entry",
        ),
        (_raw(b'{"w":{"dtype":["F32"],"shape":[2],"data_offsets":[0,8]}}', bytes(8)), "bad entry"),
        (_raw(b'{"__metadata__":{"a":1},"w":{' + _F32_2 + b"}}", bytes(8)), "__metadata__"),
        (
            _raw(
                b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8' + b"0" * 5000 + b"]}}", b""
            ),
            "JSON",
        ),
    ],
    ids=[
        "trailing",
        "duplicate",
        "float-dim",
        "bool-dim",
        "list-dtype",
        "int-metadata",
        "huge-int",
    ],
)
def test_header_rejected_at_open_like_the_reference_reader(tmp_path, raw, problem):
    """Whatever safetensors itself refuses fails at `open_checkpoint`, in one line, not at the first load."""
    f = tmp_path / "bad.safetensors"
    f.write_bytes(raw)
    with pytest.raises(Exception):  # noqa: B017  (the reference raises its own error types)
        safetensors.numpy.load_file(f)
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(f)
    _one_line(err, "bad.safetensors", problem)


def test_unsupported_dtypes_are_skipped_with_reason(tmp_path, rng):
    safetensors.numpy.save_file(
        {"w": rng.standard_normal((2, 3)).astype(np.float32), "ids": np.arange(4, dtype=np.int64)},
        tmp_path / "m.safetensors",
    )
    ck = open_checkpoint(tmp_path / "m.safetensors")
    assert ck.names() == ["w"]
    assert check_alignment([ck, ck]).skipped == ["m.safetensors: ids: " + ck.skipped["ids"]] * 2
    assert "I64" in ck.skipped["ids"]
    with pytest.raises(CheckpointError, match="skipped: dtype I64"):
        ck.load("ids")
    with pytest.raises(CheckpointError, match="no tensor named 'nope'"):
        ck.info("nope")


def _sharded(tmp_path: Path, rng) -> dict:
    save_safetensors(_model(rng), tmp_path, max_shard_bytes=300)
    return json.loads((tmp_path / "model.safetensors.index.json").read_text())


def test_sharded_missing_shard(tmp_path, rng):
    index = _sharded(tmp_path, rng)
    gone = sorted(set(index["weight_map"].values()))[1]
    (tmp_path / gone).unlink()
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(tmp_path)
    _one_line(err, "model.safetensors.index.json", "missing", gone)


def test_sharded_name_missing_from_its_shard(tmp_path, rng):
    index = _sharded(tmp_path, rng)
    index["weight_map"]["model.layers.7.mlp.up_proj.weight"] = sorted(index["weight_map"].values())[
        0
    ]
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(tmp_path)
    _one_line(err, "model.layers.7.mlp.up_proj.weight", "does not hold")


@pytest.mark.parametrize(
    "text", ["{not json", '{"weight_map": [1, 2]}', '{"weight_map": {"a": "../x"}}']
)
def test_sharded_bad_index(tmp_path, rng, text):
    _sharded(tmp_path, rng)
    (tmp_path / "model.safetensors.index.json").write_text(text)
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(tmp_path)
    _one_line(err, "model.safetensors.index.json", "corrupt index")


def test_folder_ambiguous_and_hidden_temporaries_ignored(tmp_path, rng):
    tensors = _model(rng, layers=(0,))
    for name in ("a.safetensors", "b.safetensors"):
        save_safetensors(tensors, tmp_path / name)
    with pytest.raises(FormatError) as err:
        open_checkpoint(tmp_path)
    _one_line(err, "ambiguous", "2 files match *.safetensors")
    (tmp_path / "b.safetensors").rename(tmp_path / ".threegate-left-over.safetensors")
    # a writer's left-over temporary is not a second checkpoint
    with open_checkpoint(tmp_path) as ck:
        assert ck.path == tmp_path / "a.safetensors" and ck.names() == sorted(tensors)


def test_unknown_format_and_missing_path(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"\0" * 16)
    with pytest.raises(FormatError) as err:
        open_checkpoint(tmp_path / "w.bin")
    _one_line(err, "w.bin", ".safetensors", ".gguf")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FormatError) as err:
        open_checkpoint(empty)
    _one_line(err, "empty", "gguf")
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(tmp_path / "absent.safetensors")
    _one_line(err, "absent.safetensors", "no such file")
    assert not isinstance(err.value, FormatError)


# ---------------------------------------------------------------- names: classify, order, filters


@pytest.mark.parametrize(
    ("name", "kind", "idx", "linear"),
    [
        ("model.layers.3.self_attn.q_proj.weight", "q_proj", 3, True),
        ("model.layers.3.self_attn.k_proj.weight", "k_proj", 3, True),
        ("model.layers.3.self_attn.v_proj.weight", "v_proj", 3, True),
        ("model.layers.12.self_attn.o_proj.weight", "o_proj", 12, True),
        ("model.layers.0.mlp.gate_proj.weight", "gate_proj", 0, True),
        ("model.layers.0.mlp.up_proj.weight", "up_proj", 0, True),
        ("model.layers.29.mlp.down_proj.weight", "down_proj", 29, True),
        ("model.layers.3.self_attn.q_proj.bias", "bias", 3, False),
        ("model.layers.3.input_layernorm.weight", "norm", 3, False),
        ("model.layers.3.post_attention_layernorm.weight", "norm", 3, False),
        ("model.norm.weight", "norm", None, False),
        ("model.embed_tokens.weight", "embed", None, False),
        ("lm_head.weight", "lm_head", None, False),
        ("model.rotary_emb.inv_freq", "other", None, False),
    ],
)
def test_classify(name, kind, idx, linear):
    assert classify(name) == kind and kind in LAYER_TYPES
    assert layer_index(name) == idx
    assert is_linear(name) is linear


def test_alignment_order_filters_and_dtype_report(tmp_path, rng):
    a = _model(rng)
    b = _model(rng)
    b["lm_head.weight"] = b["lm_head.weight"].astype(BF16)
    save_safetensors(a, tmp_path / "a")
    save_safetensors(b, tmp_path / "b", max_shard_bytes=256)
    cks = [open_checkpoint(tmp_path / "a"), open_checkpoint(tmp_path / "b")]
    names = check_alignment(cks)
    assert names[0] == "model.embed_tokens.weight"
    layers = [layer_index(n) for n in names if layer_index(n) is not None]
    assert layers == sorted(layers) and layers[-1] == 10  # 10 after 2: numeric, not lexicographic
    assert names[-2:] == ["lm_head.weight", "model.norm.weight"]
    assert names.dtype_differences == ["lm_head.weight: float32 vs bfloat16"]
    only_q = check_alignment(cks, include=r"q_proj\.weight$", exclude=r"layers\.1\.")
    assert list(only_q) == [f"model.layers.{i}.self_attn.q_proj.weight" for i in (0, 2, 10)]
    assert [
        t.name for t in aligned(cks, include=r"q_proj\.weight$", exclude=r"layers\.1\.")
    ] == only_q
    with pytest.raises(ValueError, match="no tensor names selected"):
        check_alignment(cks, include="nothing-matches")
    with pytest.raises(ValueError, match=r"exclude '\(' is not a valid regex") as err:
        check_alignment(cks, exclude="(")
    _one_line(err)


def test_mismatch_lists_names_and_shapes(tmp_path, rng):
    a = _model(rng, layers=range(14))
    b = _model(rng, layers=range(2))  # 12 layers × 3 tensors missing
    b["model.embed_tokens.weight"] = np.zeros((17, 8), np.float32)
    save_safetensors(a, tmp_path / "a")
    save_safetensors(b, tmp_path / "b")
    cks = [open_checkpoint(tmp_path / "a"), open_checkpoint(tmp_path / "b")]
    with pytest.raises(MismatchError) as err:
        check_alignment(cks)
    _one_line(
        err, "36 name(s) missing in #2 (b)", "(+26 more)", "model.layers.2.", "(16, 8) vs (17, 8)"
    )
    assert "missing in #1" not in str(err.value)
    with pytest.raises(MismatchError):  # the generator pre-checks before loading anything
        next(aligned(cks))
    # restricted to what both have with equal shapes, they align
    assert len(check_alignment(cks, include=r"layers\.[01]\.")) == 7


class _Counting(Checkpoint):
    """Wraps a checkpoint and records each load, to observe laziness."""

    def __init__(self, inner: Checkpoint, log: list):
        self.inner, self.log = inner, log
        self.path, self.format, self.skipped = inner.path, inner.format, inner.skipped

    def names(self):
        return self.inner.names()

    def info(self, name):
        return self.inner.info(name)

    def load(self, name):
        self.log.append((self.path.name, name))
        return self.inner.load(name)

    def load_rows(self, name, start, stop):
        return self.inner.load_rows(name, start, stop)


def test_aligned_is_lazy_one_tensor_per_checkpoint_per_step(tmp_path, rng):
    tensors = _model(rng)
    for d in ("a", "b", "c"):
        save_safetensors(tensors, tmp_path / d)
    log: list = []
    cks = [_Counting(open_checkpoint(tmp_path / d), log) for d in ("a", "b", "c")]
    it = aligned(cks)
    assert log == []  # a generator: nothing loaded before the first step
    for step, item in enumerate(it, start=1):
        assert len(log) == 3 * step  # exactly one load per checkpoint per step
        assert {n for _, n in log[-3:]} == {item.name}
        assert len(item.arrays) == 3 and all(
            np.array_equal(_bits(x), _bits(tensors[item.name])) for x in item.arrays
        )
        assert item.infos[0] == cks[0].info(item.name)
    assert len(log) == 3 * len(tensors)


def test_aligned_matches_in_memory(tmp_path, rng):
    """Streaming result == the same computation on whole in-memory models."""
    a, b = _model(rng), _model(rng)
    save_safetensors(a, tmp_path / "a", max_shard_bytes=500)
    save_safetensors(b, tmp_path / "b")
    cks = [open_checkpoint(tmp_path / "a"), open_checkpoint(tmp_path / "b")]
    streamed = {t.name: int(np.sum(_bits(t.arrays[0]) != _bits(t.arrays[1]))) for t in aligned(cks)}
    whole = {k: int(np.sum(_bits(a[k]) != _bits(b[k]))) for k in a}
    assert streamed == whole
    assert all(re.fullmatch(r"[\w.]+", n) for n in streamed)
