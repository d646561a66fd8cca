"""`threegate compare`: every checkpoint metric of the paper, streamed tensor by tensor (CPU or GPU via JAX).

`tensor_metrics` is the per-tensor record as a pure function of (name, W0, W1, k, alpha); `run_compare` streams
checkpoints into JSONL; `summarize` aggregates a run folder (Table 1, per-type means, Table 2);
`threegate.compare.figures` draws Figs 2–5 (the only module that imports matplotlib).
"""

from threegate.compare.metrics import BaseState as BaseState
from threegate.compare.metrics import TensorResult as TensorResult
from threegate.compare.metrics import prepare_base as prepare_base
from threegate.compare.metrics import tensor_metrics as tensor_metrics
from threegate.compare.run import CompareConfig as CompareConfig
from threegate.compare.run import run_compare as run_compare
from threegate.compare.spectrum import Spectrum as Spectrum
from threegate.compare.spectrum import gram_spectrum as gram_spectrum
from threegate.compare.spectrum import spectral_norm as spectral_norm
from threegate.compare.summary import format_summary as format_summary
from threegate.compare.summary import summarize as summarize

__all__ = [
    "BaseState",
    "CompareConfig",
    "Spectrum",
    "TensorResult",
    "format_summary",
    "gram_spectrum",
    "prepare_base",
    "run_compare",
    "spectral_norm",
    "summarize",
    "tensor_metrics",
]
