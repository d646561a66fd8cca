"""One training loop for the RL lab: SFT and RLVR (GRPO, DAPO, REINFORCE++) on a JAX Llama, in mixed precision.

Mixed precision (what the paper's verl/FSDP runs did, App. C.1): the optimizer holds float32 MASTER weights and
float32 Adam moments; the model is STORED in bf16 and every forward pass (rollouts, log-probs, losses) sees
$\\theta_{bf16}=\\mathrm{bf16}(\\theta_{master})$. Each gradient update computes $g=\\nabla L$ in float32 at the stored
point ($\\nabla_\\theta L(\\theta)|_{\\theta=\\mathrm{f32}(\\theta_{bf16})}$), applies clipping and AdamW to the master
in float32, then re-rounds: $\\theta_{bf16}\\leftarrow\\mathrm{bf16}(\\theta_{master})$ (round to nearest even). So the
$\\|\\Delta W\\|$ *realised in bf16* — what checkpoints hold and what Gate III (Cor 3.6) acts on — is the master
drift filtered by rounding: a coordinate whose accumulated master change stays below about half a bf16 ULP keeps
its stored bits, and the logged `sparsity` counts exactly those (bitwise, vs step 0).

Sparse fine-tuning: a fixed boolean mask per linear weight (M8/M9 masks of `threegate.masks`, built from $W_0$)
zeroes the gradient AND the update, AdamW's decoupled weight decay included, so masked entries of both the master
and the stored bf16 weights stay bitwise unchanged. Adapters (`threegate.lm.adapters`): the master holds the LoRA
/ PiSSA factors, the base is frozen, and forward passes use the merged weights.

Shapes: `P` prompts per step, `G` completions per prompt, `B = P·G` sequences (prompt-major), prompt length `T`,
`N` generated tokens. The step functions are pure (`make_train`), jitted once; `fit` is the host driver that adds
logging, checkpoints and (for the SmolLM2 text task) the host-side verifier.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray, PyTree, Shaped

from threegate.lm.adapters import AdapterConfig, merge
from threegate.lm.algorithms import ALGORITHMS, Algorithm, LossSettings, LossTerms
from threegate.lm.batch import Batch, sample_batch, select_groups
from threegate.lm.config import LlamaConfig
from threegate.lm.drift import drift_efficiency
from threegate.lm.logprobs import completion_hidden, token_logprobs, token_stats
from threegate.lm.losses import Normalization, masked_mean
from threegate.lm.model import unembedding
from threegate.lm.sample import GenerateOutput, generate
from threegate.lm.sparse import build_masks, is_linear_name, unchanged_fraction
from threegate.lm.tasks import Task

__all__ = [
    "ALGOS",
    "MASK_KINDS",
    "STORAGE_DTYPES",
    "STORED_DTYPE",
    "Batch",
    "Frozen",
    "TrainConfig",
    "TrainFns",
    "TrainState",
    "build_masks",
    "host_metrics",
    "is_linear_name",
    "make_train",
    "select_groups",
    "to_stored",
    "train_seeds",
]

#: The algorithms' names (`threegate.lm.algorithms.ALGORITHMS`).
ALGOS = tuple(ALGORITHMS)
MASK_KINDS = ("principal", "nonprincipal", "low", "safe", "random")
STORED_DTYPE = jnp.bfloat16
#: `TrainConfig.storage` → the dtype of the stored weights.
STORAGE_DTYPES = {"bfloat16": jnp.bfloat16, "float32": jnp.float32}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run (hashable, so it is a static jit argument).

    Attributes:
      algo: a name in `ALGOS` (`threegate.lm.algorithms`): "sft" (cross-entropy on reference answers), "grpo",
        "dapo", "reinforce" (REINFORCE++) or "rft" (on-policy SFT: cross-entropy on the correct samples).
      steps: outer steps (one rollout batch each).
      lr, b1, b2, adam_eps, weight_decay: AdamW on the float32 master (paper: constant lr, β=(0.9, 0.999)).
      max_grad_norm: global-norm gradient clip (None = off; verl's default is 1.0).
      prompts_per_step: P; SFT uses P problems per step (and G = 1 monitoring sample each).
      group_size: G completions per prompt (RL; ≥ 2).
      epochs, minibatches: PPO inner loop, `epochs·minibatches` gradient updates per step over minibatches of
        `P/minibatches` prompts (paper: 4 updates per step).
      eps_low, eps_high: clip range; `eps_high=None` means 0.28 for DAPO (clip-higher) and `eps_low` otherwise.
      beta, kl_estimator: reference-KL penalty $\\beta$ and its per-token estimator ("k1" or "k3").
      temperature, top_p: rollout sampling (log-probs use the same temperature).
      mask, mask_alpha, mask_rank: sparse fine-tuning mask (None = dense, run as the all-True mask): "principal"
        (train $M_{princ}$ only), "nonprincipal" ($M_{princ}^c$), "low" ($M_{low}$), "safe"
        ($M_{low}\\cup M_{princ}^c$), "random" (same per-layer count as "safe"); α and the SVD rank k of M8
        (clipped to the matrix size).
      adapter: LoRA/PiSSA configuration (None = full fine-tuning).
      dynamic_sampling, dapo_max_rounds: DAPO's dynamic sampling (App. C.1): refill the batch with groups whose
        rewards are not all equal, drawing up to `dapo_max_rounds` rounds of P prompts (see `fit`); groups that
        are still all-equal carry zero weight.
      kl_metrics: log the token-wise KL to the base (k1, k3 and exact) and the entropy on each step's samples,
        at the cost of one forward pass of the base model per step (its own phase; off for speed).
      remat: recompute each decoder block in the backward pass instead of keeping its activations (memory of
        one layer instead of all, for one more forward of the blocks; the same update). On by default: on
        SmolLM2's GRPO step it takes the peak from 12.3 to 5.5 GB.
      track_drift: accumulate each master coordinate's path length $\\sum_t|\\delta_t|$ over the optimizer updates
        (`TrainState.travel`, full fine-tuning only) and log `drift_efficiency`
        $\\sum|\\theta_T-\\theta_0|/\\sum_t\\sum|\\delta_t|$: 1 when every coordinate moves one way, near 0 when the
        moves cancel (`threegate.lm.drift`), and `drift_travel`, the mean path length per coordinate.
      storage: the dtype the model is STORED in: "bfloat16" (the paper's setting: every forward pass sees
        bf16(master), Gate III acts) or "float32" (the ablation without Gate III: the forward passes see the
        float32 master itself, checkpoints are float32; the base is the same bf16 checkpoint).
      vocab_chunk: rows of the unembedding per block of the chunked log-probabilities
        (`threegate.lm.logprobs`; None: a divisor of the vocabulary near 8192).
      seed: the run's seed; same seed ⇒ identical logs.
    """

    algo: str = "grpo"
    steps: int = 50
    lr: float = 1e-5
    b1: float = 0.9
    b2: float = 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0
    prompts_per_step: int = 8
    group_size: int = 8
    epochs: int = 1
    minibatches: int = 4
    eps_low: float = 0.2
    eps_high: float | None = None
    beta: float = 0.0
    kl_estimator: Literal["k1", "k3"] = "k3"
    temperature: float = 1.0
    top_p: float = 1.0
    mask: Literal["principal", "nonprincipal", "low", "safe", "random"] | None = None
    mask_alpha: float = 0.5
    mask_rank: int = 16
    adapter: AdapterConfig | None = None
    dynamic_sampling: bool = True
    dapo_max_rounds: int = 3
    kl_metrics: bool = True
    remat: bool = True
    track_drift: bool = False
    storage: Literal["bfloat16", "float32"] = "bfloat16"
    vocab_chunk: int | None = None
    seed: int = 0

    def __post_init__(self):
        if self.algo not in ALGORITHMS:
            raise ValueError(f"algo must be one of {tuple(ALGORITHMS)}, got {self.algo!r}")
        if self.steps < 0 or self.lr <= 0 or self.prompts_per_step < 1:
            raise ValueError("need steps >= 0, lr > 0 and prompts_per_step >= 1")
        algorithm = ALGORITHMS[self.algo]
        if algorithm.samples_groups and self.group_size < algorithm.min_group:
            raise ValueError(
                f"{self.algo} needs group_size >= {algorithm.min_group}, got {self.group_size}"
            )
        if self.epochs < 1 or self.minibatches < 1 or self.prompts_per_step % self.minibatches:
            raise ValueError(
                f"minibatches={self.minibatches} must divide prompts_per_step={self.prompts_per_step}"
            )
        if self.mask is not None and self.mask not in MASK_KINDS:
            raise ValueError(f"mask must be one of {MASK_KINDS}, got {self.mask!r}")
        if self.mask is not None and self.adapter is not None:
            raise ValueError("choose a sparse mask or an adapter, not both")
        if self.kl_estimator not in ("k1", "k3"):
            raise ValueError(f"kl_estimator must be 'k1' or 'k3', got {self.kl_estimator!r}")
        if not 0 < self.mask_alpha <= 1 or self.mask_rank < 1:
            raise ValueError("need 0 < mask_alpha <= 1 and mask_rank >= 1")
        if self.track_drift and self.adapter is not None:
            raise ValueError("track_drift needs full fine-tuning (no adapter)")
        if self.dapo_max_rounds < 1:
            raise ValueError(f"dapo_max_rounds must be >= 1, got {self.dapo_max_rounds}")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("need temperature > 0 and 0 < top_p <= 1")
        if self.storage not in STORAGE_DTYPES:
            raise ValueError(
                f"storage must be one of {tuple(STORAGE_DTYPES)}, got {self.storage!r}"
            )
        if self.storage != "bfloat16" and self.adapter is not None:
            raise ValueError("float32 storage is for full fine-tuning (adapters merge into bf16)")
        if self.vocab_chunk is not None and self.vocab_chunk < 1:
            raise ValueError(f"vocab_chunk must be >= 1 or None, got {self.vocab_chunk}")

    @property
    def stored_dtype(self):
        """The dtype of the stored weights (`storage`)."""
        return STORAGE_DTYPES[self.storage]

    @property
    def algorithm(self) -> Algorithm:
        """The registry entry of `algo`."""
        return ALGORITHMS[self.algo]

    @property
    def clip_high(self) -> float:
        """$\\varepsilon_{high}$: `eps_high`, else the algorithm's default (0.28 for DAPO), else `eps_low`."""
        if self.eps_high is not None:
            return self.eps_high
        default = self.algorithm.eps_high
        return self.eps_low if default is None else default

    @property
    def normalization(self) -> Normalization:
        """GRPO averages per sequence; DAPO and REINFORCE++ per token."""
        return self.algorithm.normalization

    @property
    def loss_settings(self) -> LossSettings:
        return LossSettings(
            self.eps_low, self.clip_high, self.normalization, self.beta, self.kl_estimator
        )

    @property
    def group(self) -> int:
        """G: completions per prompt (1 for an algorithm that does not sample groups)."""
        return self.group_size if self.algorithm.samples_groups else 1

    @property
    def dynamic_refill(self) -> bool:
        """Whether DAPO's dynamic sampling refills the batch with mixed groups (up to `dapo_max_rounds`)."""
        return self.algorithm.refills and self.dynamic_sampling

    @property
    def refill_rounds(self) -> int:
        """Most rounds of `prompts_per_step` prompts a step's batch may draw (`threegate.lm.batch`): 1 without
        the refill."""
        return self.dapo_max_rounds if self.dynamic_refill else 1

    @property
    def updates_per_step(self) -> int:
        return self.epochs * self.minibatches

    @property
    def needs_old_pass(self) -> bool:
        """Whether the PPO ratio needs $\\log\\pi_{old}$ from a pass of its own. With one update per step the
        policy that sampled is the one being differentiated, the ratio is exactly 1 and $\\log\\pi_{old}$ is the
        loss pass's own $\\log\\pi$ (stop-gradient), as TRL and verl do."""
        return self.algorithm.uses_ratio and self.updates_per_step > 1


