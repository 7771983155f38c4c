"""`GenerativeLinear`: a linear layer plus the generator that writes its per-context low-rank delta."""

from __future__ import annotations

import math
from typing import Optional

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from .config import GenerativeAdapterConfig
from .router import ContextRouter
from .svd import normalize_state

RMS_EPS = 1e-6


def _rms_normed(h: torch.Tensor) -> torch.Tensor:
    """`h / RMS(h)` over the last dimension (the RMS computed in fp32)."""
    return h * torch.rsqrt(h.float().pow(2).mean(-1, keepdim=True) + RMS_EPS).to(h.dtype)


class GenerativeLinear(nn.Module, BaseTunerLayer):
    """Wraps an `nn.Linear` (`d_in -> d_out`) inside decoder layer `layer_index`.

    Generator parameters (per adapter name, as in peft's LoRA layers):
    `generator_norm` (d), `generator_A1` (d_r x d_in), `generator_A2` (d_r x d), `generator_A3` (r x d),
    `generator_B` (d_out x r, zero-initialised so a fresh generator is a no-op); with `token_gate`, `generator_gate`
    (d + 1); with `shared_rank` s > 0, the context-independent LoRA `generator_shared_A` (s x d_in) and
    `generator_shared_B` (d_out x s, zero-initialised); with `key_conv` j > 0, `generator_key_conv` (j x d), and with
    `value_lookahead` j > 0, `generator_value_conv` (j x d), and with `key_lookahead` j > 0, `generator_key_lookahead`
    (j x d): per-channel convolution taps, zero-initialised.

    The layer never stores a context. In `forward` it asks the model's `ContextRouter` for the context of the
    current call and applies that context's precomputed factors, row by row: `y = W x + B_i (A_i x)`.
    """

    adapter_layer_names = ("generator_norm", "generator_A1", "generator_A2", "generator_A3", "generator_B",
                           "generator_gate", "generator_shared_A", "generator_shared_B", "generator_key_conv",
                           "generator_value_conv", "generator_key_lookahead")
    other_param_names = ()

    def __init__(
        self,
        base_layer: nn.Module,
        adapter_name: str,
        config: GenerativeAdapterConfig,
        hidden_size: int,
        module_key: str,
        layer_index: int,
        router: ContextRouter,
    ):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(
                f"Generative Adapter can only adapt torch.nn.Linear layers; `{module_key}` is "
                f"{type(base_layer).__name__}. Choose other `target_modules`."
            )
        self.base_layer = base_layer
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features
        self.hidden_size = hidden_size
        self.module_key = module_key
        self.layer_index = layer_index
        self.router = router
        self.configs: dict[str, GenerativeAdapterConfig] = {}
        self.generator_norm = nn.ParameterDict()
        self.generator_A1 = nn.ParameterDict()
        self.generator_A2 = nn.ParameterDict()
        self.generator_A3 = nn.ParameterDict()
        self.generator_B = nn.ParameterDict()
        self.generator_gate = nn.ParameterDict()  # only with `token_gate`: `[w; b]`, `g_t = sigmoid(w . h_t + b)`
        self.generator_shared_A = nn.ParameterDict()  # only with `shared_rank`: the context-independent LoRA
        self.generator_shared_B = nn.ParameterDict()
        self.generator_key_conv = nn.ParameterDict()  # only with `key_conv`: taps on h_{t-1}, h_{t-2}, ...
        self.generator_value_conv = nn.ParameterDict()  # only with `value_lookahead`: taps on h_{t+1}, h_{t+2}, ...
        self.generator_key_lookahead = nn.ParameterDict()  # only with `key_lookahead`: taps on h_{t+1}, h_{t+2}, ...
        self._disable_adapters = False
        self.merged_adapters = []
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config: GenerativeAdapterConfig) -> None:
        weight = self.base_layer.weight
        factory = {"device": weight.device, "dtype": weight.dtype if weight.dtype.is_floating_point else torch.float32}
        d, d_in, d_out = self.hidden_size, self.in_features, self.out_features
        self.configs[adapter_name] = config
        self.generator_norm[adapter_name] = nn.Parameter(torch.ones(d, **factory))
        self.generator_A1[adapter_name] = nn.Parameter(torch.empty(config.key_dim, d_in, **factory))
        self.generator_A2[adapter_name] = nn.Parameter(torch.empty(config.key_dim, d, **factory))
        self.generator_A3[adapter_name] = nn.Parameter(torch.empty(config.value_dim, d, **factory))
        self.generator_B[adapter_name] = nn.Parameter(torch.zeros(d_out, config.value_dim, **factory))
        if config.token_gate:
            self.generator_gate[adapter_name] = nn.Parameter(torch.zeros(d + 1, **factory))
        if config.shared_rank:
            self.generator_shared_A[adapter_name] = nn.Parameter(torch.empty(config.shared_rank, d_in, **factory))
            self.generator_shared_B[adapter_name] = nn.Parameter(torch.zeros(d_out, config.shared_rank, **factory))
        if config.key_conv:
            self.generator_key_conv[adapter_name] = nn.Parameter(torch.zeros(config.key_conv, d, **factory))
        if config.value_lookahead:
            self.generator_value_conv[adapter_name] = nn.Parameter(torch.zeros(config.value_lookahead, d, **factory))
        if config.key_lookahead:
            self.generator_key_lookahead[adapter_name] = nn.Parameter(torch.zeros(config.key_lookahead, d, **factory))
        self.reset_generator(adapter_name)
        self.set_adapter(self.active_adapters)

    @torch.no_grad()
    def reset_generator(self, adapter_name: str) -> None:
        """Kaiming-normal A1, A2, A3 (and shared_A); B = 0, shared_B = 0 and the convolution taps 0 (the model starts
        exactly as the base model)."""
        for name in ("generator_A1", "generator_A2", "generator_A3", "generator_shared_A"):
            if adapter_name in getattr(self, name):
                nn.init.kaiming_normal_(getattr(self, name)[adapter_name], a=math.sqrt(5))
        self.generator_B[adapter_name].zero_()
        for name in ("generator_shared_B", "generator_key_conv", "generator_value_conv", "generator_key_lookahead"):
            if adapter_name in getattr(self, name):
                getattr(self, name)[adapter_name].zero_()
        self.generator_norm[adapter_name].fill_(1.0)
        if adapter_name in self.generator_gate:
            self.generator_gate[adapter_name].zero_()  # g = 1/2 for every token: no change under svd normalisation

    def generator_tensors(self, adapter_name: str) -> dict[str, nn.Parameter]:
        """The generator's tensors of one adapter, by name, in a fixed order (the gate and the shared LoRA only when
        it has them)."""
        return {
            name: getattr(self, name)[adapter_name]
            for name in self.adapter_layer_names
            if adapter_name in getattr(self, name)
        }

    @torch.no_grad()
    def init_from_attention(self, adapter_name: str, decoder_layer: nn.Module) -> None:
        """A2 / A3 from the top right singular directions of the decoder layer's `k_proj` / `v_proj` (scaled by the
        singular values), the norm from its `input_layernorm`: the generator's keys and values start as the
        attention's. Rows beyond a projection's rank keep their Kaiming init; B stays zero."""
        modules = dict(decoder_layer.named_modules())
        for target, suffix in (("generator_A2", "k_proj"), ("generator_A3", "v_proj")):
            found = [m for name, m in modules.items() if name.rsplit(".", 1)[-1] == suffix]
            if len(found) != 1 or not isinstance(found[0], nn.Linear) or found[0].in_features != self.hidden_size:
                raise ValueError(
                    f"`init_from_attention` needs exactly one nn.Linear `{suffix}` reading the hidden state in the "
                    f"decoder layer of `{self.module_key}`, found {len(found)}. Set init_from_attention=False."
                )
            param = getattr(self, target)[adapter_name]
            _, s, vh = torch.linalg.svd(found[0].weight.detach().float(), full_matrices=False)
            rows = min(param.shape[0], s.shape[0])
            param[:rows] = (s[:rows, None] * vh[:rows]).to(param.dtype)
        norm = getattr(decoder_layer, "input_layernorm", None)
        if norm is not None and "rms" in type(norm).__name__.lower():
            # the gain the norm applies to a unit-RMS input: `w` for Llama-style, `1 + w` for Gemma-style RMSNorm
            target = self.generator_norm[adapter_name]
            unit = torch.ones(1, self.hidden_size, device=target.device, dtype=target.dtype)
            gain = norm(unit).reshape(-1).to(target.dtype)
            if gain.shape == target.shape and torch.isfinite(gain).all():
                target.copy_(gain)

    # ---- generator math -------------------------------------------------------------------------------------
    def state_update(self, hidden: torch.Tensor, mask: torch.Tensor, adapter_name: str,
                     token_states: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Contribution `sum_t K_t^T V_t` of one chunk: hidden `(b, n, d)`, mask `(b, n)` -> `(b, d_r, r)` fp32.
        `token_states` `(b, n, d)`: the chunk's input embeddings, which the values read with `value_source`
        `"embedding"` or `"next_embedding"` (required then, ignored for `"layer"`).

        Always computed without autocast: the state is the method's own sum, kept in the generator's dtype and summed
        in fp32. Under bf16 autocast the product would be rounded to 8 bits, and the svd normalisation would promote
        that rounding noise (~1e-3 of the largest singular value, far above `svd_tol`) to whole directions of a short
        context's adapter."""
        with torch.autocast(hidden.device.type, enabled=False):
            return self._state_update(hidden, mask, adapter_name, token_states)

    def _state_update(self, hidden: torch.Tensor, mask: torch.Tensor, adapter_name: str,
                      token_states: Optional[torch.Tensor]) -> torch.Tensor:
        a2 = self.generator_A2[adapter_name]
        a3 = self.generator_A3[adapter_name]
        valid = mask.unsqueeze(-1).to(a2.dtype)
        h = (_rms_normed(hidden.to(a2.dtype)) * self.generator_norm[adapter_name]) * valid
        read = h
        source = self.configs[adapter_name].value_source
        if source != "layer":
            if token_states is None or token_states.shape != hidden.shape:
                raise ValueError(
                    f"value_source={source!r} needs the chunk's input embeddings, shaped like the hidden states "
                    f"{tuple(hidden.shape)}; got {None if token_states is None else tuple(token_states.shape)}."
                )
            read = _rms_normed(token_states.to(a2.dtype)) * valid
            if source == "next_embedding":  # token t stores token t + 1 (nothing after the chunk's last token)
                read = torch.cat([read[:, 1:], read.new_zeros(read.shape[0], 1, read.shape[2])], 1) * valid
        keys = self._convolved(h, valid, adapter_name, (self.generator_key_conv, +1),
                               (self.generator_key_lookahead, -1)) @ a2.mT
        values = self._convolved(read, valid, adapter_name, (self.generator_value_conv, -1)) @ a3.mT
        if adapter_name in self.generator_gate:
            gate = self.generator_gate[adapter_name]
            values = values * torch.sigmoid(h @ gate[:-1] + gate[-1]).unsqueeze(-1)
        if self.configs[adapter_name].center_keys:
            mean = (keys * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp_min(1)
            keys = (keys - mean) * valid
        return torch.einsum("bnk,bnv->bkv", keys.float(), values.float())

    @staticmethod
    def _convolved(h: torch.Tensor, valid: torch.Tensor, adapter_name: str,
                   *taps: tuple[nn.ParameterDict, int]) -> torch.Tensor:
        """`h_t + sum_j w_j * h_{t - direction * j}` over `(b, n, d)` for each `(taps, direction)` the adapter has
        (`direction` +1: earlier tokens, -1: later), inside the chunk (zeros beyond its ends and at padding); `h`
        itself when it has none of them."""
        present = [(parts[adapter_name], direction) for parts, direction in taps if adapter_name in parts]
        if not present:
            return h
        n = h.shape[1]
        out = h
        for weights, direction in present:
            for j in range(1, weights.shape[0] + 1):
                if j >= n:
                    break
                zeros = h.new_zeros(h.shape[0], j, h.shape[2])
                shifted = torch.cat([zeros, h[:, : n - j]], 1) if direction > 0 else torch.cat([h[:, j:], zeros], 1)
                out = out + shifted * weights[j - 1]
        return out * valid

    def factors(self, state: torch.Tensor, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Compact LoRA factors of `delta_W = s * B N^T A1 (+ shared_B shared_A)` for states `(b, d_r, r)`:
        `lora_A` `(b, k, d_in)` and `lora_B` `(b, d_out, k)` with `delta_W = lora_B @ lora_A`. The first
        `config.generated_rank` ranks are written from the context, the last `config.shared_rank` are the shared
        LoRA's, the same for every row that has a context."""
        config = self.configs[adapter_name]
        a1 = self.generator_A1[adapter_name]
        b = self.generator_B[adapter_name]
        p, q = normalize_state(state.float(), config.normalization, config.rank, config.svd_grad_eps, config.svd_tol)
        lora_a = p.to(a1.dtype).mT @ a1  # svd: U_k^T A1 (rank k); otherwise N^T A1 (rank r)
        if q is None:
            lora_b = (b * config.scaling).expand(state.shape[0], -1, -1)
        else:
            lora_b = (b * config.scaling) @ q.to(b.dtype)  # s * B V_k
        if adapter_name in self.generator_shared_A:
            # rows whose state is empty (no text, or every text forgotten) stay the base model
            written = (state.detach().abs().flatten(1).amax(1) > 0).to(lora_b.dtype).view(-1, 1, 1)
            rows = state.shape[0]
            shared_a = self.generator_shared_A[adapter_name].to(lora_a.dtype).expand(rows, -1, -1)
            shared_b = self.generator_shared_B[adapter_name].to(lora_b.dtype) * written
            lora_a = torch.cat([lora_a, shared_a], dim=1)
            lora_b = torch.cat([lora_b, shared_b], dim=2)
        return lora_a, lora_b

    # ---- forward ---------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return result
        context = self.router.current()
        if context is None:
            return result
        factors = context.factors_for(self.module_key, self.active_adapters[0])
        if factors is None:
            return result
        lora_a, lora_b = factors
        x3 = x if x.dim() == 3 else x.reshape(1, -1, x.shape[-1])
        rows = x3.shape[0]
        if lora_a.shape[0] != rows:
            # a single context covers every row; otherwise only generate's own expansion of each input row
            # (beam search, num_return_sequences) may repeat a context row
            if lora_a.shape[0] != 1 and lora_a.shape[0] * self.router.expansion != rows:
                raise ValueError(
                    f"The active context has {lora_a.shape[0]} row(s) but the batch has {rows}. Pass one context "
                    "per row (GeneratedContext.stack([...]), None for rows without context) or a single context."
                )
            repeat = rows // lora_a.shape[0]
            lora_a = lora_a.repeat_interleave(repeat, dim=0)
            lora_b = lora_b.repeat_interleave(repeat, dim=0)
        lora_a = lora_a.to(device=x.device, dtype=x.dtype)
        lora_b = lora_b.to(device=x.device, dtype=x.dtype)
        delta = (x3 @ lora_a.mT) @ lora_b.mT
        return result + delta.reshape(result.shape).to(result.dtype)

    # ---- merging is not defined for a generator --------------------------------------------------------------
    def merge(self, safe_merge: bool = False, adapter_names: Optional[list[str]] = None) -> None:
        raise NotImplementedError(
            "A generator has no fixed weights to merge. Export a generated context with "
            "`ctx.save_pretrained(dir)` and merge that LoRA with plain peft (`merge_and_unload`)."
        )

    def unmerge(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"generative_adapter.{super().__repr__()}"
