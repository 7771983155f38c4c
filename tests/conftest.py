import importlib.util
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config

import peft_generative  # noqa: F401  (registers the PEFT type)

from .hub_server import hub, hub_push, hub_server  # noqa: F401,E402  (a real Hub-compatible server)

TINY = dict(
    vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=256,
)
TINY_CONFIGS = {
    "llama": lambda: LlamaConfig(**TINY),
    "qwen2": lambda: Qwen2Config(**TINY),
    "mistral": lambda: MistralConfig(**TINY, sliding_window=None),
}


def tiny_model(kind: str = "llama", seed: int = 0):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(TINY_CONFIGS[kind]())
    model.config._name_or_path = f"tiny-random-{kind}"
    return model.eval()


def randomize_generator(model, std: float = 0.3, seed: int = 1):
    """A fresh generator is a no-op (B = 0); give B values so adapters change outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "generator_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * std)
    return model


def small_base(tokenizer, seed: int = 0, max_positions: int = 512):
    """A tiny random Llama whose vocabulary is the real SmolLM2 tokenizer's (for tests that need real text)."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    model.config._name_or_path = "tiny-llama-smollm2-vocab"
    return model


def load_example_script(name: str):
    """Import `examples/scripts/<name>.py` as a module (the example scripts are not a package)."""
    path = Path(__file__).parent.parent / "examples" / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tokenizer(real_model_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(real_model_path)
    tok.pad_token = tok.eos_token
    return tok


@pytest.fixture(params=list(TINY_CONFIGS))
def tiny_kind(request):
    return request.param


@pytest.fixture(scope="session")
def real_model_path():
    from peft_generative.default_model import default_model_path

    return default_model_path()


@pytest.fixture
def real_model(real_model_path):
    from peft_generative.default_model import load_base_model

    return load_base_model(str(real_model_path))
