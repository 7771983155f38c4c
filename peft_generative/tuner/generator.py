"""`Generator`: the adapted layers of one model seen as one object, and what turns text into contexts with them.

`GeneratedContext` and `encode_states` depend on this small object, not on the peft tuner: it knows the adapted
layers (by module name and by decoder-layer index), the transformer body that encodes chunks, the router that says
which context a call uses, the device, and a signature and content digest that saved states are checked against.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Optional, Sequence

import torch
from torch import nn

from .config import GenerativeAdapterConfig
from .context import GeneratedContext, text_digest
from .encoding import encode_states
from .inputs import TextInput, to_token_rows
from .layer import GenerativeLinear
from .refine import refine_context
from .router import ContextRouter


def decoder_layer_path(module_key: str, model: nn.Module) -> str:
    """Name of the decoder layer (an entry of an nn.ModuleList, e.g. `model.layers.5`) containing `module_key`."""
    parts = module_key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if parts[i].isdigit() and isinstance(model.get_submodule(".".join(parts[:i])), nn.ModuleList):
            return ".".join(parts[: i + 1])
    raise ValueError(
        f"Cannot find the decoder layer of `{module_key}`: Generative Adapter reads the hidden state entering the "
        "layer, so target modules must live inside a list of decoder layers."
    )


class Generator:
    """The generator of one model: its `GenerativeLinear` layers for one adapter name.

    Args:
        model: the transformers model holding the adapted layers.
        adapter_name: the generator's adapter name.
        config: its `GenerativeAdapterConfig`.
        router: the model's `ContextRouter`.
    """

    def __init__(self, model: nn.Module, adapter_name: str, config: GenerativeAdapterConfig, router: ContextRouter):
        self.model = model
        self.adapter_name = adapter_name
        self.config = config
        self.router = router
        self.tokenizer = None
        self.source: Optional[str] = None  # where the weights came from (a directory or Hub id), for messages
        self.layers: dict[str, GenerativeLinear] = {
            m.module_key: m for m in model.modules() if isinstance(m, GenerativeLinear)
        }

    # ---- structure ---------------------------------------------------------------------------------------------
    def layers_by_index(self) -> dict[int, list[GenerativeLinear]]:
        out: dict[int, list[GenerativeLinear]] = {}
        for module in self.layers.values():
            out.setdefault(module.layer_index, []).append(module)
        return out

    def decoder_layers(self) -> dict[int, nn.Module]:
        """The decoder layers whose input feeds an adapted module, by index."""
        return {
            m.layer_index: self.model.get_submodule(decoder_layer_path(m.module_key, self.model))
            for m in self.layers.values()
        }

    @property
    def body(self) -> nn.Module:
        """The transformer without its head (e.g. LlamaModel inside LlamaForCausalLM)."""
        body = getattr(self.model, "base_model", self.model)
        return body if isinstance(body, nn.Module) else self.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def vocab_size(self) -> int:
        return self.model.get_input_embeddings().num_embeddings

    def parameters(self) -> list[nn.Parameter]:
        """Every trainable tensor of the generator, in a fixed order."""
        return [
            tensor for _, layer in sorted(self.layers.items())
            for tensor in layer.generator_tensors(self.adapter_name).values()
        ]

    def signature(self) -> dict:
        """What a saved state must match: the modules, the state shape and the base model's shape."""
        return {
            "modules": sorted(self.layers),
            "key_dim": self.config.key_dim,
            "value_dim": self.config.value_dim,
            "base_model": self.config.base_model_fingerprint,
        }

    def digest(self) -> str:
        """SHA-256 (first 16 hex digits) of the generator's weights: two generators with the same shapes but other
        weights (a later training, another release) have different digests."""
        h = hashlib.sha256()
        for parameter in self.parameters():
            h.update(parameter.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def weight_versions(self, module_key: str) -> tuple[int, ...]:
        """torch's in-place version counters of one layer's generator tensors: they change whenever the weights are
        changed in place (an optimizer step, `load_adapter`), so a context can tell that it was made by weights that
        are gone."""
        return tuple(t._version for t in self.layers[module_key].generator_tensors(self.adapter_name).values())

    def check_finite(self, source: str = "this generator") -> None:
        """Refuse weights with NaN/inf (a broken training run or file)."""
        for key, layer in sorted(self.layers.items()):
            for name, tensor in layer.generator_tensors(self.adapter_name).items():
                if not torch.isfinite(tensor).all():
                    raise ValueError(
                        f"{source} has NaN or inf weights ({name} of {key}): the generator is broken (a diverged "
                        "training run or a corrupt file). Load another generator; the base model is fine."
                    )

    def labelled_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                        position_ids: Optional[torch.Tensor] = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The LM head's logits at the positions that predict a labelled token (the head runs on those positions
        only), under whatever context is active: `(logits (n, vocab), targets (n,), batch row of each (n,))`.
        `attention_mask` is the usual `(batch, n)` padding mask or a prepared 4-D one (with `position_ids`, e.g.
        several questions packed into one row: `peft_generative.training.question_packing`)."""
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                           use_cache=False).last_hidden_state
        target = labels[:, 1:]
        picked = target != -100
        logits = self.model.get_output_embeddings()(hidden[:, :-1][picked])
        return logits, target[picked], picked.nonzero()[:, 0]

    # ---- states and factors ------------------------------------------------------------------------------------
    def empty_states(self, rows: int) -> dict[str, torch.Tensor]:
        return {
            key: torch.zeros(rows, self.config.key_dim, self.config.value_dim, device=self.device)
            for key in self.layers
        }

    def factors(self, states: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Compact LoRA factors `(lora_A, lora_B)` of every module for states `{module: (rows, d_r, r)}`."""
        factors = {key: self.layers[key].factors(state, self.adapter_name) for key, state in states.items()}
        with torch.no_grad():  # one host sync for every module, not one per factor
            finite = torch.stack([torch.isfinite(a).all() & torch.isfinite(b).all() for a, b in factors.values()])
            finite = finite.tolist()
        for key, ok in zip(factors, finite):
            if not ok:
                raise FloatingPointError(
                    f"The generator ({self.source or 'unnamed'}) produced NaN/inf adapter factors for {key}: its "
                    "weights are broken or overflow in this dtype. Check the generator (not the base model), or "
                    "use fp32/bf16."
                )
        return factors

    # ---- text -> context ---------------------------------------------------------------------------------------
    def contextualize(
        self,
        text: TextInput,
        *,
        tokenizer=None,
        extend: Optional[GeneratedContext] = None,
        requires_grad: bool = False,
        progress: bool = True,
        refine_steps: int = 0,
        refine_lr: float = 0.05,
        refine_max_tokens: int = 1024,
    ) -> GeneratedContext:
        """Encode `text` (one row per text) into a new context, streamed into `extend` if given; with
        `refine_steps`, then refine its states on the reconstruction of `text` (see `refine.py`)."""
        if isinstance(refine_steps, bool) or not isinstance(refine_steps, int) or refine_steps < 0:
            raise ValueError(f"refine_steps must be a non-negative int, got {refine_steps!r}.")
        if refine_steps and requires_grad:
            raise ValueError("refine_steps is a test-time option; training (requires_grad=True) does not refine.")
        if refine_max_tokens < 2:
            raise ValueError(f"refine_max_tokens must be at least 2, got {refine_max_tokens}.")
        rows, chunk_prefix = to_token_rows(text, tokenizer or self.tokenizer, self.vocab_size)
        self._check_lengths(rows, extend)
        if extend is not None:
            self.check_owns(extend, "extend")
            if len(extend) != len(rows):
                raise ValueError(f"`extend` has {len(extend)} row(s) but {len(rows)} new text(s) were given.")
            states = dict(extend.states)
            num_tokens = [a + len(r) for a, r in zip(extend.num_tokens, rows)]
            texts = [s + Counter({text_digest(r): 1}) for s, r in zip(extend.added_texts, rows)]
        else:
            states = self.empty_states(len(rows))
            num_tokens = [len(r) for r in rows]
            texts = [Counter({text_digest(r): 1}) for r in rows]
        with torch.set_grad_enabled(requires_grad):
            states = encode_states(self, rows, states, chunk_prefix=chunk_prefix, requires_grad=requires_grad,
                                   progress=progress)
            context = GeneratedContext(self, states, num_tokens, texts)
        if refine_steps:
            context = refine_context(self, context, rows, steps=refine_steps, lr=refine_lr,
                                     max_tokens=refine_max_tokens)
        return context

    def forget(self, context: GeneratedContext, text: TextInput, *, tokenizer=None) -> GeneratedContext:
        """Subtract a text added to `context` before (parallel encoding only). A row left with no text is exactly
        empty (the base model), however the floating-point sums rounded."""
        self.check_owns(context, "context")
        if self.config.encoding != "parallel":
            raise ValueError(
                "Forgetting needs encoding='parallel': in sequential mode a chunk's contribution depends on the "
                "chunks before it, so it cannot be subtracted."
            )
        rows, chunk_prefix = to_token_rows(text, tokenizer or self.tokenizer, self.vocab_size)
        if len(rows) != len(context):
            raise ValueError(f"`context` has {len(context)} row(s) but {len(rows)} text(s) to forget were given.")
        for i, refined in enumerate(context.refined):
            if refined:
                raise ValueError(
                    f"Row {i} was refined at test time (refine_steps): its states are no longer a sum of per-text "
                    "parts, so no text can be subtracted exactly. Contextualize the texts to keep without refinement "
                    "(refine afterwards if you like)."
                )
        for i, r in enumerate(rows):
            if context.added_texts[i][text_digest(r)] < 1:
                raise ValueError(f"Row {i}: this text was never added to the context (or was already forgotten).")
        with torch.no_grad():
            removed = encode_states(self, rows, self.empty_states(len(rows)), chunk_prefix=chunk_prefix)
        num_tokens = [n - len(r) for n, r in zip(context.num_tokens, rows)]
        texts = [s - Counter({text_digest(r): 1}) for s, r in zip(context.added_texts, rows)]
        left = torch.tensor([n > 0 for n in num_tokens], device=self.device).view(-1, 1, 1)
        states = {k: torch.where(left, context.states[k] - removed[k], 0.0) for k in context.states}
        return GeneratedContext(self, states, num_tokens, texts)

    def _check_lengths(self, rows: Sequence[Sequence[int]], extend: Optional[GeneratedContext]) -> None:
        limit = self.config.max_context_tokens
        if limit is None:
            return
        before = extend.num_tokens if extend is not None else [0] * len(rows)
        for i, (r, b) in enumerate(zip(rows, before)):
            if len(r) + b > limit:
                raise ValueError(
                    f"Context {i} has {len(r) + b} tokens, more than max_context_tokens={limit}. "
                    "Split it, or raise max_context_tokens in the config."
                )

    def check_owns(self, context, what: str = "context") -> None:
        """Refuse anything that is not a context made by this generator."""
        if not isinstance(context, GeneratedContext):
            raise TypeError(
                f"`{what}` must be a GeneratedContext (from `model.contextualize`), got {type(context).__name__}."
            )
        if context.generator is not self:
            raise ValueError(
                f"This `{what}` was generated by another model or generator; generate it with this model (or "
                "reload its saved state with `model.load_context`)."
            )