#: Host or device array: the host-side functions (init, effective, checkpointing) also see NumPy arrays,
#: e.g. params read from a checkpoint or a state restored on resume.
HostArray = Array | np.ndarray
#: Full model params, name → array (float32 master values, or the stored bf16 ones).
Params = dict[str, Float[HostArray, "..."]]
#: What the optimizer trains: the full params, or `{name: LoraPair}` under an adapter.
Trainables = PyTree[Float[HostArray, "..."]]
#: Trainable entries of the linear weights, name → bool `[m, n]`.
Masks = dict[str, Bool[HostArray, "m n"]]
#: A step's scalar metrics, name → 0-d array.
Metrics = dict[str, Shaped[Array, ""]]


class TrainState(NamedTuple):
    """What changes during training.

    Attributes:
      master: float32 trainable pytree (the full params dict, or `{name: LoraPair}` with an adapter).
      stored: `master` rounded to bf16: what forward passes and checkpoints use.
      opt_state: optax AdamW state (float32).
      step: int32 scalar, completed outer steps.
      travel: with `cfg.track_drift`, float32 like `master`: $\\sum_t|\\delta_t|$ of each coordinate's realised
        master moves so far (else None).
    """

    master: Trainables
    stored: Trainables
    opt_state: optax.OptState
    step: Int[Array, ""]
    travel: Trainables | None = None


