"""Top-k singular subspaces by randomized subspace iteration, with a computed a-posteriori bound on their angles.

Method (Halko, Martinsson & Tropp 2011, Alg. 4.4): $Y = A\\Omega$ for a Gaussian $\\Omega$ `[n, l]`,
$l = k + p$; `iters` rounds of $Q \\leftarrow \\mathrm{qr}(A\\,\\mathrm{qr}(A^\\top Q))$; $B = Q^\\top A$ `[l, n]`,
$B = \\tilde U_B \\tilde\\Sigma \\tilde V^\\top$, $\\tilde U = Q\\tilde U_B$. Float64 NumPy throughout. Cost
$\\approx 2(2\\,\\mathrm{iters} + 2)\\,mnl$ flops against $O(mn\\min(m,n))$ for the full decomposition.

Certificate. With $E = A - QB$ (so $A = QB + E$ and $QB$ has the exact SVD $\\tilde U\\tilde\\Sigma\\tilde V^\\top$):

* an upper bound $\\bar\\sigma_{k+1} \\ge \\sigma_{k+1}(A)$: given (`sigma_next`, e.g. from the singular
  values that `compare` computes anyway, by `eigvalsh` of the Gram matrix, plus their error bound), else
  $\\tilde\\sigma_{k+1} + \\hat\\varepsilon$ (Weyl) with $\\|E\\|_2 \\le \\hat\\varepsilon =
  10\\sqrt{2/\\pi}\\,\\max_{i\\le r}\\|E\\omega_i\\|$ with probability at least $1 - 10^{-r}$ for $r$ Gaussian
  probes (HMT Lemma 4.1) — valid but, as $\\|E\\omega\\| \\approx \\|E\\|_F$, vacuous for the flat tails of weight
  matrices;
* the gap $\\delta = \\tilde\\sigma_k - \\bar\\sigma_{k+1}$ separates $\\tilde\\sigma_{1..k}$ from
  $\\sigma_{k+1..}(A)$ when positive;
* Wedin's $\\sin\\Theta$ theorem with the residuals $R = A\\tilde V_k - \\tilde U_k\\tilde\\Sigma_k$ and
  $S = A^\\top\\tilde U_k - \\tilde V_k\\tilde\\Sigma_k$ (both computed):
  $\\max(\\|\\sin\\Theta(\\tilde U_k, U_k)\\|_2, \\|\\sin\\Theta(\\tilde V_k, V_k)\\|_2) \\le \\max(\\|R\\|_2,\\|S\\|_2)/\\delta$.

`TopK.sin_bound` is that bound (None when $\\delta \\le 0$: no certificate, use the full decomposition).
"""

import math
from typing import NamedTuple

import numpy as np

__all__ = ["TopK", "topk_spectrum"]


class TopK(NamedTuple):
    """Top-k singular triplets of a matrix and their certificate.

    Attributes:
      s: `[l]` Ritz singular values $\\tilde\\sigma$ (lower bounds of $\\sigma_i(A)$, descending).
      u: `[m, k]`, v: `[n, k]` top-k singular vectors.
      eps_bound: $\\hat\\varepsilon$, a probabilistic upper bound on $\\|A - QB\\|_2$ (failure prob. `fail_prob`;
        not used when `sigma_next` is given).
      residual: $\\max(\\|R\\|_2, \\|S\\|_2)$.
      gap: $\\delta$ (may be $\\le 0$).
      sin_bound: certified bound on the sine of the largest principal angle to the true top-k subspaces, or None.
      fail_prob: $10^{-r}$.
    """

    s: np.ndarray
    u: np.ndarray
    v: np.ndarray
    eps_bound: float
    residual: float
    gap: float
    sin_bound: float | None
    fail_prob: float


def _orth(x: np.ndarray) -> np.ndarray:
    return np.linalg.qr(x)[0]


def topk_spectrum(
    w: np.ndarray,
    k: int,
    oversample: int = 16,
    iters: int = 4,
    probes: int = 10,
    seed: int = 0,
    sigma_next: float | None = None,
) -> TopK:
    """Randomized top-k SVD of `w` `[m, n]` with the a-posteriori bound of the module docstring.

    Args:
      w: real matrix (any float dtype; used in float64).
      k: subspace dimension, $1 \\le k < \\min(m, n)$.
      oversample: $p$, extra columns ($l = \\min(k + p, \\min(m, n))$).
      iters: power (subspace) iterations.
      probes: $r$, Gaussian probes of the error estimate.
      seed: of $\\Omega$ and the probes (the result is a deterministic function of `w` and `seed`).
      sigma_next: an upper bound of $\\sigma_{k+1}(A)$ (deterministic certificate); None: the probabilistic one.
    """
    a = np.asarray(w, np.float64)
    if a.ndim != 2:
        raise ValueError(f"w must be 2-D, got shape {a.shape}")
    m, n = a.shape
    if not 1 <= k < min(m, n):
        raise ValueError(f"k must be in [1, min(m, n) - 1] = [1, {min(m, n) - 1}], got {k}")
    rng = np.random.default_rng(seed)
    ell = min(k + oversample, min(m, n))
    q = _orth(a @ rng.standard_normal((n, ell)))
    for _ in range(iters):
        q = _orth(a @ _orth(a.T @ q))
    b = q.T @ a
    ub, s, vt = np.linalg.svd(b, full_matrices=False)
    u = q @ ub[:, :k]
    v = vt[:k].T
    omega = rng.standard_normal((n, probes))
    err = a @ omega - q @ (b @ omega)
    eps_bound = 10 * math.sqrt(2 / math.pi) * float(np.max(np.linalg.norm(err, axis=0)))
    r_res = a @ v - u * s[:k]
    s_res = a.T @ u - v * s[:k]
    residual = max(float(np.linalg.norm(r_res, 2)), float(np.linalg.norm(s_res, 2)))
    if sigma_next is None:
        sigma_next = (s[k] if k < s.size else 0.0) + eps_bound
    gap = float(s[k - 1] - sigma_next)
    bound = residual / gap if gap > 0 else None
    return TopK(s, u, v, eps_bound, residual, gap, bound, 10.0**-probes)
