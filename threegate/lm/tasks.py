"""Verifiable synthetic tasks for the RL lab: multi-digit addition and modular addition.

Two front ends share one problem sampler (`a`, `b` drawn with `jax.random`):

* `CharTask`: a 16-token character vocabulary for tiny from-scratch models (`PAD BOS EOS 0-9 + = %`). Prompts have
  a fixed length, answers a fixed number of digits (zero-padded) followed by EOS, so everything (prompts, reference
  answers, the exact-match verifier) is pure `jnp` and jit-able:
  addition `BOS a₁..aₙ + b₁..bₙ =` → `s₀..sₙ EOS` (n+1 digits of a+b);
  modadd `BOS a + b % p =` → `(a+b) mod p` in `len(str(p))` digits, every number zero-padded to that width.
* `TextTask`: the same problems in words for a real tokenizer (SmolLM2): "What is 23+45? Answer:" (optionally
  through the chat template), left-padded to a fixed prompt length; the verifier decodes the completion and
  parses its first integer. Host-side (NumPy/Python), so it runs outside jit.

Rewards: `reward_correct` for an exact match, `reward_wrong` otherwise (±1 as in the paper's runs, App. C.1, or 1/0).
Shapes: `n` problems, `P` prompt tokens, `A` answer tokens (incl. EOS), `N` generated tokens.
"""

import re
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, Bool, Float, Int

__all__ = [
    "BOS",
    "CHAR_VOCAB",
    "EOS",
    "PAD",
    "CharTask",
    "Problems",
    "TextTask",
    "decode_chars",
    "sample_problems",
]

PAD, BOS, EOS = 0, 1, 2
_DIGIT0, _PLUS, _EQ, _MOD = 3, 13, 14, 15
#: Size of the character vocabulary: PAD, BOS, EOS, ten digits, '+', '=', '%'.
CHAR_VOCAB = 16
_CHARS = {PAD: "_", BOS: "^", EOS: "$", _PLUS: "+", _EQ: "=", _MOD: "%"} | {
    _DIGIT0 + d: str(d) for d in range(10)
}

TaskName = Literal["addition", "modadd"]


class Problems(NamedTuple):
    """A batch of problems $a \\circ b$: operands `[n]` int32."""

    a: Int[Array, " n"]
    b: Int[Array, " n"]


def _operand_bound(name: str, n_digits: int, modulus: int) -> int:
    return 10**n_digits if name == "addition" else modulus


def sample_problems(
    name: TaskName, key: Array, n: int, n_digits: int = 2, modulus: int = 13
) -> Problems:
    """Operands uniform on $[0, 10^{n\\_digits})$ (addition) or $[0, p)$ (modadd)."""
    hi = _operand_bound(name, n_digits, modulus)
    ka, kb = jax.random.split(key)
    return Problems(
        jax.random.randint(ka, (n,), 0, hi, dtype=jnp.int32),
        jax.random.randint(kb, (n,), 0, hi, dtype=jnp.int32),
    )


