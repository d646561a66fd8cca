"""Probes of a fine-tuned policy against its base: the KL on the task both ways, and forgetting (issue 16).

* `sequence_kl(p, q, …)`: the exact token-wise $\\mathrm{KL}(p\\|q)=\\sum_v p_v\\log(p_v/q_v)$ over the whole
  vocabulary at every position of given completions (`threegate.lm.logprobs.token_stats`, chunked), summed per
  sequence. The **forward** KL $\\mathrm{KL}(\\pi_0\\|\\pi)$ along completions sampled from the base $\\pi_0$ is
  RL's Razor's predictor of forgetting (arXiv 2509.04259, their eq. 1); the **reverse** KL
  $\\mathrm{KL}(\\pi\\|\\pi_0)$ along the policy's own samples is what a KL-regularised RL objective penalises
  and what the trainer logs as `kl_exact` (paper eq. 3.1's anchor). Both at the sampling temperature.
* `text_nll`: nats per token of a general English text (`general_text`) under the policy at temperature 1,
  in fixed windows — the language-modelling half of forgetting.
* `ClozeProbe`: the unrelated verifiable probe — two-way cloze items of general knowledge and English
  morphology — on which the base model is accurate, so a drop is forgetting.

Every per-token average is the ratio estimator over sequences or windows with `threegate.stats.ratio_ci`.
The exact KL is computed in float32 as $\\sum_v p_v(z_v - z^{ref}_v) - \\mathrm{lse}(z) + \\mathrm{lse}(z^{ref})$:
for two nearly equal policies its rounding (≲ 1e-6 nats/token on SmolLM2's logits) can leave a value slightly
below 0; it is reported as computed, not clipped.
"""

import hashlib
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from threegate.lm.config import LlamaConfig
from threegate.lm.logprobs import completion_hidden, token_logprobs, token_stats
from threegate.lm.model import hidden_states, unembedding
from threegate.stats import ratio_ci

__all__ = [
    "CLOZE_FILE",
    "ClozeProbe",
    "Samples",
    "general_text",
    "kl_record",
    "sample_completions",
    "sequence_kl",
    "text_nll",
]


class Samples(dict):
    """Completions of a set of prompts: `prompts`, `prompt_mask`, `completion`, `completion_mask` (NumPy)."""


def sample_completions(
    params: dict,
    mcfg: LlamaConfig,
    prompts: np.ndarray,
    prompt_mask: np.ndarray,
    key: jax.Array,
    *,
    group: int,
    max_new_tokens: int,
    temperature: float,
    eos_id: int,
) -> Samples:
    """`group` completions per prompt (rows prompt-major) sampled at `temperature`."""
    from threegate.lm.sample import generate

    p = np.repeat(np.asarray(prompts), group, axis=0)
    m = np.repeat(np.asarray(prompt_mask), group, axis=0)
    out = generate(
        params,
        mcfg,
        p,
        m,
        key,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        eos_id=eos_id,
        group=group,
    )
    return Samples(
        prompts=p,
        prompt_mask=m,
        completion=np.asarray(out.tokens),
        completion_mask=np.asarray(out.mask),
    )


@partial(jax.jit, static_argnames=("mcfg", "temperature"))
def _token_kl(p_params, q_params, mcfg, prompts, pmask, completion, cmask, temperature):
    hp = completion_hidden(p_params, mcfg, prompts, pmask, completion, cmask)
    hq = completion_hidden(q_params, mcfg, prompts, pmask, completion, cmask)
    kl = token_stats(
        hp,
        unembedding(p_params, mcfg),
        completion,
        hq,
        unembedding(q_params, mcfg),
        temperature=temperature,
    )["kl_exact"]
    return jnp.where(cmask, kl, 0.0)


