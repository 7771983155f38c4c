"""The memory plan of docs/distributed.md: per-GPU memory of generator training under FSDP2, on paper.

    python examples/scripts/memory_plan.py                         # Mistral-7B-Instruct, 8 GPUs, bf16
    python examples/scripts/memory_plan.py --model smollm2 --gpus 2 --dtype-bytes 4 --context 256 --target 512 \
        --window 1024 --key-dim 80 --value-dim 80                  # the CPU measurement of sharded_memory.py

Counts, per process: the base model's shard, the layers FSDP gathers at once, the generator (whole on every
process: fp32 weights, gradients and AdamW's two moments), and the activations kept for the backward pass of one
row: the context's encoding and the target's forward, with and without gradient checkpointing. Activations per
token and decoder layer (elements): the layer input and the two RMSNorm outputs (3d), q, k, v (d + 2 d_kv), the
attention output and the residual after it (2d), gate, up, SiLU(gate) and their product (4 I), plus the norms'
fp32 upcasts (2d in fp32); with SDPA's memory-efficient kernels no seq x seq matrix is kept. With gradient
checkpointing: the layer inputs only, and one layer's activations again while it is recomputed.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

GIB = 2**30


@dataclass
class Shape:
    hidden: int
    layers: int
    intermediate: int
    kv_dim: int
    vocab: int
    params: float  # total parameters of the base model
    tied: bool


MODELS = {
    # mistralai/Mistral-7B-Instruct-v0.3: 32 layers, d 4096, 8 KV heads of 128, MLP 14336, vocab 32768
    "mistral-7b": Shape(4096, 32, 14336, 1024, 32768, 7.248e9, False),
    # HuggingFaceTB/SmolLM2-135M-Instruct: 30 layers, d 576, 3 KV heads of 64, MLP 1536, vocab 49152, tied
    "smollm2": Shape(576, 30, 1536, 192, 49152, 134.5e6, True),
}


def generator_params(m: Shape, key_dim: int, value_dim: int, adapted_layers: int) -> int:
    """o_proj adapted (d_in = d_out = d): norm d, A1 key_dim x d, A2 key_dim x d, A3 value_dim x d, B d x value_dim."""
    return adapted_layers * (m.hidden + 2 * key_dim * m.hidden + 2 * value_dim * m.hidden)


def activation_bytes_per_token_layer(m: Shape, dtype_bytes: int) -> int:
    elements = 3 * m.hidden + m.hidden + 2 * m.kv_dim + 2 * m.hidden + 4 * m.intermediate
    return elements * dtype_bytes + 2 * m.hidden * 4


def plan(m: Shape, gpus: int, dtype_bytes: int, context: int, target: int, window: int, key_dim: int,
         value_dim: int, checkpointing: bool, encoding: str = "sequential") -> dict[str, float]:
    """Bytes per process, by part, for one row of `context` tokens and `target` target tokens."""
    layer_params = (m.params - m.vocab * m.hidden * (1 if m.tied else 2)) / m.layers
    generator = generator_params(m, key_dim, value_dim, m.layers)
    per_token_layer = activation_bytes_per_token_layer(m, dtype_bytes)
    layer_input = m.hidden * dtype_bytes
    # the context: chunks after the first go through the LM with gradients (sequential encoding); every token's
    # normed hidden state is kept for the generator's own backward (fp32, every adapted layer)
    graded_context = max(0, context - window) if encoding == "sequential" else 0
    kept_for_generator = context * m.layers * m.hidden * 4
    tokens_with_lm_grad = graded_context + target
    if checkpointing:
        lm = tokens_with_lm_grad * m.layers * layer_input + max(graded_context, target) * per_token_layer
    else:
        lm = tokens_with_lm_grad * m.layers * per_token_layer
    return {
        "base shard": m.params * dtype_bytes / gpus,
        "gathered layers (2) and embeddings": 2 * layer_params * dtype_bytes + m.vocab * m.hidden * dtype_bytes
        * (1 if m.tied else 2),
        "generator weights + grads (fp32)": generator * 8,
        "AdamW moments (fp32)": generator * 8,
        "activations": lm + kept_for_generator,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="mistral-7b")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--dtype-bytes", type=int, default=2, help="2: bf16 base and activations; 4: fp32")
    parser.add_argument("--context", type=int, nargs="*", default=[2048, 8192])
    parser.add_argument("--target", type=int, default=512, help="target tokens (completion + reconstruction)")
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--key-dim", type=int, default=256)
    parser.add_argument("--value-dim", type=int, default=256)
    parser.add_argument("--encoding", choices=("sequential", "parallel"), default="sequential")
    args = parser.parse_args()
    m = MODELS[args.model]
    print(f"{args.model}: generator {generator_params(m, args.key_dim, args.value_dim, m.layers) / 1e6:.0f}M "
          f"parameters; per process on {args.gpus} GPUs, one row per process (GiB)")
    for context in args.context:
        for checkpointing in (False, True):
            parts = plan(m, args.gpus, args.dtype_bytes, context, args.target, args.window, args.key_dim,
                         args.value_dim, checkpointing, args.encoding)
            detail = ", ".join(f"{k} {v / GIB:.2f}" for k, v in parts.items())
            print(f"context {context}, checkpointing {'on' if checkpointing else 'off'}: "
                  f"{sum(parts.values()) / GIB:.1f} ({detail})")


if __name__ == "__main__":
    main()
