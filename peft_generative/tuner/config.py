"""`GenerativeAdapterConfig`: what the generator looks like and how contexts are encoded."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from peft import PeftConfig

from .model_card import generator_card

from .peft_type import GENERATIVE_ADAPTER

NORMALIZATIONS = ("svd", "frobenius", "none")
VALUE_SOURCES = ("layer", "embedding", "next_embedding")
ENCODINGS = ("sequential", "parallel")

# Decoder families whose attention output projection is called `o_proj` (the paper's default target).
DEFAULT_TARGET_MODULES: dict[str, list[str]] = {
    model_type: ["o_proj"]
    for model_type in (
        "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
        "gemma3_text", "olmo", "olmo2", "smollm3", "phi3", "granite", "cohere", "starcoder2", "stablelm",
    )
}

@dataclass
class GenerativeAdapterConfig(PeftConfig):
    """Configuration of a Generative Adapter generator.

    For every adapted linear layer (`d_in -> d_out`) in decoder layer `l`, the generator reads the
    residual-stream input `H` of layer `l` over the context, keeps the additive state
    `S = sum_t K_t^T V_t` (`key_dim x value_dim`) with `K = RMSNorm(H) A2^T`, `V = RMSNorm(H) A3^T`,
    normalises it to `N` and adds `delta_W = (alpha / value_dim) * B N^T A1` to the layer.

    Args:
        target_modules: names (or a regex) of the `nn.Linear` layers to adapt. Default: `o_proj` for
            Llama / Mistral / Qwen2 / Gemma style models.
        layers_to_transform: only adapt these decoder layer indices (default: all).
        layers_pattern: name of the `nn.ModuleList` holding the layers, used with `layers_to_transform`.
        key_dim: `d_r`, the key size of the state (rows of `S`).
        value_dim: `r`, the value size of the state (columns of `S`).
        rank: `k`, rank of the generated adapter for `normalization="svd"` (the rank of the exported LoRA).
        alpha: the delta is scaled by `alpha / value_dim`.
        normalization: `"svd"` (`N = U_k V_k^T`, paper's best), `"frobenius"` (`S / ||S||_F`) or `"none"`.
        window: context chunk length in tokens; positions restart in every chunk.
        encoding: `"sequential"` (chunk t is encoded by the model carrying the adapter of chunks < t) or
            `"parallel"` (every chunk encoded by the base model; contributions can be subtracted).
        max_context_tokens: optional guard; longer contexts are refused with a clear error.
        svd_grad_eps: relative smoothing of the SVD gradient's `1/(s_j^2 - s_i^2)` factors (keeps training
            finite for rank-deficient states).
        svd_tol: singular values below `svd_tol * s_max` are treated as zero (their direction is not used).
        init_from_attention: start `A2` / `A3` as the top `key_dim` / `value_dim` right singular directions (scaled
            by their singular values) of the decoder layer's own `k_proj` / `v_proj`, and the generator's norm as
            the layer's `input_layernorm`: keys and values begin as the attention's own (the option the paper's
            code offers). Rows beyond the projection's rank stay Kaiming-normal. `B` stays zero either way.
        center_keys: subtract each chunk's mean key before accumulating, `S = sum_t (K_t - mean K) V_t^T` (not in
            the paper): the state becomes the context's key/value covariance instead of containing the mean key
            times the mean value, a term most texts share. Per chunk, so states stay additive (`extend`, `forget`).
            On the default model it did not make the generated adapters more context-specific (docs/experiments.md).
        token_gate: learn a per-token gate on the state update, `S = sum_t g_t K_t^T V_t` with
            `g_t = sigmoid(w . RMSNorm(h_t) + b)` per adapted module (not in the paper; issue 22's "what gets written"):
            the generator can write names and numbers rather than function words. States stay additive
            (`extend`, `forget`). Starts at `w = 0, b = 0` (g = 1/2 for every token), which the svd normalisation
            cannot tell from no gate.
        shared_rank: rank of a learned, context-independent LoRA (`shared_B @ shared_A`) added to every generated
            adapter (not in the paper; issue 22's "separate style from content"): what every context shares (answer
            format, corpus style) can live there, so the generated part is free to be about its context. 0 (default)
            = none. The generated adapter of a context, and its plain-LoRA export, then has rank
            `generated_rank + shared_rank` (the two are concatenated: one ordinary LoRA). `shared_B` starts at zero,
            so adding the part to a trained generator leaves it exactly as it was.
        key_conv: keys also read the `key_conv` hidden states before each token, through a learned per-channel causal
            convolution (a short convolution / token shift, as in Mamba, GLA, DeltaNet and RWKV, not in the paper):
            `K_t = (h_t + sum_j c_j * h_{t-j}) A2^T`. A token's key can then say what came before it ("the ferry leaves
            from") while its value holds the token itself, which linear-attention memories need for associative
            recall. 0 (default) = none. Zero-initialised, so adding it to a trained generator leaves it exactly as it
            was. Within a chunk only (see `value_lookahead`).
        value_lookahead: the mirror variant: values also read the `value_lookahead` hidden states after each token,
            `V_t = (h_t + sum_j e_j * h_{t+j}) A3^T`, so the key of a token can store the token that follows it (an
            induction head written into the weights). 0 (default) = none; zero-initialised. Both convolutions stay
            inside a chunk: the first `key_conv` tokens of a chunk see no earlier token and the last
            `value_lookahead` tokens no later one (what a chunk boundary every `window` tokens loses); states stay
            sums of per-chunk parts, so `extend` and `forget` stay exact.
        key_lookahead: keys also read the `key_lookahead` hidden states after each token,
            `K_t = (h_t + sum_j c_j * h_{t-j} + sum_j f_j * h_{t+j}) A2^T` (not in the paper). A causal hidden state
            knows only what came before it, so in "Anaru Knox is the spouse of Indie." the key of "Anaru Knox" cannot
            say "spouse of Indie" without reading ahead; the relation then has to be found from the words after the
            value. 0 (default) = none; zero-initialised; within a chunk (its last `key_lookahead` tokens read
            less), so states stay additive.
        value_source: where the values are read (not in the paper): `"layer"` (default, the paper's) reads them from
            the same hidden state as the keys; `"embedding"` from each context token's input embedding (RMS-normalised),
            `V_t = RMSNorm(E[x_t]) A3^T`, while keys (and the gate) still read the layer. A token's identity is
            all an input embedding holds, so a value can name any word, seen in training or not, and `B` can learn one
            linear map from embeddings to the output (with tied embeddings, back to the word's logit) instead of
            learning words one by one. `"next_embedding"`: the value of token t is the input embedding of token
            t + 1, `V_t = RMSNorm(E[x_{t+1}]) A3^T`: the key (what the layer has read up to t) stores the token that
            came next, an induction head written into the weights, which can copy a word of any number of tokens
            ("is" -> "Port", "Port" -> " Ald", ...). Within a chunk: its last token stores nothing (what a chunk
            boundary every `window` tokens loses). States stay additive (`extend`, `forget`); a generator trained with
            one source is not meaningful with another.
        base_model_fingerprint: filled in automatically; the shape of the base model the generator belongs to.
    """

    target_modules: Optional[Union[list[str], str]] = field(
        default=None, metadata={"help": "Linear layers to adapt (names or regex). Default: o_proj."}
    )
    layers_to_transform: Optional[Union[list[int], int]] = field(
        default=None, metadata={"help": "Only adapt these layer indices."}
    )
    layers_pattern: Optional[Union[list[str], str]] = field(
        default=None, metadata={"help": "Name of the layer list, used with layers_to_transform."}
    )
    key_dim: int = field(default=256, metadata={"help": "d_r: key size of the context state."})
    value_dim: int = field(default=256, metadata={"help": "r: value size of the context state."})
    rank: int = field(default=64, metadata={"help": "k: rank of the generated adapter (svd)."})
    alpha: float = field(default=16.0, metadata={"help": "Scaling numerator: delta scaled by alpha / value_dim."})
    normalization: Literal["svd", "frobenius", "none"] = field(default="svd", metadata={"help": "State normalisation."})
    window: int = field(default=1024, metadata={"help": "Chunk length in tokens."})
    encoding: Literal["sequential", "parallel"] = field(default="sequential", metadata={"help": "Chunk encoding."})
    max_context_tokens: Optional[int] = field(default=None, metadata={"help": "Refuse longer contexts."})
    svd_grad_eps: float = field(default=1e-6, metadata={"help": "Relative smoothing of the SVD backward."})
    svd_tol: float = field(default=1e-6, metadata={"help": "Relative threshold for zero singular values."})
    init_from_attention: bool = field(
        default=False, metadata={"help": "Initialise A2/A3 from the layer's k_proj/v_proj (top singular directions)."}
    )
    center_keys: bool = field(
        default=False, metadata={"help": "Subtract each chunk's mean key before accumulating the state."}
    )
    token_gate: bool = field(
        default=False, metadata={"help": "Learn a per-token gate on the state update (which tokens get written)."}
    )
    shared_rank: int = field(
        default=0, metadata={"help": "Rank of a learned context-independent LoRA added to every adapter (0 = none)."}
    )
    key_conv: int = field(
        default=0, metadata={"help": "Keys also read this many earlier hidden states (short convolution; 0 = none)."}
    )
    value_lookahead: int = field(
        default=0, metadata={"help": "Values also read this many later hidden states (mirror variant; 0 = none)."}
    )
    key_lookahead: int = field(
        default=0, metadata={"help": "Keys also read this many later hidden states (0 = none)."}
    )
    value_source: Literal["layer", "embedding", "next_embedding"] = field(
        default="layer",
        metadata={"help": "Values from the layer's hidden state (paper), the token embeddings or the next token's."},
    )
    base_model_fingerprint: Optional[dict] = field(
        default=None, metadata={"help": "Filled automatically: shape of the base model."}
    )

    def __post_init__(self):
        super().__post_init__()
        self.peft_type = GENERATIVE_ADAPTER
        if isinstance(self.target_modules, list):
            self.target_modules = set(self.target_modules)
        if isinstance(self.target_modules, (set, tuple)) and not self.target_modules:
            raise ValueError("`target_modules` is empty: name at least one linear layer, e.g. ['o_proj'].")
        if self.layers_pattern and not self.layers_to_transform:
            raise ValueError("`layers_pattern` only makes sense together with `layers_to_transform`.")
        for name in ("key_dim", "value_dim", "rank", "window"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        for name in ("shared_rank", "key_conv", "value_lookahead", "key_lookahead"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"`{name}` must be a non-negative integer (0 = none), got {value!r}.")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"`normalization` must be one of {NORMALIZATIONS}, got {self.normalization!r}.")
        if self.value_source not in VALUE_SOURCES:
            raise ValueError(f"`value_source` must be one of {VALUE_SOURCES}, got {self.value_source!r}.")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"`encoding` must be one of {ENCODINGS}, got {self.encoding!r}.")
        if self.normalization == "svd" and self.rank > min(self.key_dim, self.value_dim):
            raise ValueError(
                f"`rank` ({self.rank}) cannot exceed min(key_dim, value_dim) = {min(self.key_dim, self.value_dim)}: "
                "lower `rank` or raise the state sizes."
            )
        if not (isinstance(self.alpha, (int, float)) and self.alpha > 0):
            raise ValueError(f"`alpha` must be a positive number, got {self.alpha!r}.")
        if self.max_context_tokens is not None and self.max_context_tokens < 1:
            raise ValueError(f"`max_context_tokens` must be positive or None, got {self.max_context_tokens!r}.")
        for name in ("svd_grad_eps", "svd_tol"):
            if not (0 <= getattr(self, name) < 1):
                raise ValueError(f"`{name}` must be in [0, 1), got {getattr(self, name)!r}.")

    @property
    def scaling(self) -> float:
        return self.alpha / self.value_dim

    @property
    def generated_rank(self) -> int:
        """Rank of the part of an adapter written from its context."""
        return self.rank if self.normalization == "svd" else self.value_dim

    @property
    def adapter_rank(self) -> int:
        """Rank of a generated adapter (and of its LoRA export): the context's part plus the shared part."""
        return self.generated_rank + self.shared_rank

    def save_pretrained(self, save_directory: str, **kwargs) -> None:
        super().save_pretrained(save_directory, **kwargs)
        # peft writes README.md before the config: add how to load a generator to its card
        readme = os.path.join(save_directory, "README.md")
        if os.path.isfile(readme):
            generator_card(readme).save(readme)
