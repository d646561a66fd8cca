"""`threegate compare ... --out DIR && threegate report DIR` for a MoE checkpoint and a training run: the page shows
the warnings, per-type / per-layer / per-expert tables and the curves over steps."""

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from threegate.checkpoints import open_checkpoint, save_safetensors  # noqa: E402
from threegate.cli import main  # noqa: E402
from threegate.integrations import ThreeGateCallback  # noqa: E402


def _moved(w, rng, frac):
    uint = np.dtype(f"u{w.dtype.itemsize}")
    bits = w.view(uint).copy().ravel()
    idx = rng.choice(bits.size, int(frac * bits.size), replace=False)
    bits[idx] += np.ones(idx.size, uint)
    return bits.reshape(w.shape).view(w.dtype)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("page")
    torch.manual_seed(0)
    cfg = transformers.MixtralConfig(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=64,
        num_local_experts=3,
        num_experts_per_tok=2,
    )
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(root / "base")
    rng = np.random.default_rng(0)
    with open_checkpoint(
        root / "base"
    ) as c:  # expert 1 untouched; the rest 30% moved; one unknown matrix
        t = {n: c.load(n) if ".experts.1." in n else _moved(c.load(n), rng, 0.3) for n in c.names()}
    t["model.layers.0.extra_adapter.weight"] = np.ones((4, 4), t["lm_head.weight"].dtype)
    save_safetensors(t, root / "tuned" / "model.safetensors")
    base = (
        {n: a for n, a in open_checkpoint(root / "base").__enter__().__iter__()} if False else None
    )
    del base
    with open_checkpoint(root / "base") as c:
        b = {n: c.load(n) for n in c.names()}
    b["model.layers.0.extra_adapter.weight"] = np.ones((4, 4), t["lm_head.weight"].dtype)
    save_safetensors(b, root / "base2" / "model.safetensors")
    (root / "base2" / "config.json").write_text((root / "base" / "config.json").read_text())
    out = root / "results"
    assert (
        main(
            [
                "compare",
                str(root / "base2"),
                str(root / "tuned"),
                "--out",
                str(out / "cmp"),
                "--k",
                "4",
            ]
        )
        == 0
    )
    # a training run's JSONL: the callback measuring a model moved by hand at steps 1 and 2
    tiny = transformers.AutoModelForCausalLM.from_config(
        transformers.LlamaConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            vocab_size=32,
        )
    )
    cb = ThreeGateCallback(every=1, k=2, path=out / "train" / "threegate_steps.jsonl")

    class S:
        global_step, max_steps = 0, 2

    cb.on_train_begin(transformers.TrainingArguments(output_dir=str(root)), S, None, model=tiny)
    for step in (1, 2):
        with torch.no_grad():
            for p in tiny.parameters():
                p.add_(0.05 * torch.randn_like(p) * (torch.rand_like(p) < 0.2 * step))
        S.global_step = step
        cb.on_step_end(None, S, None, model=tiny)
    cb.on_train_end(None, S, None)
    assert main(["report", str(out)]) == 0
    return (out / "report.html").read_text()


def test_page_shows_warnings_and_tables(page):
    assert (
        "Warnings" in page
        and "model.layers.0.extra_adapter.weight" in page
        and "typed other" in page
    )
    for label in (
        "all matrices",
        "by layer type",
        "per layer (linear matrices)",
        "gate_proj",
        "router",
    ):
        assert label in page, label
    grid = page[page.index(": experts</h4>") :]
    grid = grid[: grid.index("</table>")]
    cells = re.findall(r"<td class='num'>([^<]*)</td>", grid)
    assert len(cells) == 2 * 3  # two layers x three experts
    assert float(cells[1]) == float(cells[4]) == 1.0  # expert 1 untouched in both layers
    assert all(float(c) < 0.8 for i, c in enumerate(cells) if i % 3 != 1)


def test_page_draws_the_training_curves(page):
    card = page[page.index("Training run against step 0") :]
    assert card.count("<svg") == 2 and "polyline" in card
    rows = re.findall(r"<tr><td>(\d+)</td>", card)
    assert rows[:2] == ["1", "2"]