def sequence_kl(
    p_params: dict,
    q_params: dict,
    mcfg: LlamaConfig,
    samples: Samples,
    *,
    temperature: float,
    batch: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Per sequence, the sum over its completion tokens of the exact $\\mathrm{KL}(p\\|q)$ of the next-token
    distributions (both at `temperature`), and its token count: two float64 `[b]` arrays.

    Rows go in batches of `batch` (the last padded to that compiled shape with masked rows).
    """
    arrays = [
        np.asarray(samples[k]) for k in ("prompts", "prompt_mask", "completion", "completion_mask")
    ]
    n = arrays[0].shape[0]
    batch = max(1, min(batch, n))
    sums, counts = [], []
    for s in range(0, n, batch):
        part = [a[s : s + batch] for a in arrays]
        rows = part[0].shape[0]
        if rows < batch:
            part = [np.concatenate([a, np.repeat(a[:1], batch - rows, 0)]) for a in part]
        kl = _token_kl(
            p_params,
            q_params,
            mcfg,
            *(jnp.asarray(a) for a in part),
            temperature=float(temperature),
        )
        kl = np.asarray(kl, np.float64)[:rows]
        sums.append(kl.sum(axis=1))
        counts.append(part[3][:rows].sum(axis=1).astype(np.float64))
    return np.concatenate(sums), np.concatenate(counts)


def kl_record(sums: np.ndarray, counts: np.ndarray) -> dict[str, Any]:
    """`{"per_token", "ci", "sequences", "tokens"}` of per-sequence KL sums (`sequence_kl`)."""
    c = ratio_ci(sums, counts)
    return {
        "per_token": c.mean,
        "ci": [c.lo, c.hi],
        "sequences": int(np.sum(counts > 0)),
        "tokens": int(np.sum(counts)),
    }


@partial(jax.jit, static_argnames=("mcfg",))
def _window_nll(params, mcfg, tokens):
    h = hidden_states(params, mcfg, tokens)
    lp = token_logprobs(h[:, :-1], unembedding(params, mcfg), tokens[:, 1:], temperature=1.0)
    return -jnp.sum(lp, axis=1)


def text_nll(
    params: dict, mcfg: LlamaConfig, ids: ArrayLike, *, window: int = 512, batch: int = 8
) -> dict[str, Any]:
    """Nats per token of the token stream `ids` under `params` at temperature 1, in consecutive windows of
    `window` tokens (each window a fresh sequence; its first token is context only; a last partial window
    is dropped), with the ratio estimator's interval over windows.

    Returns `{"nats_per_token", "ci", "windows", "tokens"}` (tokens predicted).
    """
    ids = np.asarray(ids, np.int32).ravel()
    nw = ids.size // window
    if nw < 2:
        raise ValueError(f"need at least two windows of {window} tokens, got {ids.size} tokens")
    w = ids[: nw * window].reshape(nw, window)
    batch = max(1, min(batch, nw))
    sums = []
    for s in range(0, nw, batch):
        part = w[s : s + batch]
        rows = part.shape[0]
        if rows < batch:
            part = np.concatenate([part, np.repeat(part[:1], batch - rows, 0)])
        sums.append(np.asarray(_window_nll(params, mcfg, jnp.asarray(part)), np.float64)[:rows])
    sums = np.concatenate(sums)
    c = ratio_ci(sums, np.full(nw, window - 1.0))
    return {
        "nats_per_token": c.mean,
        "ci": [c.lo, c.hi],
        "windows": nw,
        "tokens": nw * (window - 1),
    }


def general_text(tokenizer: Any, n_tokens: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The first `n_tokens` tokens of a general English text and where it came from.

    The text is the Python documentation's topic pages shipped with the interpreter (`pydoc_data.topics`,
    the help texts of the language reference), in sorted topic order: English prose that is on every
    machine without a download and that no run of the lab ever trains on (they train on arithmetic prompts
    only). Its digest is recorded, so two measurements on different interpreters can be told apart.

    Raises:
      ValueError: the text has fewer than `n_tokens` tokens.
    """
    import sys
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k].strip() for k in sorted(topics))
    ids = np.asarray(tokenizer.encode(text), np.int32)
    if ids.size < n_tokens:
        raise ValueError(f"the general text has {ids.size} tokens, fewer than {n_tokens}")
    ids = ids[:n_tokens]
    source = {
        "source": f"pydoc_data.topics (Python {sys.version.split()[0]}), topics in sorted order",
        "tokens": int(n_tokens),
        "sha256": hashlib.sha256(ids.tobytes()).hexdigest(),
    }
    return ids, source


#: The cloze items (`ClozeProbe`), shipped with the package.
CLOZE_FILE = Path(__file__).parent / "data" / "cloze_probe.json"


@partial(jax.jit, static_argnames=("mcfg",))
def _sequence_logprob(params, mcfg, prompts, pmask, completion, cmask):
    h = completion_hidden(params, mcfg, prompts, pmask, completion, cmask)
    lp = token_logprobs(h, unembedding(params, mcfg), completion, temperature=1.0)
    return jnp.sum(jnp.where(cmask, lp, 0.0), axis=1)


