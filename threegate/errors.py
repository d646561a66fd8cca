"""User-facing errors: each carries a one-line message that names the problem.

The command line prints `threegate <command>: error: <message>` and exits with status 2 for these.
"""

__all__ = ["CheckpointError", "FormatError", "MismatchError", "NonFiniteError", "ThreegateError"]


class ThreegateError(Exception):
    """Base class of errors caused by the user's input rather than by a bug."""


class CheckpointError(ThreegateError, ValueError):
    """A checkpoint that cannot be read: missing, truncated, corrupt."""


class FormatError(CheckpointError):
    """A path whose format threegate does not know."""


class MismatchError(ThreegateError, ValueError):
    """Checkpoints (or arrays) that do not align: names, shapes, dtypes."""


class NonFiniteError(ThreegateError, ValueError):
    """NaN or Inf where finite values are required."""
