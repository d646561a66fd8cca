"""`ThreeGateCallback` in TRL's `GRPOTrainer` on a tiny random Llama (CPU): its records equal `compare`'s on bf16
checkpoints saved at the same steps, and its summary reaches the trainer's log."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from threegate.compare import CompareConfig, run_compare  # noqa: E402
from threegate.compare.jsonl import read_jsonl  # noqa: E402
from threegate.integrations import ThreeGateCallback, to_bf16  # noqa: E402

EVERY, STEPS = 2, 4


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for ch in "0123456789+= abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    ), len(vocab)


class _Saver(transformers.TrainerCallback):
    """Saves the bf16 state at step 0 and at each measured step, as `save_pretrained` in bf16 would."""

    def __init__(self, root):
        self.root = root

    def _save(self, model, step):
        from threegate.checkpoints import save_safetensors

        tensors = {n: to_bf16(p) for n, p in model.named_parameters()}
        save_safetensors(tensors, self.root / f"step{step}" / "model.safetensors")
        (self.root / f"step{step}" / "config.json").write_text(model.config.to_json_string())

    def on_train_begin(self, args, state, control, model=None, **kw):
        self._save(model, 0)

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step % EVERY == 0:
            self._save(model, state.global_step)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpo")
    tok, vocab = _tokenizer()
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        max_position_embeddings=64,
    )
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    rows = [{"prompt": f"{a}+{b}="} for a in range(4) for b in range(4)]

    def reward(completions, **_):
        return [float(c.count("1")) for c in completions]

    args = trl.GRPOConfig(
        output_dir=str(root / "out"),
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=6,
        learning_rate=5e-2,
        max_steps=STEPS,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
        beta=0.0,
    )
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tok,
        callbacks=[_Saver(root)],
    )
    cb = ThreeGateCallback(every=EVERY, k=4).attach(trainer)
    trainer.train()
    return root, cb, trainer


@pytest.mark.slow
def test_records_equal_compare_on_saved_checkpoints(trained, tmp_path):
    root, cb, _ = trained
    lines = read_jsonl(cb.path)
    steps = sorted({r["step"] for r in lines})
    assert steps == list(range(EVERY, STEPS + 1, EVERY))
    middle = "model.layers.1."
    for step in steps:
        mine = {r["name"]: r for r in lines if r["step"] == step and "name" in r}
        assert any(r["changed"] for r in mine.values())  # training moved the weights
        for spectral, out in ((True, tmp_path / f"s{step}"), (False, tmp_path / f"n{step}")):
            run_compare(
                CompareConfig(
                    str(root / "step0"),
                    (str(root / f"step{step}"),),
                    str(out),
                    k=4,
                    spectral=spectral,
                    include=middle.replace(".", r"\.") if spectral else None,
                    exclude=None if spectral else middle.replace(".", r"\."),
                )
            )
            for r in read_jsonl(out / "tensors.jsonl"):
                ours = mine[r["name"]]
                drop = {"tuned", "step"}
                assert {k: v for k, v in ours.items() if k not in drop} == {
                    k: v for k, v in r.items() if k not in drop
                }, r["name"]
        assert all(
            mine[n]["max_angle_u_deg"] is not None
            for n in mine
            if n.startswith(middle) and mine[n]["layer_type"] != "norm"
        )


@pytest.mark.slow
def test_summary_logged_through_the_trainer(trained):
    _, cb, trainer = trained
    logged = [h for h in trainer.state.log_history if "threegate/sparsity_linear" in h]
    assert len(logged) == STEPS // EVERY
    summaries = [r for r in read_jsonl(cb.path) if "summary" in r]
    assert [s["summary"]["sparsity_linear"] for s in summaries] == [
        h["threegate/sparsity_linear"] for h in logged
    ]
    s = summaries[-1]["summary"]
    assert 0 <= s["sparsity_linear"] < 1 and s["overlap_low_lift"] is not None
    assert s["overlap_principal_lift"] is not None and s["max_angle_deg"]
    assert set(s["sparsity_by_type"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    json.dumps(s)


def test_zero_update_changes_nothing(tmp_path):
    """Control: measured against itself, every tensor is unchanged."""
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(
        transformers.LlamaConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            vocab_size=32,
        )
    )
    cb = ThreeGateCallback(every=1, k=2, path=tmp_path / "x.jsonl")

    class _S:
        global_step, max_steps = 1, 1

    cb.on_train_begin(
        transformers.TrainingArguments(output_dir=str(tmp_path)), _S, None, model=model
    )
    recs = cb.measure(model, 1)
    assert recs and all(r["changed"] == 0 for r in recs)
    assert np.all([r["sparsity"] == 1.0 for r in recs])
