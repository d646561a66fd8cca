"""Gate I on a parametric policy class: Fisher, Hessians, M-projection, frozen-policy surrogates.

A *policy* is any NamedTuple (so a pytree: it can be passed through `jax.jit` and `jax.vmap`) with a method
`logits(theta) -> [a]` mapping a flat parameter vector `theta: [p]` to the logits of a categorical over `a`
outcomes, for one fixed prompt $x$. Three classes are provided:

- `LogLinearPolicy`: $\\pi_\\theta=\\mathrm{softmax}(\\Phi\\theta)$, an exponential family. The parametrization is
  minimal (Fisher non-singular at every $\\theta$) iff $[\\Phi, \\mathbf 1]$ has full column rank; `log_linear_policy`
  builds one by removing the all-ones direction from the columns of $\\Phi$.
- `TanhPolicy`: $\\mathrm{logits}=G\\theta+A\\tanh(B\\theta+c)$, a small nonlinear class where $\\nabla^2\\log\\pi_\\theta(y)$
  depends on $y$ (the setting of Lemma F.6); $A=0$ gives the log-linear class.
- `QuadraticPolicy`: $\\mathrm{logits}_y=G_y\\theta+\\tfrac12\\theta^\\top C_y\\theta$, whose per-outcome curvature $C_y$
  is free; used for the extremal cases of Lemmas F.1 and F.6.

Shapes: `theta [p]`, logits / log-probabilities `[a]`, scores `[a, p]`, per-outcome Hessians `[a, p, p]`, Fisher
`[p, p]`. Every derivative is exact (forward/reverse-mode autodiff, no finite differences); every matmul runs at
`MATMUL_PRECISION`.

References: arXiv 2511.08567, App. F.2 (Lemmas F.1, F.3–F.7, Prop 3.1).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Bool, Float, Int

from threegate._numerics import MATMUL_PRECISION, eps, matmul, tol
from threegate.kl import kl_categorical

#: Smallest Levenberg–Marquardt damping after a rejected step (relative to an O(1) Hessian).
_LM_DAMPING_FLOOR = 1e-3

__all__ = [
    "LeashPoint",
    "LogLinearPolicy",
    "MProjection",
    "QuadraticPolicy",
    "TanhPolicy",
    "cross_entropy",
    "expected_neg_hessian",
    "fisher",
    "fisher_hessian_form",
    "frozen_surrogate",
    "kl_quadratic",
    "leash_point",
    "leash_ratio_limit",
    "log_linear_policy",
    "log_probs",
    "logprob_hessian_bound",
    "logprob_hessians",
    "m_projection",
    "pg_loss_onpolicy",
    "pg_objective",
    "policy_kl",
    "scores",
]


class LogLinearPolicy(NamedTuple):
    """$\\pi_\\theta=\\mathrm{softmax}(\\Phi\\theta)$ with features $\\Phi$ = `features` `[a, p]`."""

    features: Float[Array, "a p"]

    def logits(self, theta: Float[Array, " p"]) -> Float[Array, " a"]:
        return matmul(self.features, theta)


class TanhPolicy(NamedTuple):
    """$\\mathrm{logits}=G\\theta+A\\tanh(B\\theta+c)$: $G$ = `lin` `[a, p]`, $A$ = `a_mat` `[a, h]`, $B$ = `b_mat` `[h, p]`, $c$ = `bias` `[h]`.

    With $A=0$ it is the log-linear class with features $G$ (exactly: every derivative of the tanh term is 0).
    """

    lin: Float[Array, "a p"]
    a_mat: Float[Array, "a h"]
    b_mat: Float[Array, "h p"]
    bias: Float[Array, " h"]

    def logits(self, theta: Float[Array, " p"]) -> Float[Array, " a"]:
        hidden = jnp.tanh(matmul(self.b_mat, theta) + self.bias)
        return matmul(self.lin, theta) + matmul(self.a_mat, hidden)


class QuadraticPolicy(NamedTuple):
    """$\\mathrm{logits}_y=G_y\\theta+\\tfrac12\\theta^\\top C_y\\theta$, $G$ = `lin` `[a, p]`, $C$ = `curv` `[a, p, p]`."""

    lin: Float[Array, "a p"]
    curv: Float[Array, "a p p"]

    def logits(self, theta: Float[Array, " p"]) -> Float[Array, " a"]:
        quad = matmul(matmul(self.curv, theta), theta)
        return matmul(self.lin, theta) + 0.5 * quad


def log_linear_policy(features: ArrayLike) -> LogLinearPolicy:
    """A minimal log-linear policy: the columns of `features` `[a, p]` with their mean over `a` removed.

    Softmax is invariant to adding a constant to all logits, so centring changes no $\\pi_\\theta$; afterwards the
    Fisher $\\Phi^\\top(\\mathrm{diag}\\,\\pi-\\pi\\pi^\\top)\\Phi$ is non-singular iff the centred $\\Phi$ has rank $p$
    (needs $p\\le a-1$).

    Raises:
      ValueError: `features` not 2-D or $p > a-1$.

    Example:
      >>> import jax.numpy as jnp
      >>> log_linear_policy(jnp.array([[2.0], [1.0], [0.0]])).features.tolist()  # column mean removed
      [[1.0], [0.0], [-1.0]]
    """
    phi = jnp.asarray(features)
    if phi.ndim != 2 or phi.shape[1] > phi.shape[0] - 1:
        raise ValueError(f"features must be [a, p] with p <= a - 1, got shape {phi.shape}")
    return LogLinearPolicy(phi - jnp.mean(phi, axis=0, keepdims=True))


def log_probs(policy, theta: Float[ArrayLike, " p"]) -> Float[Array, " a"]:
    """$\\log\\pi_\\theta(y)$ for every outcome $y$, shape `[a]`.

    Example:
      >>> import jax.numpy as jnp
      >>> pol = log_linear_policy(jnp.array([[1.0], [0.0], [-1.0]]))  # a = 3 outcomes, p = 1
      >>> [round(p, 4) for p in jnp.exp(log_probs(pol, jnp.zeros(1))).tolist()]
      [0.3333, 0.3333, 0.3333]
    """
    return jax.nn.log_softmax(policy.logits(jnp.asarray(theta)))


def scores(policy, theta: Float[ArrayLike, " p"]) -> Float[Array, "a p"]:
    """Score vectors $\\nabla_\\theta\\log\\pi_\\theta(y)$, one row per outcome, shape `[a, p]`.

    For the log-linear class $\\nabla\\log\\pi_\\theta(y)=\\phi_y-\\mathbb E_{\\pi_\\theta}\\phi$.

    Example:
      >>> import jax.numpy as jnp
      >>> pol = log_linear_policy(jnp.array([[1.0], [0.0], [-1.0]]))  # a = 3 outcomes, p = 1
      >>> scores(pol, jnp.zeros(1)).tolist()
      [[1.0], [0.0], [-1.0]]
    """
    return jax.jacfwd(lambda t: log_probs(policy, t))(jnp.asarray(theta))


def logprob_hessians(policy, theta: Float[ArrayLike, " p"]) -> Float[Array, "a p p"]:
    """$\\nabla^2_\\theta\\log\\pi_\\theta(y)$ for every outcome, shape `[a, p, p]` (exact, `jax.hessian`).

    Example:
      >>> import jax.numpy as jnp
      >>> pol = log_linear_policy(jnp.array([[1.0], [0.0], [-1.0]]))  # a = 3 outcomes, p = 1
      >>> h = logprob_hessians(pol, jnp.zeros(1))  # -Cov(phi) = -2/3 for every y (log-linear)
      >>> h.shape, [round(x, 4) for x in h.ravel().tolist()]
      ((3, 1, 1), [-0.6667, -0.6667, -0.6667])
    """
    return jax.hessian(lambda t: log_probs(policy, t))(jnp.asarray(theta))


def fisher(policy, theta: Float[ArrayLike, " p"]) -> Float[Array, "p p"]:
    """Fisher information $F(\\theta)=\\mathbb E_{\\pi_\\theta}[\\nabla\\log\\pi\\,\\nabla\\log\\pi^\\top]$ (Lemma F.5).

    Computed as the covariance of the scores (their $\\pi$-mean is exactly 0); equals `fisher_hessian_form`.

    Example:
      >>> import jax.numpy as jnp
      >>> pol = log_linear_policy(jnp.array([[1.0], [0.0], [-1.0]]))  # a = 3 outcomes, p = 1
      >>> round(float(fisher(pol, jnp.zeros(1))[0, 0]), 4)  # Var of phi = (1, 0, -1) under the uniform policy
      0.6667
    """
    s = scores(policy, theta)
    pi = jnp.exp(log_probs(policy, theta))
    return matmul(s.T, pi[:, None] * s)


def expected_neg_hessian(
    policy, theta: Float[ArrayLike, " p"], target_logits: Float[ArrayLike, " a"]
) -> Float[Array, "p p"]:
    """$H_q(\\theta)=-\\mathbb E_{y\\sim q}[\\nabla^2\\log\\pi_\\theta(y)]$ for $q$ = softmax(`target_logits`) (Lemma F.4).

    Example:
      >>> import jax.numpy as jnp
      >>> pol = log_linear_policy(jnp.array([[1.0], [0.0], [-1.0]]))  # a = 3 outcomes, p = 1
      >>> h = expected_neg_hessian(pol, jnp.zeros(1), jnp.array([2.0, 0.0, 0.0]))  # = F for any q: log-linear
      >>> round(float(h[0, 0]), 4)
      0.6667
    """
    q = jax.nn.softmax(jnp.asarray(target_logits))
    return -jnp.einsum("a,aij->ij", q, logprob_hessians(policy, theta), precision=MATMUL_PRECISION)


def fisher_hessian_form(policy, theta: Float[ArrayLike, " p"]) -> Float[Array, "p p"]:
    """The Hessian form of the Fisher, $-\\mathbb E_{\\pi_\\theta}[\\nabla^2\\log\\pi_\\theta]$ (equals `fisher`).

    Example:
      >>> import jax.numpy as jnp
      >>> pol = log_linear_policy(jnp.array([[1.0], [0.0], [-1.0]]))  # a = 3 outcomes, p = 1
      >>> bool(jnp.allclose(fisher_hessian_form(pol, jnp.zeros(1)), fisher(pol, jnp.zeros(1))))
      True
    """
    return expected_neg_hessian(policy, theta, log_probs(policy, theta))


def logprob_hessian_bound(policy, theta: Float[ArrayLike, " p"]) -> Float[Array, ""]:
    """$L=\\max_y\\|\\nabla^2\\log\\pi_\\theta(y)\\|_{op}$ at $\\theta$ (Lemma F.6; exact, via `eigvalsh`).

    Lemma F.6 needs the bound only at $\\theta$ itself: $H_{\\tilde q}-F=-\\sum_y(\\tilde q-\\pi_\\theta)(y)\\nabla^2\\log\\pi_\\theta(y)$.

    Example:
      >>> import jax.numpy as jnp
      >>> pol = log_linear_policy(jnp.array([[1.0], [0.0], [-1.0]]))  # a = 3 outcomes, p = 1
      >>> round(float(logprob_hessian_bound(pol, jnp.zeros(1))), 4)
      0.6667
    """
    ev = jnp.linalg.eigvalsh(logprob_hessians(policy, theta))
    return jnp.max(jnp.abs(ev))


def kl_quadratic(fisher_matrix: Float[ArrayLike, "p p"], delta: Float[ArrayLike, " p"]) -> Array:
    """The quadratic model $\\tfrac12\\Delta^\\top F\\Delta$ of $D_{KL}(\\pi_{\\theta+\\Delta}\\|\\pi_\\theta)$ (Lemma F.5).

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(kl_quadratic(jnp.array([[2.0]]), jnp.array([0.1]))), 6)
      0.01
    """
    d = jnp.asarray(delta)
    return 0.5 * jnp.dot(d, matmul(jnp.asarray(fisher_matrix), d), precision=MATMUL_PRECISION)


def policy_kl(policy, theta_a: Float[ArrayLike, " p"], theta_b: Float[ArrayLike, " p"]) -> Array:
    """$D_{KL}(\\pi_{\\theta_a}\\|\\pi_{\\theta_b})$ (exact sum over the support).

    Example:
      >>> import jax.numpy as jnp
      >>> pol = log_linear_policy(jnp.array([[1.0], [0.0], [-1.0]]))  # a = 3 outcomes, p = 1
      >>> t, step = jnp.zeros(1), jnp.array([0.1])
      >>> exact, model = policy_kl(pol, step, t), kl_quadratic(fisher(pol, t), step)  # Lemma F.5: O(|step|^3) apart
      >>> round(float(exact), 5), round(float(model), 5)
      (0.00333, 0.00333)
    """
    return kl_categorical(policy.logits(jnp.asarray(theta_a)), policy.logits(jnp.asarray(theta_b)))


def cross_entropy(
    policy, theta: Float[ArrayLike, " p"], target_logits: Float[ArrayLike, " a"]
) -> Array:
    """$-\\mathbb E_{y\\sim q}[\\log\\pi_\\theta(y)]=D_{KL}(q\\|\\pi_\\theta)+H(q)$, the M-projection objective (Lemma F.3).

    Example:
      >>> import jax.numpy as jnp
      >>> pol = log_linear_policy(jnp.array([[1.0], [0.0], [-1.0]]))  # a = 3 outcomes, p = 1
      >>> round(float(cross_entropy(pol, jnp.zeros(1), jnp.zeros(3))), 4)  # log 3: both uniform
      1.0986
    """
    q = jax.nn.softmax(jnp.asarray(target_logits))
    return -jnp.dot(q, log_probs(policy, theta), precision=MATMUL_PRECISION)


class MProjection(NamedTuple):
    """Result of `m_projection`: the fit $\\theta^+$ and how it was reached."""

    theta: Float[Array, " p"]
    grad_norm: Float[Array, ""]
    hess_pd: Bool[Array, ""]
    iterations: Int[Array, ""]
    converged: Bool[Array, ""]


def m_projection(
    policy,
    theta0: Float[ArrayLike, " p"],
    target_logits: Float[ArrayLike, " a"],
    max_iter: int = 200,
    gtol: float | None = None,
) -> MProjection:
    """M-projection $\\theta^+\\in\\arg\\min_\\theta D_{KL}(q\\|\\pi_\\theta)=\\arg\\max_\\theta\\mathbb E_q[\\log\\pi_\\theta]$ (F.3).

    Levenberg–Marquardt-damped Newton on the cross-entropy, started at `theta0`, with the exact Hessian
    (`jax.hessian`). A step solves $(H+\\lambda I)d=-\\nabla$ by Cholesky; it is kept when the factorisation exists
    and the objective does not rise beyond rounding, otherwise $\\lambda$ grows 4× (so every kept step is a descent
    direction, also where $H$ is indefinite). For a minimal `LogLinearPolicy` the objective is strictly convex, the
    stationarity condition is moment matching $\\mathbb E_{\\pi_{\\theta^+}}[\\Phi]=\\mathbb E_q[\\Phi]$, and the iteration
    converges quadratically to the unique minimiser. For nonlinear classes it returns the local minimiser reached
    from `theta0` (Prop 3.1 is a statement about this local fit).

    Args:
      policy: a policy NamedTuple with `logits(theta)`.
      theta0: starting point `[p]` (the current parameters $\\theta$).
      target_logits: logits of $q$ (e.g. `gibbs_tilt(...)`), `[a]`.
      max_iter: iteration cap (static).
      gtol: stop when $\\|\\nabla\\|_2\\le$ gtol; default `tol(dtype, p, c=4)` (a few eps per coordinate).

    Returns:
      `MProjection(theta, grad_norm, hess_pd, iterations, converged)`; `hess_pd` says whether the Hessian at
      `theta` is positive definite (Cholesky exists), i.e. whether `theta` is a strict local minimiser.

    Example:
      >>> import jax.numpy as jnp
      >>> pol = log_linear_policy(jnp.array([[1.0], [0.0], [-1.0]]))  # a = 3 outcomes, p = 1
      >>> fit = m_projection(pol, jnp.zeros(1), jnp.array([1.0, 0.0, -1.0]))  # a target inside the class: theta = 1
      >>> round(float(fit.theta[0]), 5), bool(fit.converged), bool(fit.hess_pd)
      (1.0, True, True)
    """
    th0 = jnp.asarray(theta0)
    tgt = jnp.asarray(target_logits)
    dtype = th0.dtype
    p = th0.shape[-1]
    g_tol = tol(dtype, p, c=4.0) if gtol is None else gtol
    rise = 8 * eps(dtype)
    eye = jnp.eye(p, dtype=dtype)

    def obj(t):
        return cross_entropy(policy, t, tgt)

    grad = jax.grad(obj)
    hess = jax.hessian(obj)

    def cond(state):
        _, _, g, _, _, it = state
        return (it < max_iter) & (jnp.linalg.norm(g) > g_tol)

    def body(state):
        t, f, g, h, lam, it = state
        chol = jnp.linalg.cholesky(h + lam * eye)
        step = -jax.scipy.linalg.cho_solve((chol, True), g)
        t_new = t + step
        f_new = obj(t_new)
        ok = jnp.all(jnp.isfinite(step)) & (f_new <= f + rise * (jnp.abs(f) + 1))
        t2 = jnp.where(ok, t_new, t)
        lam2 = jnp.where(ok, lam / 4, jnp.maximum(4 * lam, _LM_DAMPING_FLOOR))
        g2, h2 = grad(t2), hess(t2)
        return t2, jnp.where(ok, f_new, f), g2, h2, lam2, it + 1

    init = (th0, obj(th0), grad(th0), hess(th0), jnp.zeros((), dtype), jnp.zeros((), jnp.int32))
    t, _, g, h, _, it = jax.lax.while_loop(cond, body, init)
    gn = jnp.linalg.norm(g)
    pd = jnp.all(jnp.isfinite(jnp.linalg.cholesky(h)))
    return MProjection(t, gn, pd, it, gn <= g_tol)


def pg_objective(
    policy,
    theta: Float[ArrayLike, " p"],
    reward: Float[ArrayLike, " a"],
    theta_t: Float[ArrayLike, " p"],
) -> Array:
    """On-policy PG objective $f(\\theta)=-\\mathbb E_{y\\sim\\pi_\\theta}[A_{\\theta_t}(y)]$ (Lemma F.1, reading used here).

    $A_{\\theta_t}=R-\\mathbb E_{\\pi_{\\theta_t}}[R]$ is the advantage centred at $\\theta_t$. By the log-derivative
    trick $\\nabla f(\\theta_t)=-\\mathbb E_{\\pi_{\\theta_t}}[A_{\\theta_t}\\nabla\\log\\pi_{\\theta_t}]$, and $f(\\theta_t)=0$.

    Example:
      >>> import jax.numpy as jnp
      >>> pol = log_linear_policy(jnp.array([[1.0], [0.0], [-1.0]]))  # a = 3 outcomes, p = 1
      >>> import jax
      >>> t, reward = jnp.zeros(1), jnp.array([1.0, 0.0, 0.0])
      >>> abs(float(pg_objective(pol, t, reward, t))) < 1e-6
      True
      >>> round(float(jax.grad(pg_objective, argnums=1)(pol, t, reward, t)[0]), 4)  # -E[A s] = -1/3
      -0.3333
    """
    r = jnp.asarray(reward)
    pi_t = jnp.exp(log_probs(policy, theta_t))
    adv = r - jnp.dot(pi_t, r, precision=MATMUL_PRECISION)
    pi = jnp.exp(log_probs(policy, theta))
    return -jnp.dot(pi, adv, precision=MATMUL_PRECISION)


def frozen_surrogate(
    policy,
    theta: Float[ArrayLike, " p"],
    reward: Float[ArrayLike, " a"],
    theta_t: Float[ArrayLike, " p"],
) -> Array:
    """Frozen-policy surrogate $g(\\theta)=-\\mathbb E_{y\\sim\\pi_{\\theta_t}}[A_{\\theta_t}(y)(\\log\\pi_\\theta-\\log\\pi_{\\theta_t})(y)]$.

    The loss (4) with samples and advantage frozen at $\\theta_t$, shifted by the constant that makes $g(\\theta_t)=0$
    (Lemma F.1). Its gradient at $\\theta_t$ equals `pg_objective`'s.

    Example:
      >>> import jax.numpy as jnp
      >>> pol = log_linear_policy(jnp.array([[1.0], [0.0], [-1.0]]))  # a = 3 outcomes, p = 1
      >>> import jax
      >>> t, reward = jnp.zeros(1), jnp.array([1.0, 0.0, 0.0])
      >>> g_f = jax.grad(pg_objective, argnums=1)(pol, t, reward, t)
      >>> g_g = jax.grad(frozen_surrogate, argnums=1)(pol, t, reward, t)
      >>> bool(jnp.allclose(g_f, g_g))  # Lemma F.1: first-order match at theta_t
      True
    """
    r = jnp.asarray(reward)
    lp_t = log_probs(policy, theta_t)
    pi_t = jnp.exp(lp_t)
    adv = r - jnp.dot(pi_t, r, precision=MATMUL_PRECISION)
    return -jnp.dot(pi_t, adv * (log_probs(policy, theta) - lp_t), precision=MATMUL_PRECISION)


def pg_loss_onpolicy(
    policy,
    theta: Float[ArrayLike, " p"],
    reward: Float[ArrayLike, " a"],
    theta_t: Float[ArrayLike, " p"],
) -> Array:
    """The loss (4) read literally: $-\\mathbb E_{y\\sim\\pi_\\theta}[A_{\\theta_t}(y)\\log\\pi_\\theta(y)]$ (samples on-policy).

    Shifted by $\\mathbb E_{\\pi_{\\theta_t}}[A\\log\\pi_{\\theta_t}]$ so it is 0 at $\\theta_t$. Its gradient at $\\theta_t$ has the
    extra term $-\\mathbb E_{\\pi_{\\theta_t}}[A\\log\\pi_{\\theta_t}\\nabla\\log\\pi_{\\theta_t}]$, which centring of $A$ does not
    remove: under this reading Lemma F.1's gradient match fails (recorded by its checker).

    Example:
      >>> import jax.numpy as jnp
      >>> pol = log_linear_policy(jnp.array([[1.0], [0.0], [-1.0]]))  # a = 3 outcomes, p = 1
      >>> import jax
      >>> t, reward = jnp.zeros(1), jnp.array([1.0, 0.0, 0.0])
      >>> g_f = jax.grad(pg_objective, argnums=1)(pol, t, reward, t)
      >>> g_lit = jax.grad(pg_loss_onpolicy, argnums=1)(pol, t, reward, t)
      >>> bool(jnp.allclose(g_f, g_lit))
      False
    """
    r = jnp.asarray(reward)
    lp_t = log_probs(policy, theta_t)
    pi_t = jnp.exp(lp_t)
    adv = r - jnp.dot(pi_t, r, precision=MATMUL_PRECISION)
    lp = log_probs(policy, theta)
    shift = jnp.dot(pi_t, adv * lp_t, precision=MATMUL_PRECISION)
    return -jnp.dot(jnp.exp(lp), adv * lp, precision=MATMUL_PRECISION) + shift


class LeashPoint(NamedTuple):
    """One M-projection $\\theta^+$ of a target $\\tilde q$ from $\\theta$, with every quantity Gate I compares.

    Attributes:
      kappa: $D_{KL}(\\tilde q\\|\\pi_\\theta)$, the right side of (5).
      resid: $D_{KL}(\\tilde q\\|\\pi_{\\theta^+})$.
      step_kl: $D_{KL}(\\pi_{\\theta^+}\\|\\pi_\\theta)$, the left side of (5) and the budget $K$ of (6).
      f_drop: $f(\\theta)-f(\\theta^+)=\\mathbb E_{\\tilde q}[\\log\\pi_{\\theta^+}-\\log\\pi_\\theta]$ (Lemma F.4).
      delta: $\\Delta=\\theta^+-\\theta$, `[p]`.
      hessians: $\\nabla^2\\log\\pi_\\theta(y)$ at $\\theta$, `[a, p, p]`.
      scores: $\\nabla\\log\\pi_\\theta(y)$ at $\\theta$, `[a, p]`.
      pi: $\\pi_\\theta$, `[a]`.
      q: $\\tilde q$, `[a]`.
      ok: the M-projection converged to a strict local minimiser.
    """

    kappa: Array
    resid: Array
    step_kl: Array
    f_drop: Array
    delta: Array
    hessians: Array
    scores: Array
    pi: Array
    q: Array
    ok: Array


def leash_point(
    policy, theta: Float[ArrayLike, " p"], target_logits: Float[ArrayLike, " a"]
) -> LeashPoint:
    """M-project `target_logits` from `theta` (`m_projection`) and measure both sides of Props 3.1–3.2 (jit/vmap-able).

    Eq. (5) compares `step_kl` with `kappa`; for a log-linear class the Pythagorean identity
    $\\kappa=D_{KL}(\\tilde q\\|\\pi_{\\theta^+})+D_{KL}(\\pi_{\\theta^+}\\|\\pi_\\theta)$ makes it hold exactly.

    Example:
      >>> import jax.numpy as jnp
      >>> pol = log_linear_policy(jnp.array([[1.0], [0.0], [-1.0]]))  # a = 3 outcomes, p = 1
      >>> from threegate.kl import gibbs_tilt
      >>> t = jnp.zeros(1)
      >>> target = gibbs_tilt(log_probs(pol, t), jnp.array([1.0, 0.0, 0.0]), 10.0)  # beta = 10
      >>> pt = leash_point(pol, t, target)
      >>> bool(pt.ok), bool(pt.step_kl <= pt.kappa), abs(float(pt.kappa - pt.resid - pt.step_kl)) < 1e-6
      (True, True, True)
    """
    th = jnp.asarray(theta)
    tgt = jnp.asarray(target_logits)
    mp = m_projection(policy, th, tgt)
    lp, lp_plus = log_probs(policy, th), log_probs(policy, mp.theta)
    q = jax.nn.softmax(tgt)
    return LeashPoint(
        kappa=kl_categorical(tgt, lp),
        resid=kl_categorical(tgt, lp_plus),
        step_kl=policy_kl(policy, mp.theta, th),
        f_drop=jnp.dot(q, lp_plus - lp, precision=MATMUL_PRECISION),
        delta=mp.theta - th,
        hessians=logprob_hessians(policy, th),
        scores=scores(policy, th),
        pi=jnp.exp(lp),
        q=q,
        ok=mp.converged & mp.hess_pd,
    )


def leash_ratio_limit(
    score_rows: Float[ArrayLike, "a p"], pi: Float[ArrayLike, " a"], reward: Float[ArrayLike, " a"]
) -> Array:
    """$\\lim_{\\beta\\to\\infty}D_{KL}(\\pi_{\\theta^+}\\|\\pi_\\theta)/D_{KL}(\\tilde q_\\beta\\|\\pi_\\theta)$ for $q=\\pi_\\theta$ (Prop 3.1).

    To second order in $1/\\beta$ both KLs are quadratic forms in the reward: the limit is
    $c^\\top F^{-1}c/\\mathrm{Var}_\\pi R$ with $c=S^\\top(\\pi\\circ(R-\\mathbb E_\\pi R))$ and $F=S^\\top\\mathrm{diag}(\\pi)S$ — the
    $R^2$ of the $\\pi$-weighted regression of $R$ on the scores, in $[0,1]$, equal to 1 iff $R$ (centred) lies in
    the span of the scores.

    Example:
      >>> import jax.numpy as jnp
      >>> pol = log_linear_policy(jnp.array([[1.0], [0.0], [-1.0]]))  # a = 3 outcomes, p = 1
      >>> t = jnp.zeros(1)
      >>> s, pi = scores(pol, t), jnp.exp(log_probs(pol, t))
      >>> round(float(leash_ratio_limit(s, pi, jnp.array([1.0, 0.0, -1.0]))), 4)  # reward in the span: 1
      1.0
      >>> round(float(leash_ratio_limit(s, pi, jnp.array([1.0, 0.0, 0.0]))), 4)  # not: the R^2, below 1
      0.75
    """
    s = jnp.asarray(score_rows)
    p = jnp.asarray(pi, s.dtype)
    r = jnp.asarray(reward, s.dtype)
    centred = r - jnp.dot(p, r, precision=MATMUL_PRECISION)
    c = matmul(s.T, p * centred)
    f = matmul(s.T, p[:, None] * s)
    return jnp.dot(c, jnp.linalg.solve(f, c), precision=MATMUL_PRECISION) / jnp.dot(
        p, centred**2, precision=MATMUL_PRECISION
    )
