"""Hugging Face interop: export a model as a folder that `transformers` (and vLLM, TRL, lm-eval) load offline.

Nothing here imports torch or transformers; the files are written with `safetensors`-compatible code and JSON.
"""

from threegate.hf.config import SpecialIds as SpecialIds
from threegate.hf.config import generation_config as generation_config
from threegate.hf.config import hf_config as hf_config
from threegate.hf.config import llama_config_from_hf as llama_config_from_hf
from threegate.hf.export import TOKENIZER_CHOICES as TOKENIZER_CHOICES
from threegate.hf.export import ExportResult as ExportResult
from threegate.hf.export import export_hf as export_hf
from threegate.hf.export import to_bf16 as to_bf16
from threegate.hf.tokenizer_files import char_tokenizer as char_tokenizer
from threegate.hf.tokenizer_files import tokenizer_files as tokenizer_files
