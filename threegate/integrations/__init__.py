"""Integrations with training libraries: `ThreeGateCallback` for `transformers` / TRL trainers (the `hf` extra)."""

from threegate.integrations.callback import ThreeGateCallback as ThreeGateCallback
from threegate.integrations.callback import step_summary as step_summary
from threegate.integrations.callback import to_bf16 as to_bf16

__all__ = ["ThreeGateCallback", "step_summary", "to_bf16"]
