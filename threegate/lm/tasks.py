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
Both implement `Task`, the interface the trainer, the evaluation and the drivers use.
Shapes: `n` problems, `P` prompt tokens, `A` answer tokens (incl. EOS), `N` generated tokens.
"""

import re
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

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
    "Task",
    "TextTask",
    "decode_chars",
    "is_heldout",
    "parse_ranges",
    "parse_reply",
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


@runtime_checkable
class Task(Protocol):
    """A verifiable task: problems, their prompts and reference answers, a verifier, a held-out split.

    `CharTask` (pure jnp, `jax_native`) and `TextTask` (a tokenizer, host-side) implement it. Arrays may be jnp
    (jax-native tasks: the whole RL step jits) or NumPy (host tasks). Shapes: `n` problems, `P` prompt tokens,
    `A` reference tokens, `N` generated tokens.

    Attributes:
      name: the problem family, "addition" or "modadd".
      reward_correct, reward_wrong: the verifier's two reward values.
      eos_id: the end-of-sequence token (generation stops there; the verifier ignores what follows).
      answer_len: N, the number of tokens to generate per completion.
      jax_native: prompts, references and the verifier are pure jnp (jit-able); else they run on the host.
    """

    name: str
    reward_correct: float
    reward_wrong: float
    jax_native: bool

    @property
    def eos_id(self) -> int: ...

    @property
    def answer_len(self) -> int: ...

    def sample(self, key: Array, n: int) -> Problems:
        """`n` training problems (never a held-out one), deterministic in `key`."""
        ...

    def answer(self, p: Problems) -> Any:
        """The integer answer of each problem `[n]`."""
        ...

    def prompts(self, p: Problems) -> tuple[Any, Any]:
        """Prompt tokens `[n, P]` int32 and their mask `[n, P]` bool (left-padded)."""
        ...

    def references(self, p: Problems) -> tuple[Any, Any]:
        """Reference answers `[n, A]` int32 (the SFT targets) and their mask `[n, A]` bool."""
        ...

    def score(self, p: Problems, completion: Any, mask: Any = None) -> tuple[Any, Any]:
        """Reward `[n]` float32 and correctness `[n]` bool of completions `[n, N]`."""
        ...

    def heldout(self, p: Problems) -> np.ndarray:
        """Which problems belong to the held-out split `[n]` bool (never sampled for training)."""
        ...

    def eval_problems(self, n: int, seed: int = 0) -> Problems:
        """`n` distinct evaluation problems, from the held-out split where the task has one."""
        ...

    def strata(self, p: Problems) -> list[str] | None:
        """Each problem's stratum for per-stratum reports (e.g. its operand range), or None: not stratified."""
        ...

    def replies(self, completion: Any, mask: Any = None) -> list[str] | None:
        """Completions as text, up to the first EOS, or None: the task has no text form worth reporting."""
        ...


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

    def heldout(self, p: Problems) -> np.ndarray:
        """No problem is held out: training samples every problem (all False)."""
        return np.zeros(np.shape(p.a), bool)

    def eval_problems(self, n: int, seed: int = 0) -> Problems:
        """`n` distinct problems of `all_problems()` in a seeded random order (there is no held-out split)."""
        every = self.all_problems()
        total = int(every.a.shape[0])
        if n > total:
            raise ValueError(f"only {total} problems, asked for {n}")
        idx = np.random.default_rng(seed).permutation(total)[:n]
        return Problems(every.a[idx], every.b[idx])

    def strata(self, p: Problems) -> None:
        """Not stratified."""
        return None

    def replies(self, completion: ArrayLike, mask: ArrayLike | None = None) -> None:
        """No text form (`decode_chars` shows the tokens)."""
        return None

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
_EXPR = re.compile(r"-?\d+\s*\+\s*-?\d+")

#: A range of addition problems: (digits of a, digits of b); 1 digit is [0, 10), d ≥ 2 digits [10^(d-1), 10^d).
Range = tuple[int, int]


def parse_ranges(spec: str) -> tuple[Range, ...]:
    """`"1+1,2+1,2+2"` → `((1, 1), (2, 1), (2, 2))` (ValueError naming the bad part otherwise)."""
    out = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d)\s*\+\s*(\d)\s*", part)
        if m is None or not (1 <= int(m[1]) <= 6 and 1 <= int(m[2]) <= 6):
            raise ValueError(
                f"operand range {part!r}: expected DIGITS+DIGITS with 1..6 digits, e.g. 2+1"
            )
        out.append((int(m[1]), int(m[2])))
    if not out:
        raise ValueError("no operand range given")
    return tuple(out)


def _bounds(digits: int) -> tuple[int, int]:
    return (0, 10) if digits == 1 else (10 ** (digits - 1), 10**digits)


