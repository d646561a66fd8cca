"""Reading checkpoints one tensor at a time: safetensors (single file or HF-sharded), GGUF, PEFT LoRA adapters.

`open_checkpoint` returns a lazy `Checkpoint` (HF names, `[out, in]` layout); `aligned` streams the same tensor
from several checkpoints at once after `check_alignment`; `save_safetensors` writes (optionally sharded)
safetensors atomically, tensor by tensor. `architecture_for` types tensors from `config.json`
(`threegate.checkpoints.arch`); `open_tuned` reads a PEFT adapter folder as its merged model
(`threegate.checkpoints.adapter`).
"""

from threegate.checkpoints.adapter import AdapterCheckpoint as AdapterCheckpoint
from threegate.checkpoints.adapter import is_adapter as is_adapter
from threegate.checkpoints.adapter import open_tuned as open_tuned
from threegate.checkpoints.arch import PROJECTION_TYPES as PROJECTION_TYPES
from threegate.checkpoints.arch import Architecture as Architecture
from threegate.checkpoints.arch import View as View
from threegate.checkpoints.arch import architecture_for as architecture_for
from threegate.checkpoints.base import FORMATS as FORMATS
from threegate.checkpoints.base import Checkpoint as Checkpoint
from threegate.checkpoints.base import TensorInfo as TensorInfo
from threegate.checkpoints.formats import SafetensorsCheckpoint as SafetensorsCheckpoint
from threegate.checkpoints.formats import open_checkpoint as open_checkpoint
from threegate.checkpoints.gguf import GGUFCheckpoint as GGUFCheckpoint
from threegate.checkpoints.gguf import LlamaHParams as LlamaHParams
from threegate.checkpoints.gguf import TokenizerSpec as TokenizerSpec
from threegate.checkpoints.gguf import gguf_to_hf_name as gguf_to_hf_name
from threegate.checkpoints.gguf import rope_permutation as rope_permutation
from threegate.checkpoints.gguf import smollm2_gguf_path as smollm2_gguf_path
from threegate.checkpoints.stream import LAYER_TYPES as LAYER_TYPES
from threegate.checkpoints.stream import LINEAR_TYPES as LINEAR_TYPES
from threegate.checkpoints.stream import AlignedNames as AlignedNames
from threegate.checkpoints.stream import AlignedTensors as AlignedTensors
from threegate.checkpoints.stream import aligned as aligned
from threegate.checkpoints.stream import check_alignment as check_alignment
from threegate.checkpoints.stream import classify as classify
from threegate.checkpoints.stream import is_linear as is_linear
from threegate.checkpoints.stream import layer_index as layer_index
from threegate.checkpoints.stream import stream_key as stream_key
from threegate.checkpoints.write import save_safetensors as save_safetensors
from threegate.checkpoints.write import save_safetensors_stream as save_safetensors_stream
