"""Chunked, streaming encoding of contexts into additive generator states.

One pass of the frozen LM over each chunk of `window` tokens (positions restart per chunk). Forward pre-hooks
on the decoder layers read the residual-stream input `H_l` of every layer that holds an adapted module and
add `K^T V` to that module's state; the pass stops right after the last such layer, so neither the LM head
nor later layers run. Hooks are inert unless the calling thread has an active capture sink.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import torch
from huggingface_hub.utils import are_progress_bars_disabled
from tqdm.auto import tqdm

from ..utils.batching import pad_rows

from .context import GeneratedContext

if TYPE_CHECKING:  # pragma: no cover
    from .generator import Generator
    from .layer import GenerativeLinear


class StopEncoding(Exception):
    """Raised by the capture hook after the last layer that feeds a generator."""


class CaptureSink:
    """Collects, for one forward pass over one chunk, each adapted module's state contribution."""

    def __init__(self, layers: dict[int, list["GenerativeLinear"]], mask: torch.Tensor, adapter_name: str,
                 requires_grad: bool, token_states: Optional[torch.Tensor] = None):
        self.layers = layers
        self.token_states = token_states  # the chunk's input embeddings, for a `value_source` other than "layer"
        self.last_index = max(layers)
        self.mask = mask
        self.adapter_name = adapter_name
        self.requires_grad = requires_grad
        self.contributions: dict[str, torch.Tensor] = {}
        # per captured layer, a 0-dim device tensor: are its hidden states finite at the real tokens? Read once per
        # chunk by `check_finite` (one host sync per chunk, not one per layer)
        self.finite: dict[int, torch.Tensor] = {}

    def capture(self, layer_index: int, hidden: torch.Tensor) -> None:
        modules = self.layers.get(layer_index)
        if modules:
            with torch.no_grad():
                self.finite[layer_index] = (torch.isfinite(hidden).all(-1) | ~self.mask.bool()).all()
            with torch.set_grad_enabled(self.requires_grad):
                for module in modules:
                    self.contributions[module.module_key] = module.state_update(
                        hidden, self.mask, self.adapter_name, token_states=self.token_states)
        if layer_index >= self.last_index:
            raise StopEncoding

    def check_finite(self) -> None:
        """Refuse the chunk if the base model's hidden states were NaN/inf at a real token of any captured layer."""
        if not self.finite:
            return
        layers = sorted(self.finite)
        flags = torch.stack([self.finite[i] for i in layers]).tolist()
        if not all(flags):
            raise FloatingPointError(
                f"The base model produced NaN/inf hidden states at decoder layer {layers[flags.index(False)]} while "
                "encoding the context. Check the model's dtype (fp16 overflows on some models: use bf16 or fp32) and "
                "the input ids."
            )


class CaptureHook:
    """A forward pre-hook for decoder layer `layer_index` that hands its input to the calling thread's sink (a
    class, not a closure, so a deep copy of the model gets a hook bound to the copy's router)."""

    def __init__(self, router, layer_index: int):
        self.router = router
        self.layer_index = layer_index

    def __call__(self, module, args, kwargs):
        sink = self.router.sink()
        if sink is None:
            return None
        hidden = args[0] if args else kwargs["hidden_states"]
        sink.capture(self.layer_index, hidden)
        return None


def split_chunks(ids: Sequence[int], window: int, prefix: Sequence[int]) -> list[list[int]]:
    step = window - len(prefix)
    return [list(prefix) + list(ids[i : i + step]) for i in range(0, len(ids), step)]


def encode_states(
    generator: "Generator",
    rows: Sequence[Sequence[int]],
    states: dict[str, torch.Tensor],
    *,
    chunk_prefix: Sequence[int] = (),
    encoding: Optional[str] = None,
    requires_grad: bool = False,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Add the chunks of every row to `states` (`{module: (rows, d_r, r)}`) and return the new states.

    `sequential`: chunk t of a row is encoded by the model carrying the adapter of that row's state so far;
    `parallel`: every chunk by the base model. With `requires_grad`, gradients flow through the generator's
    projections and, in sequential mode, through the whole chunk recurrence.
    """
    config = generator.config
    encoding = encoding or config.encoding
    window = config.window
    chunks = [split_chunks(ids, window, chunk_prefix) for ids in rows]
    steps = max((len(c) for c in chunks), default=0)
    device = generator.device
    layers = generator.layers_by_index()
    body = generator.body
    router = generator.router
    # one host sync for all modules (this decides only whether chunk 0 of sequential encoding carries an adapter)
    started_with_state = encoding == "sequential" and bool(torch.stack([s.any() for s in states.values()]).any())
    pad_id = 0
    bar = tqdm(range(steps), desc="contextualize", unit="chunk", leave=False,
               disable=not progress or steps < 2 or are_progress_bars_disabled())
    for t in bar:
        active = [i for i, c in enumerate(chunks) if t < len(c)]
        pieces = [chunks[i][t] for i in active]
        padded = pad_rows(pieces, pad_id)
        input_ids, mask = padded["input_ids"].to(device), padded["attention_mask"].to(device)
        index = torch.tensor(active, dtype=torch.long, device=device)

        adapter_context = None
        if encoding == "sequential" and (t > 0 or started_with_state):
            partial = {k: v.index_select(0, index) for k, v in states.items()}
            adapter_context = GeneratedContext(generator, partial, [1] * len(active))
        token_states = None
        if config.value_source != "layer":
            with torch.no_grad():  # the embeddings are frozen: no gradient to carry
                token_states = generator.model.get_input_embeddings()(input_ids)
        sink = CaptureSink(layers, mask, generator.adapter_name, requires_grad, token_states)
        lm_grad = requires_grad and adapter_context is not None
        with router.using(adapter_context), router.capturing(sink), torch.set_grad_enabled(lm_grad):
            try:
                # without padding the mask changes nothing, and transformers would read it on the host to find out
                padded_chunk = len({len(piece) for piece in pieces}) > 1
                body(input_ids=input_ids, attention_mask=mask if padded_chunk else None, use_cache=False)
            except StopEncoding:
                pass
        sink.check_finite()
        if len(sink.contributions) != len(states):
            missing = sorted(set(states) - set(sink.contributions))
            raise RuntimeError(
                f"The forward pass did not reach the layers of {missing[:3]}...: the model's decoder layers were not "
                "called with hidden states as expected."
            )
        states = {k: v.index_add(0, index, sink.contributions[k].to(v.dtype)) for k, v in states.items()}
    return states