class Frozen(NamedTuple):
    """Constant inputs of the step functions (passed as arguments, never closed over, so they are not baked
    into compiled code).

    Attributes:
      ref: the base model as stored at step 0 (bf16 full params): the KL reference and the sparsity baseline.
      base: the frozen float32 params under an adapter ($W_0$ or PiSSA's residual), else None.
      masks: `{name: bool [m, n]}` trainable entries of the linear weights (all True for a dense run; others
        fully trainable), or None under an adapter.
    """

    ref: Params
    base: Params | None
    masks: Masks | None


class TrainFns(NamedTuple):
    """The pure functions of a run (see `make_train`)."""

    init: Callable[[Params, PRNGKeyArray], tuple[TrainState, Frozen]]
    effective: Callable[[TrainState, Frozen], Params]
    rollout: Callable[..., GenerateOutput]
    update: Callable[[TrainState, Frozen, Batch, PRNGKeyArray], tuple[TrainState, Metrics]]
    step: Callable[[TrainState, Frozen, PRNGKeyArray], tuple[TrainState, Metrics]] | None
    train: Callable[[Params, PRNGKeyArray], tuple[TrainState, Metrics]] | None
    sample_batch: Callable[[TrainState, Frozen, PRNGKeyArray], tuple[Batch, PRNGKeyArray]] | None


