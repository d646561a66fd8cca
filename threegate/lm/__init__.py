"""The RL lab's language model: a JAX Llama (tiny from scratch, or SmolLM2-135M from GGUF), its sampler and tokenizer.

Nothing runs at import (the GGUF reader is imported inside `load_smollm2`).
"""

from threegate.lm.config import LlamaConfig as LlamaConfig
from threegate.lm.fit import evaluate as evaluate
from threegate.lm.fit import fit as fit
from threegate.lm.model import KVCache as KVCache
from threegate.lm.model import decode_step as decode_step
from threegate.lm.model import forward as forward
from threegate.lm.model import forward_with_cache as forward_with_cache
from threegate.lm.model import init_params as init_params
from threegate.lm.model import log_probs as log_probs
from threegate.lm.model import param_shapes as param_shapes
from threegate.lm.sample import GenerateOutput as GenerateOutput
from threegate.lm.sample import generate as generate
from threegate.lm.sample import top_p_filter as top_p_filter
from threegate.lm.smollm2 import load_smollm2 as load_smollm2
from threegate.lm.tokenizer import Tokenizer as Tokenizer
from threegate.lm.train import TrainConfig as TrainConfig
from threegate.lm.train import make_train as make_train