def is_heldout(
    a: ArrayLike, b: ArrayLike, fraction: float = 0.2, *, commuted: bool = True
) -> np.ndarray:
    """Deterministic train/eval split of problems $(a, b)$: a hash of the pair below `fraction` holds it out.

    Uses a multiplicative hash (Knuth) of $1000003\\,a + b$ modulo $2^{32}$, so the split does not depend on
    sampling order, seeds or the set of ranges; about `fraction` of every operand range is held out. With
    `commuted` (the default) the pair is unordered, $(\\min, \\max)$, so $a+b$ and $b+a$ fall on the same side: the
    model never trains on the commuted twin of a held-out problem. `commuted=False` is the first, ordered split
    (the SmolLM2 runs of `reports/smollm2/` used it; there 1+1 and 2+2 held-out problems have twins in training).
    """
    a, b = np.asarray(a, np.uint64), np.asarray(b, np.uint64)
    if commuted:
        a, b = np.minimum(a, b), np.maximum(a, b)
    key = (a * np.uint64(1_000_003) + b) & np.uint64(0xFFFFFFFF)
    h = (key * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    return h < np.uint64(int(fraction * 2**32))


def _host_rng(key: Array) -> np.random.Generator:
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())


def parse_reply(text: str) -> int | None:
    """The integer a reply gives as its answer, or None.

    The first non-empty line is the answer line: after its last "=", the first integer ("17 + 8 = 25." → 25);
    without "=", its last integer outside an echoed "a + b" ("25", "The sum is 25." → 25; "Compute 0 + 7." → None).
    Later lines (explanations) are ignored.
    """
    for line in text.splitlines():
        if line.strip():
            if "=" in line:
                found = _INT.findall(line.rsplit("=", 1)[1])
                return int(found[0]) if found else None
            found = _INT.findall(_EXPR.sub(" ", line))  # an echoed "a + b" is not an answer
            return int(found[-1]) if found else None
    return None