def _optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    adamw = optax.adamw(cfg.lr, cfg.b1, cfg.b2, cfg.adam_eps, weight_decay=cfg.weight_decay)
    if cfg.max_grad_norm is None:
        return adamw
    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), adamw)


def to_stored(tree, dtype=STORED_DTYPE):
    """The stored copy of a float32 tree: rounded to bf16, or (float32 storage) a copy of it."""
    if jnp.dtype(dtype) == jnp.float32:
        return jax.tree.map(jnp.copy, tree)  # its own buffers: the driver donates the state
    return jax.tree.map(lambda x: x.astype(dtype), tree)


def _upcast(tree):
    return jax.tree.map(lambda x: x.astype(jnp.float32), tree)


@jax.custom_vjp
def _stored_values(master: jax.Array, stored: jax.Array) -> jax.Array:
    """`f32(stored)` (with `stored = bf16(master)`) whose gradient goes to `master` as the identity."""
    return stored.astype(jnp.float32)


def _stored_values_fwd(master, stored):
    return stored.astype(jnp.float32), stored


def _stored_values_bwd(stored, g):
    return g, jnp.zeros_like(stored)


_stored_values.defvjp(_stored_values_fwd, _stored_values_bwd)


def _straight_through(master, stored):
    """The float32 values of the stored weights, differentiable as the identity in the float32 `master`.

    The loss is evaluated at the stored point, $L(\\mathrm{f32}(w_{bf16}))$, and its gradient there is the
    gradient for the master (mixed precision, App. C.1). Taking it through this identity instead of through a
    float32 copy of the stored weights lets the upcast fuse into the layer stacking, so no separate float32 copy
    of the model is made for the backward pass.
    """
    return jax.tree.map(_stored_values, master, stored)


# ------------------------------------------------------------------------------- the step's pieces


