"""Toy models of the theory, used by the theorem checkers (`proofs_numeric`), the simulations (`sims`) and the
tests, not by the checkpoint tools or the training lab:

* `threegate.toy.policy`: small categorical policies (log-linear and tanh-feature), their KL leash and
  M-projection;
* `threegate.toy.autoregressive`: a tabular first-order autoregressive policy (sequence KL, clipping);
* `threegate.toy.natural_step`: KL-budgeted natural-gradient steps on a weight matrix;
* `threegate.toy.rates`: log-log slope fits for "does the theory's rate show up numerically".

Import the submodules themselves; nothing is imported here.
"""
