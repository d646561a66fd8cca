"""threegate: the Three-Gate theory of RLVR weight updates (Zhu et al., arXiv 2511.08567), under test.

Gate I (KL anchor) lives in `threegate.kl`, Gate II (spectral geometry) in `threegate.spectral`, Gate III (bf16
precision) in `threegate.bf16`; coordinate masks and their overlaps in `threegate.masks`; checkpoint streaming in
`threegate.checkpoints`; the training lab in `threegate.lm`. Nothing runs at import.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("threegate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