def init_state(
    params0: dict[str, Float[ArrayLike, "..."]],
    key: PRNGKeyArray,
    *,
    cfg: TrainConfig,
    opt: optax.GradientTransformation,
) -> tuple[TrainState, Frozen]:
    """master = float32(bf16(params0)) (or adapters), stored = bf16(master); the reference, base and masks."""
    k_mask, k_adapter = jax.random.split(key)
    # The base is a bf16 checkpoint: a float32 source (e.g. dequantized GGUF) is rounded once, and the
    # master starts from exactly those values, master0 = f32(bf16(W)). A master that started off the bf16
    # grid would flip every weight sitting near a rounding tie at the first step, weight decay alone
    # sufficing, and count as updates what is only the first rounding.
    ref = to_stored(params0)
    base0 = _upcast(ref)  # a fresh float32 copy: the jitted driver donates the state's buffers
    if cfg.adapter is None:
        master = base0
        base = None
    else:
        from threegate.lm.adapters import init_adapters

        base, master = init_adapters(base0, cfg.adapter, k_adapter, STORED_DTYPE)
    masks = build_masks(cfg, base0, k_mask)
    if masks is None and cfg.adapter is None:
        # dense = the all-True mask: dense and masked runs compile to the same update, so a dense run is
        # bit for bit the all-True-mask run (with no select in the graph XLA fuses the AdamW step
        # differently and the float32 masters drift apart by ulps, enough to flip stored bf16 bits)
        masks = {
            n: jnp.ones(jnp.shape(w), jnp.bool_) for n, w in base0.items() if is_linear_name(n)
        }
    with jax.numpy_dtype_promotion("standard"):
        opt_state = opt.init(master)
    travel = jax.tree.map(jnp.zeros_like, master) if cfg.track_drift else None
    stored = to_stored(master, cfg.stored_dtype)
    state = TrainState(master, stored, opt_state, jnp.zeros((), jnp.int32), travel)
    return state, Frozen(ref, base, masks)


def run_params(trainables32: Trainables, frozen: Frozen, *, cfg: TrainConfig) -> Params:
    """Full float32-computed params from (upcast) trainables: themselves, or the merged adapter weights."""
    if cfg.adapter is None:
        return trainables32
    return merge(frozen.base, trainables32, cfg.adapter.scale)


def effective_params(state: TrainState, frozen: Frozen, *, cfg: TrainConfig) -> Params:
    """The full params the model runs with: the stored weights, or the base merged with the stored adapters."""
    if cfg.adapter is None:
        return state.stored
    return run_params(_upcast(state.stored), frozen, cfg=cfg)


def rollout(
    state: TrainState,
    frozen: Frozen,
    prompts: Int[Array, "B T"],
    prompt_mask: Bool[Array, "B T"],
    key: PRNGKeyArray,
    *,
    cfg: TrainConfig,
    mcfg: LlamaConfig,
    max_new_tokens: int,
    eos_id: int,
) -> GenerateOutput:
    """`cfg.group` completions per prompt (rows prompt-major) sampled from the effective params."""
    return generate(
        effective_params(state, frozen, cfg=cfg),
        mcfg,
        prompts,
        prompt_mask,
        key,
        max_new_tokens=max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        greedy=False,
        eos_id=eos_id,
        group=cfg.group,
    )


def _policy_hidden(params: Params, b: Batch, *, mcfg: LlamaConfig) -> Float[Array, "B N d"]:
    """Hidden states of `params` at the positions that predict the sampled completion (no gradient)."""
    h = completion_hidden(params, mcfg, b.prompts, b.prompt_mask, b.completion, b.completion_mask)
    return jax.lax.stop_gradient(h)


def _logprobs(h, params, tokens, temperature, *, mcfg: LlamaConfig, cfg: TrainConfig):
    return token_logprobs(
        h, unembedding(params, mcfg), tokens, temperature=temperature, chunk=cfg.vocab_chunk
    )


def kl_to_base(
    h: Float[Array, "B N d"],
    params: Params,
    h_ref: Float[Array, "B N d"],
    frozen: Frozen,
    b: Batch,
    *,
    cfg: TrainConfig,
    mcfg: LlamaConfig,
) -> Metrics:
    """Token-wise KL to the base (M14: k1, k3 and exact) and entropy on the on-policy samples: the
    instrumentation phase (`cfg.kl_metrics`), one chunked pass over the vocabulary."""
    from threegate.kl import kl_k1, kl_k3

    st = token_stats(
        h,
        unembedding(params, mcfg),
        b.completion,
        h_ref,
        unembedding(frozen.ref, mcfg),
        temperature=float(cfg.temperature),
        chunk=cfg.vocab_chunk,
    )
    m = b.completion_mask
    return {
        "kl_k1": masked_mean(kl_k1(st["logp"], st["logp_ref"]), m),
        "kl_k3": masked_mean(kl_k3(st["logp"], st["logp_ref"]), m),
        "kl_exact": masked_mean(st["kl_exact"], m),
        "entropy": masked_mean(st["entropy"], m),
    }


