"""Gate II — model geometry: singular subspaces, principal angles, spectral drift and their bound checks.

Covers Thm 3.3 (Wedin, paper and rigorous forms), Cor 3.4 (Weyl, Mirsky), Cor 3.5 (Ky Fan), Lemma F.10 / Eq. 7
(the layer-conditioned leash), Lemmas F.11–F.12, Cor F.13 (projector identity) and the App. F.3 Schur step of
Zhu et al., "The Path Not Taken: RLVR Provably Learns Off the Principals" (arXiv 2511.08567).

Shape conventions: weights `w`, `w0`, `w1`, `dw` are `[m, n]` (HF `[out, in]`), bases `u` `[m, k]`, `v` `[n, k]`,
`k` a static rank with $1 \\le k \\le \\min(m, n)$. $\\mathrm{vec}$ is row-major (`dw.reshape(-1)`). bf16/f16 inputs
are upcast to float32; float32 and float64 keep their dtype (float64 needs `jax.enable_x64`). "Subspace" here always
means a span of singular vectors; coordinate masks (the paper's "principal weights") live in `threegate.masks`.

Static misuse (rank, shape, dtype kind, `k` out of range) raises `ValueError`/`TypeError` at trace time;
value-dependent premises (a positive gap, a met budget) come back as data in `BoundCheck.premise`.

Example: Thm 3.3 (Eq. 8) as printed, $\\sin\\Theta\\le\\|\\Delta W\\|_2/\\gamma_k$, fails once
$\\|\\Delta W\\|_2/\\gamma_k\\in(\\tfrac12,1)$ swaps the top singular pair; the rigorous form
$\\|\\Delta W\\|_2/(\\gamma_k-\\|\\Delta W\\|_2)$ holds:

    >>> import jax.numpy as jnp
    >>> w0, w1 = jnp.diag(jnp.array([1.0, 0.0])), jnp.diag(jnp.array([0.45, 0.55]))  # gamma_1 = 1, |dW| = 0.55
    >>> paper = wedin_check(w0, w1, 1, form="paper")
    >>> round(float(paper.lhs), 3), round(float(paper.rhs), 3), round(float(paper.ratio), 3)
    (1.0, 0.55, 1.818)
    >>> rigorous = wedin_check(w0, w1, 1)
    >>> bool(rigorous.premise), round(float(rigorous.ratio), 3)
    (True, 0.818)
"""

from threegate._types import BoundCheck as BoundCheck
from threegate.spectral._checks import (
    ky_fan_check as ky_fan_check,
)
from threegate.spectral._checks import (
    leash_check as leash_check,
)
from threegate.spectral._checks import (
    mirsky_check as mirsky_check,
)
from threegate.spectral._checks import (
    projector_check as projector_check,
)
from threegate.spectral._checks import (
    schur_check as schur_check,
)
from threegate.spectral._checks import (
    schur_complement as schur_complement,
)
from threegate.spectral._checks import (
    wedin_check as wedin_check,
)
from threegate.spectral._checks import (
    weyl_check as weyl_check,
)
from threegate.spectral._subspace import TopK as TopK
from threegate.spectral._subspace import principal_angles as principal_angles
from threegate.spectral._subspace import projector_distance as projector_distance
from threegate.spectral._subspace import sin_theta as sin_theta
from threegate.spectral._subspace import spectral_gap as spectral_gap
from threegate.spectral._subspace import spectral_shift as spectral_shift
from threegate.spectral._subspace import subspace_energy_fraction as subspace_energy_fraction
from threegate.spectral._subspace import (
    subspace_energy_fraction_from_basis as subspace_energy_fraction_from_basis,
)
from threegate.spectral._subspace import subspace_energy_null as subspace_energy_null
from threegate.spectral._subspace import top_k as top_k

__all__ = [
    "BoundCheck",
    "TopK",
    "ky_fan_check",
    "leash_check",
    "mirsky_check",
    "principal_angles",
    "projector_check",
    "projector_distance",
    "schur_check",
    "schur_complement",
    "sin_theta",
    "spectral_gap",
    "spectral_shift",
    "subspace_energy_fraction",
    "subspace_energy_fraction_from_basis",
    "subspace_energy_null",
    "top_k",
    "wedin_check",
    "weyl_check",
]