@dataclass(frozen=True, eq=False)
class TextTask:
    """Addition (or modular addition) in words, through a real tokenizer (host side).

    Two prompt styles:
      "compute" (default): "Compute 17 + 8. Reply with only the number." through the chat template; problems mix
        the operand `ranges` (each problem's range uniform among them). Verified by `parse_reply`.
      "qa": the lab's first prompt, "What is 17+8? Answer:", operands of `n_digits` digits (uniform on
        $[0, 10^{n\\_digits})$), verified by the last integer of the reply.

    A deterministic `heldout_fraction` of all problems (`is_heldout`) is never sampled for training; `eval_problems`
    draws the held-out evaluation set from it.

    Attributes:
      tokenizer: an object with `encode(str) -> list[int]`, `decode(list[int]) -> str`, an `eos_id`, and (when
        `chat` is true) `apply_chat_template(messages) -> str` (`threegate.lm.tokenizer.Tokenizer`).
      name, n_digits, modulus, reward_correct, reward_wrong: as in `CharTask`.
      prompt_len: P, prompts are left-padded (mask false) to this many tokens; longer prompts raise.
      max_new_tokens: N, tokens generated per completion.
      chat: wrap the question with the tokenizer's chat template.
      style: "compute" or "qa".
      ranges: operand ranges of the "compute" style, e.g. `((1, 1), (2, 1), (2, 2))`.
      heldout_fraction: share of problems reserved for evaluation.
      heldout_commuted: hold out $a+b$ and $b+a$ together (`is_heldout`).
    """

    tokenizer: Any
    name: TaskName = "addition"
    n_digits: int = 2
    modulus: int = 13
    reward_correct: float = 1.0
    reward_wrong: float = -1.0
    prompt_len: int = 48
    max_new_tokens: int = 16
    chat: bool = True
    style: Literal["compute", "qa"] = "compute"
    ranges: tuple[Range, ...] = ((1, 1), (2, 1), (2, 2))
    heldout_fraction: float = 0.2
    heldout_commuted: bool = True

    #: Host-side: prompts, references and the verifier run in NumPy/Python, outside jit.
    jax_native = False

    def __post_init__(self):
        if self.style not in ("compute", "qa"):
            raise ValueError(f"style must be 'compute' or 'qa', got {self.style!r}")
        if self.name not in ("addition", "modadd"):
            raise ValueError(f"task must be 'addition' or 'modadd', got {self.name!r}")
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_id)

    @property
    def answer_len(self) -> int:
        return self.max_new_tokens

    def _draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n problems from the task's distribution (all problems, held-out ones included)."""
        if self.style == "qa" or self.name == "modadd":
            hi = _operand_bound(self.name, self.n_digits, self.modulus)
            return rng.integers(0, hi, n), rng.integers(0, hi, n)
        which = rng.integers(0, len(self.ranges), n)
        a, b = np.empty(n, np.int64), np.empty(n, np.int64)
        for j, (da, db) in enumerate(self.ranges):
            sel = which == j
            a[sel] = rng.integers(*_bounds(da), int(sel.sum()))
            b[sel] = rng.integers(*_bounds(db), int(sel.sum()))
        return a, b

    def sample(self, key: Array, n: int) -> Problems:
        """n training problems (never a held-out one), deterministic in `key`."""
        rng = _host_rng(key)
        a_out, b_out, have = [], [], 0
        while have < n:
            a, b = self._draw(rng, 2 * (n - have) + 8)
            keep = ~is_heldout(a, b, self.heldout_fraction, commuted=self.heldout_commuted)
            a_out.append(a[keep])
            b_out.append(b[keep])
            have += int(keep.sum())
        a, b = np.concatenate(a_out)[:n], np.concatenate(b_out)[:n]
        return Problems(jnp.asarray(a, jnp.int32), jnp.asarray(b, jnp.int32))

    def eval_problems(self, n: int, seed: int = 0) -> Problems:
        """n distinct held-out problems, stratified over the ranges (as equal as the held-out pools allow)."""
        rng = np.random.default_rng(seed)
        if self.style == "qa" or self.name == "modadd":
            hi = _operand_bound(self.name, self.n_digits, self.modulus)
            pools = [np.stack(np.meshgrid(np.arange(hi), np.arange(hi), indexing="ij"), -1)]
        else:
            pools = []
            for da, db in self.ranges:
                ga, gb = np.meshgrid(
                    np.arange(*_bounds(da)), np.arange(*_bounds(db)), indexing="ij"
                )
                pools.append(np.stack([ga, gb], -1))
        pools = [p.reshape(-1, 2) for p in pools]
        pools = [
            rng.permutation(p[is_heldout(p[:, 0], p[:, 1], self.heldout_fraction)]) for p in pools
        ]
        if n > sum(len(p) for p in pools):
            raise ValueError(f"only {sum(len(p) for p in pools)} held-out problems, asked for {n}")
        take, left = [0] * len(pools), n
        while left:  # round-robin over the ranges until n are taken
            for j, p in enumerate(pools):
                if left and take[j] < len(p):
                    take[j] += 1
                    left -= 1
        chosen = np.concatenate([p[:k] for p, k in zip(pools, take, strict=True)])
        return Problems(jnp.asarray(chosen[:, 0], jnp.int32), jnp.asarray(chosen[:, 1], jnp.int32))

    def heldout(self, p: Problems) -> np.ndarray:
        """The deterministic held-out split (`is_heldout` with `heldout_fraction`, `heldout_commuted`)."""
        return is_heldout(p.a, p.b, self.heldout_fraction, commuted=self.heldout_commuted)

    def strata(self, p: Problems) -> list[str]:
        """The operand ranges (`range_of`)."""
        return self.range_of(p)

    def range_of(self, p: Problems) -> list[str]:
        """Each problem's operand range as "DA+DB" (digits of a, digits of b)."""
        return [
            f"{len(str(x))}+{len(str(y))}"
            for x, y in zip(np.asarray(p.a).tolist(), np.asarray(p.b).tolist(), strict=True)
        ]

    def answer(self, p: Problems) -> np.ndarray:
        s = np.asarray(p.a).astype(np.int64) + np.asarray(p.b)
        return s if self.name == "addition" else s % self.modulus

    def question(self, a: int, b: int) -> str:
        if self.style == "compute":
            expr = f"{a} + {b}" if self.name == "addition" else f"({a} + {b}) mod {self.modulus}"
            return f"Compute {expr}. Reply with only the number."
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
        """Reference completions (the SFT targets), right-padded to `max_new_tokens`: "<answer>" + EOS for the
        chat style (what an answer-only reply looks like), " <answer>" + EOS for "qa"."""
        ans = self.answer(p)
        lead = "" if self.style == "compute" else " "
        tokens = np.full((ans.shape[0], self.max_new_tokens), self.eos_id, np.int32)
        mask = np.zeros(tokens.shape, bool)
        for i, v in enumerate(ans.tolist()):
            ids = [*self.tokenizer.encode(f"{lead}{v}"), self.eos_id][: self.max_new_tokens]
            tokens[i, : len(ids)] = ids
            mask[i, : len(ids)] = True
        return tokens, mask

    def replies(self, completion: ArrayLike, mask: ArrayLike | None = None) -> list[str]:
        """Decoded completions, up to (not including) the first EOS."""
        comp = np.asarray(completion)
        out = []
        for i, row in enumerate(comp):
            ids = row.tolist() if mask is None else row[np.asarray(mask)[i]].tolist()
            if self.eos_id in ids:
                ids = ids[: ids.index(self.eos_id)]
            out.append(self.tokenizer.decode(ids))
        return out

    def parse(self, completion: ArrayLike, mask: ArrayLike | None = None) -> list[int | None]:
        """The answer of each completion: `parse_reply` ("compute"), the last integer ("qa"), or None.

        A completion cut off by `max_new_tokens` (no EOS) right after a digit has that last number dropped: a
        number cut in the middle ("125" cut to "12") is not an answer.
        """
        out: list[int | None] = []
        comp = np.asarray(completion)
        for i, text in enumerate(self.replies(completion, mask)):
            ids = comp[i] if mask is None else comp[i][np.asarray(mask)[i]]
            if self.eos_id not in ids.tolist() and text[-1:].isdigit():
                text = text.rstrip(
                    "0123456789"
                )  # cut off inside a number: that number is not an answer
            if self.style == "compute":
                out.append(parse_reply(text))
            else:
                found = _INT.findall(text)
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