def minibatch_loss(
    train32: Trainables,
    frozen: Frozen,
    mb: Batch,
    logp_old: Float[Array, "b N"] | None,
    logp_ref: Float[Array, "b N"] | None,
    adv: Float[Array, " b"],
    keep: Float[Array, " b"],
    *,
    cfg: TrainConfig,
    mcfg: LlamaConfig,
) -> tuple[Float[Array, ""], tuple[Float[Array, ""], Float[Array, "b N d"] | None]]:
    """The algorithm's minimised loss on one minibatch and (clip fraction, the pass's completion hidden states,
    stop-gradient; None when the loss runs on the references)."""
    algo = cfg.algorithm
    params = run_params(train32, frozen, cfg=cfg)
    on_samples = algo.trains_on == "samples"
    tokens, mask = (
        (mb.completion, mb.completion_mask) if on_samples else (mb.targets, mb.target_mask)
    )
    h = completion_hidden(params, mcfg, mb.prompts, mb.prompt_mask, tokens, mask, remat=cfg.remat)
    temperature = float(cfg.temperature) if algo.tempered else 1.0
    logp = _logprobs(h, params, tokens, temperature, mcfg=mcfg, cfg=cfg)
    terms = LossTerms(logp, mask, logp_old, logp_ref, adv, keep)
    loss, clip = algo.loss(terms, cfg.loss_settings)
    return loss, (clip, jax.lax.stop_gradient(h) if on_samples else None)


def apply_masks(tree: Trainables, masks: Masks | None) -> Trainables:
    """Zero the entries of `tree` outside `masks` (names without a mask pass through)."""
    if masks is None:
        return tree
    return {
        k: (jnp.where(masks[k], v, jnp.zeros_like(v)) if k in masks else v) for k, v in tree.items()
    }


def minibatch_rows(key: PRNGKeyArray, n_prompts: int, *, cfg: TrainConfig) -> Int[Array, "u r"]:
    """Rows of each of the `epochs·minibatches` updates: per epoch a permutation of the prompts (key
    `fold_in(key, epoch)`) cut into `minibatches` parts, each prompt bringing its `G` completions."""
    g = cfg.group
    per_mb = n_prompts // cfg.minibatches
    perms = [
        jax.random.permutation(jax.random.fold_in(key, e), n_prompts) for e in range(cfg.epochs)
    ]
    groups = jnp.concatenate(perms).reshape(cfg.updates_per_step, per_mb)
    return (groups[:, :, None] * g + jnp.arange(g, dtype=groups.dtype)[None, None, :]).reshape(
        cfg.updates_per_step, per_mb * g
    )


def _batch_metrics(b: Batch) -> Metrics:
    m = b.completion_mask
    return {
        "reward": jnp.mean(b.rewards),
        "accuracy": jnp.mean(b.correct.astype(jnp.float32)),
        "response_len": jnp.mean(jnp.sum(m, axis=1).astype(jnp.float32)),
        "gen_tokens": jnp.sum(m).astype(jnp.float32),
    }


def scan_updates(
    state: TrainState,
    frozen: Frozen,
    b: Batch,
    rows: Int[Array, "u r"],
    logp_old: Float[Array, "B N"] | None,
    logp_ref: Float[Array, "B N"] | None,
    adv: Float[Array, " B"],
    keep: Float[Array, " B"],
    *,
    keep_h: bool,
    cfg: TrainConfig,
    mcfg: LlamaConfig,
    opt: optax.GradientTransformation,
):
    """The masked AdamW updates of one step in a `lax.scan`, update `u` on the batch's rows `rows[u]`.

    Returns ((master, stored, opt_state, travel), (loss, clip fraction, gradient norm, loss-pass hidden states or
    None)), the second stacked over the updates; `travel` (None unless tracked) adds each update's $|\\delta|$."""

    def one_update(carry, idx):
        master, stored, opt_state, travel = carry
        take = lambda x: None if x is None else jnp.take(x, idx, axis=0)  # noqa: E731
        mb = jax.tree.map(take, b)
        (loss, (clip, h)), grads = jax.value_and_grad(minibatch_loss, has_aux=True)(
            _straight_through(master, stored),
            frozen,
            mb,
            take(logp_old),
            take(logp_ref),
            take(adv),
            take(keep),
            cfg=cfg,
            mcfg=mcfg,
        )
        grads = apply_masks(grads, frozen.masks)
        gnorm = optax.tree.norm(grads)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 counts and floats
            updates, opt_state = opt.update(grads, opt_state, master)
        updates = apply_masks(updates, frozen.masks)
        new = jax.tree.map(lambda p, u: p + u, master, updates)
        if travel is not None:  # the realised move, new − old in float32 (not the update u itself)
            travel = jax.tree.map(lambda t, a, b: t + jnp.abs(a - b), travel, new, master)
        carry = (new, to_stored(new, cfg.stored_dtype), opt_state, travel)
        return carry, (loss, clip, gnorm, h if keep_h else None)

    init = (state.master, state.stored, state.opt_state, state.travel)
    return jax.lax.scan(one_update, init, rows)