class ClozeProbe:
    """The unrelated verifiable probe of forgetting: two-way cloze items of general knowledge and English
    morphology (capitals, opposites, irregular past tenses and plurals, animal sounds; `CLOZE_FILE`).

    Item $i$ is a prompt $x_i$ ("The capital of France is"), its right continuation $y_i$ (" Paris") and a
    wrong one $\tilde y_i$ (the right continuation of the next item of its family, " Berlin"); the policy gets
    it right when $\\log\\pi(y_i\\mid x_i) > \\log\\pi(\tilde y_i\\mid x_i)$ (sums over the continuation's
    tokens, temperature 1, plain text without the chat template). Chance is ½.

    Why this probe: it is exact to verify, shares nothing with arithmetic, and a 135M instruct model is good
    at it (its base accuracy is recorded beside every checkpoint's), while a generation probe through the
    chat template (e.g. "repeat this word") is not: SmolLM2-135M-Instruct repeats a word correctly under 5%
    of the time, too low for a drop to mean anything. Scoring by likelihood also makes it cheap (one forward
    pass per continuation) and free of sampling noise.
    """

    def __init__(self, tokenizer: Any, path: "str | Path" = CLOZE_FILE, prompt_len: int = 16):
        import json

        fams = json.loads(Path(path).read_text())["families"]
        self.items: list[tuple[str, str, str, str]] = []
        for fam, spec in fams.items():
            pairs = spec["items"]
            for j, (x, y) in enumerate(pairs):
                wrong = pairs[(j + 1) % len(pairs)][1]
                self.items.append((fam, spec["template"].format(x=x), y, wrong))
        self.tokenizer, self.prompt_len = tokenizer, prompt_len

    def _batch(self, which: int) -> Samples:
        n = len(self.items)
        conts = [list(self.tokenizer.encode(" " + it[2 + which])) for it in self.items]
        width = max(len(c) for c in conts)
        prompts = np.zeros((n, self.prompt_len), np.int32)
        pmask = np.zeros(prompts.shape, bool)
        comp = np.zeros((n, width), np.int32)
        cmask = np.zeros(comp.shape, bool)
        for i, (it, c) in enumerate(zip(self.items, conts, strict=True)):
            ids = list(self.tokenizer.encode(it[1]))
            if len(ids) > self.prompt_len:
                raise ValueError(f"cloze prompt {it[1]!r} exceeds prompt_len={self.prompt_len}")
            prompts[i, self.prompt_len - len(ids) :] = ids
            pmask[i, self.prompt_len - len(ids) :] = True
            comp[i, : len(c)] = c
            cmask[i, : len(c)] = True
        return Samples(prompts=prompts, prompt_mask=pmask, completion=comp, completion_mask=cmask)

    def margins(self, params: dict, mcfg: LlamaConfig) -> np.ndarray:
        """$\\log\\pi(y_i\\mid x_i) - \\log\\pi(\tilde y_i\\mid x_i)$ per item, float64 `[n]`."""
        out = []
        for which in (0, 1):
            b = self._batch(which)
            out.append(
                np.asarray(
                    _sequence_logprob(
                        params,
                        mcfg,
                        *(
                            jnp.asarray(b[k])
                            for k in ("prompts", "prompt_mask", "completion", "completion_mask")
                        ),
                    ),
                    np.float64,
                )
            )
        return out[0] - out[1]

    def record(self, params: dict, mcfg: LlamaConfig) -> dict[str, Any]:
        """`{"accuracy", "ci" (Wilson), "n", "margin" (mean, nats), "per_family", "correct" (0/1 per item)}`."""
        from threegate.stats import wilson_ci

        m = self.margins(params, mcfg)
        right = m > 0
        fams = [it[0] for it in self.items]
        per = {}
        for f in dict.fromkeys(fams):
            sel = np.asarray([x == f for x in fams])
            per[f] = float(right[sel].mean())
        return {
            "accuracy": float(right.mean()),
            "ci": list(wilson_ci(int(right.sum()), int(right.size))),
            "n": int(right.size),
            "margin": float(m.mean()),
            "per_family": per,
            "correct": right.astype(int).tolist(),
        }