def _digits(x: Int[Array, " n"], width: int) -> Int[Array, "n w"]:
    """Decimal digits of `x`, most significant first, zero-padded to `width` (as token ids)."""
    powers = jnp.asarray([10 ** (width - 1 - i) for i in range(width)], jnp.int32)
    return (x[:, None] // powers[None, :]) % 10 + _DIGIT0


@dataclass(frozen=True)
class CharTask:
    """A character-level verifiable task for tiny models (hashable: usable as a static jit argument).

    Attributes:
      name: "addition" (n-digit + n-digit) or "modadd" ($(a+b)\\bmod p$, $a,b\\in[0,p)$).
      n_digits: operand width for addition.
      modulus: $p$ for modadd ($\\ge 2$).
      reward_correct, reward_wrong: the verifier's two reward values.
    """

    name: TaskName = "modadd"
    n_digits: int = 2
    modulus: int = 13
    reward_correct: float = 1.0
    reward_wrong: float = -1.0

    def __post_init__(self):
        if self.name not in ("addition", "modadd"):
            raise ValueError(f"task must be 'addition' or 'modadd', got {self.name!r}")
        if self.n_digits < 1 or self.modulus < 2:
            raise ValueError(
                f"need n_digits >= 1 and modulus >= 2, got {self.n_digits}, {self.modulus}"
            )

    vocab_size = CHAR_VOCAB
    eos_id = EOS
    pad_id = PAD
    #: Prompts, references and the verifier are pure jnp (the whole RL step can be jitted).
    jax_native = True

    @property
    def width(self) -> int:
        """Digits per operand."""
        return self.n_digits if self.name == "addition" else len(str(self.modulus))

    @property
    def prompt_len(self) -> int:
        """P: BOS, two operands, '+', '=' (and '% p' for modadd)."""
        extra = 1 + self.width if self.name == "modadd" else 0
        return 3 + 2 * self.width + extra

    @property
    def answer_digits(self) -> int:
        return self.n_digits + 1 if self.name == "addition" else self.width

    @property
    def answer_len(self) -> int:
        """A: answer digits plus EOS; also the number of tokens to generate."""
        return self.answer_digits + 1

    def sample(self, key: Array, n: int) -> Problems:
        return sample_problems(self.name, key, n, self.n_digits, self.modulus)

    def all_problems(self) -> Problems:
        """Every problem once (for small operand ranges), in lexicographic order."""
        hi = _operand_bound(self.name, self.n_digits, self.modulus)
        a, b = np.meshgrid(
            np.arange(hi, dtype=np.int32), np.arange(hi, dtype=np.int32), indexing="ij"
        )
        return Problems(jnp.asarray(a.ravel()), jnp.asarray(b.ravel()))

    def answer(self, p: Problems) -> Int[Array, " n"]:
        """The integer answer $a+b$ or $(a+b)\\bmod p$."""
        s = p.a + p.b
        return s if self.name == "addition" else s % self.modulus

    def prompts(self, p: Problems) -> tuple[Int[Array, "n P"], Bool[Array, "n P"]]:
        """Prompt tokens `[n, P]` and their (all-true) mask."""
        n = p.a.shape[0]
        col = lambda t: jnp.full((n, 1), t, jnp.int32)  # noqa: E731
        parts = [col(BOS), _digits(p.a, self.width), col(_PLUS), _digits(p.b, self.width)]
        if self.name == "modadd":
            parts += [col(_MOD), _digits(jnp.full((n,), self.modulus, jnp.int32), self.width)]
        tokens = jnp.concatenate([*parts, col(_EQ)], axis=1)
        return tokens, jnp.ones(tokens.shape, jnp.bool_)

    def references(self, p: Problems) -> tuple[Int[Array, "n A"], Bool[Array, "n A"]]:
        """Reference answers `[n, A]`: zero-padded digits then EOS; mask all true."""
        n = p.a.shape[0]
        digits = _digits(self.answer(p), self.answer_digits)
        tokens = jnp.concatenate([digits, jnp.full((n, 1), EOS, jnp.int32)], axis=1)
        return tokens, jnp.ones(tokens.shape, jnp.bool_)

    def score(
        self,
        p: Problems,
        completion: Int[ArrayLike, "n N"],
        mask: Bool[ArrayLike, "n N"] | None = None,
    ) -> tuple[Float[Array, " n"], Bool[Array, " n"]]:
        """Exact-match verifier: correct iff the first `A` generated tokens are the reference answer (digits then
        EOS). `mask` is accepted for interface symmetry; tokens after EOS are ignored either way.

        Returns:
          (reward `[n]` float32, correct `[n]` bool).
        """
        completion = jnp.asarray(completion)
        ref, _ = self.references(p)
        if completion.ndim != 2 or completion.shape[1] < ref.shape[1]:
            raise ValueError(f"completion must be [n, N>={ref.shape[1]}], got {completion.shape}")
        correct = jnp.all(completion[:, : ref.shape[1]] == ref, axis=1)
        reward = jnp.where(correct, self.reward_correct, self.reward_wrong).astype(jnp.float32)
        return reward, correct


def decode_chars(tokens: ArrayLike) -> str:
    """Human-readable string of a 1-D char-vocabulary token sequence (`^` BOS, `$` EOS, `_` PAD)."""
    return "".join(_CHARS.get(int(t), "?") for t in np.asarray(tokens).ravel())


_INT = re.compile(r"-?\d+")


@dataclass(frozen=True, eq=False)
class TextTask:
    """The same problems in words, through a real tokenizer (host side).

    Attributes:
      tokenizer: an object with `encode(str) -> list[int]`, `decode(list[int]) -> str`, an `eos_id`, and (when
        `chat` is true) `apply_chat_template(messages) -> str` (E1's `threegate.lm.tokenizer.Tokenizer`).
      name, n_digits, modulus, reward_correct, reward_wrong: as in `CharTask`.
      prompt_len: P, prompts are left-padded (mask false) to this many tokens; longer prompts raise.
      max_new_tokens: N, tokens generated per completion.
      chat: wrap the question with the tokenizer's chat template.
    """

    tokenizer: Any
    name: TaskName = "addition"
    n_digits: int = 2
    modulus: int = 13
    reward_correct: float = 1.0
    reward_wrong: float = -1.0
    prompt_len: int = 48
    max_new_tokens: int = 8
    chat: bool = True

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_id)

    @property
    def answer_len(self) -> int:
        return self.max_new_tokens

    def sample(self, key: Array, n: int) -> Problems:
        return sample_problems(self.name, key, n, self.n_digits, self.modulus)

    def answer(self, p: Problems) -> np.ndarray:
        s = np.asarray(p.a).astype(np.int64) + np.asarray(p.b)
        return s if self.name == "addition" else s % self.modulus

    def question(self, a: int, b: int) -> str:
        if self.name == "addition":
            return f"What is {a}+{b}? Answer:"
        return f"What is ({a}+{b}) mod {self.modulus}? Answer:"

    def prompts(self, p: Problems) -> tuple[np.ndarray, np.ndarray]:
        """Left-padded prompt tokens `[n, P]` int32 and mask `[n, P]` bool."""
        a, b = np.asarray(p.a), np.asarray(p.b)
        tokens = np.full((a.shape[0], self.prompt_len), self.eos_id, np.int32)
        mask = np.zeros(tokens.shape, bool)
        for i, (x, y) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
            text = self.question(x, y)
            if self.chat:
                text = self.tokenizer.apply_chat_template([{"role": "user", "content": text}])
            ids = list(self.tokenizer.encode(text))
            if len(ids) > self.prompt_len:
                raise ValueError(
                    f"prompt of {len(ids)} tokens exceeds prompt_len={self.prompt_len}"
                )
            tokens[i, self.prompt_len - len(ids) :] = ids
            mask[i, self.prompt_len - len(ids) :] = True
        return tokens, mask

    def references(self, p: Problems) -> tuple[np.ndarray, np.ndarray]:
        """Reference completions " <answer>" + EOS, right-padded to `max_new_tokens`."""
        ans = self.answer(p)
        tokens = np.full((ans.shape[0], self.max_new_tokens), self.eos_id, np.int32)
        mask = np.zeros(tokens.shape, bool)
        for i, v in enumerate(ans.tolist()):
            ids = [*self.tokenizer.encode(f" {v}"), self.eos_id][: self.max_new_tokens]
            tokens[i, : len(ids)] = ids
            mask[i, : len(ids)] = True
        return tokens, mask

    def parse(self, completion: ArrayLike, mask: ArrayLike | None = None) -> list[int | None]:
        """The last integer in each decoded completion (up to EOS), or None.

        The last, not the first: "23+45=68" and "The answer is 68" both parse to 68; a completion cut off by
        `max_new_tokens` mid-number parses to its truncated last number (and is then wrong).
        """
        comp = np.asarray(completion)
        out: list[int | None] = []
        for i, row in enumerate(comp):
            ids = row.tolist() if mask is None else row[np.asarray(mask)[i]].tolist()
            if self.eos_id in ids:
                ids = ids[: ids.index(self.eos_id)]
            found = _INT.findall(self.tokenizer.decode(ids))
            out.append(int(found[-1]) if found else None)
        return out

    def score(
        self, p: Problems, completion: ArrayLike, mask: ArrayLike | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Reward `[n]` float32 and correctness `[n]` bool: the parsed integer equals the answer."""
        parsed = self.parse(completion, mask)
        correct = np.asarray(
            [v is not None and v == int(t) for v, t in zip(parsed, self.answer(p), strict=True)]
        )
        reward = np.where(correct, self.reward_correct, self.reward_wrong).astype(np.float32)
        return reward, correct