def update(
    state: TrainState,
    frozen: Frozen,
    b: Batch,
    key: PRNGKeyArray,
    *,
    cfg: TrainConfig,
    mcfg: LlamaConfig,
    opt: optax.GradientTransformation,
) -> tuple[TrainState, Metrics]:
    """Log-probs, KL/entropy metrics on the batch's samples, advantages, then `epochs·minibatches` masked AdamW
    updates (`scan_updates`)."""
    algo = cfg.algorithm
    temperature = float(cfg.temperature)
    metrics = _batch_metrics(b)
    adv, keep = algo.advantages(b.rewards, b.correct, cfg.group, cfg.dynamic_sampling)
    metrics["kept_frac"] = jnp.mean(keep)
    # The reference pass: the KL penalty's log pi_ref and the logged KL to the base.
    h_ref = _policy_hidden(frozen.ref, b, mcfg=mcfg) if (cfg.kl_metrics or cfg.beta > 0) else None
    logp_ref = None
    if cfg.beta > 0:
        logp_ref = jax.lax.stop_gradient(
            _logprobs(h_ref, frozen.ref, b.completion, temperature, mcfg=mcfg, cfg=cfg)
        )
    # The old-policy pass: PPO's log pi_old when several updates share one rollout; a loss on the references
    # (SFT) does not see the samples, so the on-policy KL needs the policy on them too.
    h_old = logp_old = None
    params = effective_params(state, frozen, cfg=cfg)
    if cfg.needs_old_pass or (algo.trains_on == "references" and cfg.kl_metrics):
        h_old = _policy_hidden(params, b, mcfg=mcfg)
        if cfg.needs_old_pass:
            logp_old = jax.lax.stop_gradient(
                _logprobs(h_old, params, b.completion, temperature, mcfg=mcfg, cfg=cfg)
            )
    if cfg.kl_metrics and h_old is not None:
        metrics |= kl_to_base(h_old, params, h_ref, frozen, b, cfg=cfg, mcfg=mcfg)
    rows = minibatch_rows(key, b.prompts.shape[0] // cfg.group, cfg=cfg)
    keep_h = cfg.kl_metrics and h_old is None  # the loss pass's h gives the policy's metrics
    (master, stored, opt_state, travel), (loss, clip, gnorm, hs) = scan_updates(
        state,
        frozen,
        b,
        rows,
        logp_old,
        logp_ref,
        adv,
        keep,
        keep_h=keep_h,
        cfg=cfg,
        mcfg=mcfg,
        opt=opt,
    )
    if keep_h:
        # one update: its loss pass ran at the pre-update policy, on the batch's rows rows[0]
        mb0 = jax.tree.map(lambda x: jnp.take(x, rows[0], axis=0), b)
        h_ref0 = jnp.take(h_ref, rows[0], axis=0)
        metrics |= kl_to_base(hs[0], params, h_ref0, frozen, mb0, cfg=cfg, mcfg=mcfg)
    new = TrainState(master, stored, opt_state, state.step + 1, travel)
    if travel is not None:
        metrics["drift_efficiency"] = drift_efficiency(master, _upcast(frozen.ref), travel)
        n = sum(t.size for t in jax.tree.leaves(travel))
        metrics["drift_travel"] = sum(jnp.sum(t) for t in jax.tree.leaves(travel)) / n
    metrics |= {"loss": jnp.mean(loss), "clip_frac": jnp.mean(clip), "grad_norm": jnp.mean(gnorm)}
    stored_now = to_stored(effective_params(new, frozen, cfg=cfg), cfg.stored_dtype)
    metrics |= unchanged_fraction(stored_now, frozen.ref)
    if (
        cfg.storage != "bfloat16"
    ):  # what bf16 storage would have kept: the master rounded, against the base
        counter = unchanged_fraction(to_stored(stored_now), frozen.ref)
        metrics |= {
            "sparsity_bf16": counter["sparsity"],
            "sparsity_linear_bf16": counter["sparsity_linear"],
        }
    return new, metrics


def _sample(state, frozen, key, *, task, roll, cfg: TrainConfig):
    bound = partial(roll, state, frozen)
    return sample_batch(
        task,
        bound,
        key,
        prompts=cfg.prompts_per_step,
        group=cfg.group,
        refill_rounds=cfg.refill_rounds,
    )


def _step(state, frozen, key, *, sample, update):
    b, k_upd = sample(state, frozen, key)
    return update(state, frozen, b, k_upd)


def _train(params0, key, *, init, step, steps: int):
    k_init, k_run = jax.random.split(key)
    state, frozen = init(params0, k_init)
    keys = jax.vmap(lambda i: jax.random.fold_in(k_run, i))(jnp.arange(steps))
    return jax.lax.scan(lambda s, k: step(s, frozen, k), state, keys)


def make_train(cfg: TrainConfig, mcfg: LlamaConfig, task: Task) -> TrainFns:
    """Pure step functions of a run, purejaxrl-style: the module's functions with the run bound.

    Returns `TrainFns` with:
      init(params0, key) -> (TrainState, Frozen): `init_state`.
      effective(state, frozen) -> params: the full params the model runs with (`effective_params`).
      rollout(state, frozen, prompts, prompt_mask, key) -> GenerateOutput (`rollout`).
      update(state, frozen, batch, key) -> (state, metrics): `update`.
      step(state, frozen, key) -> (state, metrics): sample problems, roll out, verify, update (jnp tasks only,
        `task.jax_native`; None for a host-side verifier).
      sample_batch(state, frozen, key) -> (Batch, update key): the sampling half of `step` (jnp tasks only).
      train(params0, key) -> (state, metrics[steps]): `init` then `lax.scan(step)`; `jax.vmap` it over keys to run
        several seeds at once (`train_seeds`).
    """
    opt = _optimizer(cfg)
    init = partial(init_state, cfg=cfg, opt=opt)
    upd = partial(update, cfg=cfg, mcfg=mcfg, opt=opt)
    roll = partial(rollout, cfg=cfg, mcfg=mcfg, max_new_tokens=task.answer_len, eos_id=task.eos_id)
    effective = partial(effective_params, cfg=cfg)
    if not task.jax_native:
        return TrainFns(init, effective, roll, upd, None, None, None)
    sample = partial(_sample, task=task, roll=roll, cfg=cfg)
    step = partial(_step, sample=sample, update=upd)
    train = partial(_train, init=init, step=step, steps=cfg.steps)
    return TrainFns(init, effective, roll, upd, step, train, sample)


def train_seeds(
    cfg: TrainConfig, mcfg: LlamaConfig, task: Task, params0: Params, seeds: Iterable[int]
) -> tuple[TrainState, dict[str, Shaped[Array, "S steps"]]]:
    """Run one config for several seeds at once: `jit(vmap(train))` over `jax.random.key(seed)` (same
    `params0` for all; jnp tasks only). Returns the stacked final states and metrics `[S, steps]`."""
    fns = make_train(cfg, mcfg, task)
    if fns.train is None:
        raise ValueError("train_seeds needs a jnp task (CharTask); text tasks verify on the host")
    keys = jnp.stack([jax.random.key(int(s)) for s in seeds])
    return jax.jit(jax.vmap(fns.train, in_axes=(None, 0)))(params0, keys)


def host_metrics(metrics: Mapping[str, ArrayLike]) -> dict[str, float]:
    """Device metrics → plain floats (for JSON); the sparsities are recomputed exactly from their integer counts
    (an unchanged model has sparsity exactly 1.0)."""
    out = {k: float(np.asarray(v)) for k, v in metrics.items()}
    for ratio, num, den in (
        ("sparsity", "unchanged", "params"),
        ("sparsity_linear", "unchanged_linear", "params_linear"),
    ):
        if num in metrics and den in metrics:
            n = int(np.asarray(metrics[den]))
            out[ratio] = int(np.asarray(metrics[num])) / n if n else float("nan")
    return out
