"""`GenerativeAdapterModel`: the peft tuner that injects generators and turns contexts into adapters."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from typing import Any, Optional, Sequence

import torch
from peft.tuners.tuners_utils import BaseTuner
from torch import nn

from .config import DEFAULT_TARGET_MODULES, GenerativeAdapterConfig
from .context import GeneratedContext, token_digest
from .encoding import encode_states, make_capture_hook
from .inputs import ContextInput, to_token_rows
from .layer import GenerativeLinear
from .router import ContextCarryingCheckpoint, ContextRouter

MODEL_TAGS = ["peft-generative", "generative-adapter"]


def base_model_fingerprint(model: nn.Module) -> dict:
    config = getattr(model, "config", None)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    get = (lambda k: getattr(text, k, None)) if text is not None else (lambda k: None)
    return {
        "model_type": get("model_type"),
        "hidden_size": get("hidden_size"),
        "num_hidden_layers": get("num_hidden_layers"),
        "vocab_size": get("vocab_size"),
    }


def _decoder_layer_path(module_key: str, model: nn.Module) -> str:
    """Name of the decoder layer (an entry of an nn.ModuleList, e.g. `model.layers.5`) containing `module_key`."""
    parts = module_key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if parts[i].isdigit() and isinstance(model.get_submodule(".".join(parts[:i])), nn.ModuleList):
            return ".".join(parts[: i + 1])
    raise ValueError(
        f"Cannot find the decoder layer of `{module_key}`: Generative Adapter reads the hidden state entering the "
        "layer, so target modules must live inside a list of decoder layers."
    )


class GenerativeAdapterModel(BaseTuner):
    """Injects a `GenerativeLinear` into every target module and encodes contexts into adapters.

    Reached from the `PeftModel` returned by `get_peft_model` (peft forwards unknown attributes), so
    `peft_model.contextualize(...)`, `peft_model.use_context(...)` etc. work directly.
    """

    prefix: str = "generator_"
    tuner_layer_cls = GenerativeLinear
    target_module_mapping = DEFAULT_TARGET_MODULES

    # ---- injection ---------------------------------------------------------------------------------------------
    def _pre_injection_hook(self, model: nn.Module, config: GenerativeAdapterConfig, adapter_name: str) -> None:
        if "_router" not in self.__dict__:
            self._router = ContextRouter()
            self._capture_handles = []
            self.tokenizer = None
        if len(self.peft_config) > 1:
            raise NotImplementedError(
                "One generator per model: this model already has a Generative Adapter. Load the other generator "
                "onto a separate copy of the base model."
            )
        found = base_model_fingerprint(model)
        expected = config.base_model_fingerprint
        if expected is not None and any(expected.get(k) != found.get(k) for k in ("hidden_size", "num_hidden_layers")):
            name = getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
            raise ValueError(
                f"This generator was trained for base model '{config.base_model_name_or_path}' "
                f"({expected}), but it is being loaded onto '{name}' ({found}). Load it onto the base model it "
                "was trained for."
            )
        if expected is None:
            config.base_model_fingerprint = found
        if not config.base_model_name_or_path:
            config.base_model_name_or_path = getattr(getattr(model, "config", None), "_name_or_path", None) or None
        max_positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        if max_positions is not None and config.window > max_positions:
            raise ValueError(
                f"`window` ({config.window}) is longer than the model's positions ({max_positions}): every chunk must "
                f"fit the model. Use window <= {max_positions}; longer contexts are split into chunks automatically."
            )

    def _create_and_replace(self, peft_config, adapter_name, target, target_name, parent, current_key, **kwargs):
        if isinstance(target, GenerativeLinear):
            raise NotImplementedError("One generator per model: `{current_key}` is already adapted.")
        hidden_size = base_model_fingerprint(self.model)["hidden_size"]
        if hidden_size is None:
            raise ValueError("The base model's config has no `hidden_size`; Generative Adapter needs it.")
        layer_path = _decoder_layer_path(current_key, self.model)
        new = GenerativeLinear(
            target, adapter_name, peft_config, hidden_size, current_key, int(layer_path.rsplit(".", 1)[1]),
            self._router,
        )
        if peft_config.init_from_attention:
            new.init_from_attention(adapter_name, self.model.get_submodule(layer_path))
        if adapter_name not in self.active_adapters:
            new.requires_grad_(False)
        self._replace_module(parent, target_name, new, target)

    def _post_injection_hook(self, model: nn.Module, config: GenerativeAdapterConfig, adapter_name: str) -> None:
        layers = self._layers_by_index()
        if not layers:
            raise ValueError(f"No module matched target_modules={config.target_modules}.")
        decoder_layers = self._decoder_layer_modules()
        for handle in self._capture_handles:
            handle.remove()
        self._capture_handles = [
            decoder_layers[i].register_forward_pre_hook(make_capture_hook(self, i), with_kwargs=True) for i in layers
        ]
        if hasattr(model, "add_model_tags"):
            model.add_model_tags(MODEL_TAGS)

    def _generators(self) -> dict[str, GenerativeLinear]:
        """Every adapted layer, by module name."""
        return {m.module_key: m for m in self.model.modules() if isinstance(m, GenerativeLinear)}

    def _layers_by_index(self) -> dict[int, list[GenerativeLinear]]:
        out: dict[int, list[GenerativeLinear]] = {}
        for module in self._generators().values():
            out.setdefault(module.layer_index, []).append(module)
        return out

    def _decoder_layer_modules(self) -> dict[int, nn.Module]:
        return {
            m.layer_index: self.model.get_submodule(_decoder_layer_path(m.module_key, self.model))
            for m in self._generators().values()
        }

    def _body(self) -> nn.Module:
        """The transformer without its head (e.g. LlamaModel inside LlamaForCausalLM)."""
        body = getattr(self.model, "base_model", self.model)
        return body if isinstance(body, nn.Module) else self.model

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _generator_signature(self, adapter_name: str) -> dict:
        config = self.peft_config[adapter_name]
        return {
            "modules": sorted(self._generators()),
            "key_dim": config.key_dim,
            "value_dim": config.value_dim,
            "base_model": config.base_model_fingerprint,
        }

    # ---- forward -----------------------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any):
        self._carry_context_through_checkpointing()
        return self.model(*args, **kwargs)

    def _carry_context_through_checkpointing(self) -> None:
        for module in self.model.modules():
            func = getattr(module, "_gradient_checkpointing_func", None)
            if func is not None and not isinstance(func, ContextCarryingCheckpoint):
                module._gradient_checkpointing_func = ContextCarryingCheckpoint(func, self._router)

    def merge_and_unload(self, *args, **kwargs):
        raise NotImplementedError(
            "A generator has no fixed weights to merge. Export a generated context with `ctx.save_pretrained(dir)` "
            "and merge that LoRA with plain peft; `unload()` returns the base model."
        )

    def _unload_and_optionally_merge(self, merge=True, *args, **kwargs):
        if merge:
            return self.merge_and_unload()
        for handle in self._capture_handles:
            handle.remove()
        self._capture_handles = []
        return super()._unload_and_optionally_merge(merge, *args, **kwargs)

    # ---- contexts ----------------------------------------------------------------------------------------------
    def _compute_factors(self, states: dict[str, torch.Tensor], adapter_name: str):
        modules = self._generators()
        return {key: modules[key].factors(state, adapter_name) for key, state in states.items()}

    def _empty_states(self, rows: int, adapter_name: str) -> dict[str, torch.Tensor]:
        config = self.peft_config[adapter_name]
        device = self._device()
        return {key: torch.zeros(rows, config.key_dim, config.value_dim, device=device) for key in self._generators()}

    def set_tokenizer(self, tokenizer) -> None:
        """Tokenizer used by `contextualize` when none is passed."""
        self.tokenizer = tokenizer

    def contextualize(
        self,
        context: ContextInput,
        *,
        tokenizer=None,
        extend: Optional[GeneratedContext] = None,
        activate: bool = True,
        requires_grad: bool = False,
        progress: bool = True,
    ) -> GeneratedContext:
        """Encode a context into a per-context adapter in one pass over its tokens.

        Args:
            context: a string, a list of strings (one adapter per string, batched), token ids (a list of ints,
                a list of lists, a 2-D tensor) or a tokenizer output with `input_ids` (and `attention_mask`).
            tokenizer: tokenizer for text input (default: the one given to `set_tokenizer`).
            extend: an existing context to stream the new text into (same number of rows); it is not modified.
            activate: make the result the model's default context (`set_context`).
            requires_grad: keep the graph (training); by default encoding runs without gradients.
            progress: show a progress bar for multi-chunk contexts.

        Returns:
            A `GeneratedContext` with one row per input text.
        """
        adapter_name = self.active_adapters[0]
        config = self.peft_config[adapter_name]
        rows, chunk_prefix = to_token_rows(context, tokenizer or self.tokenizer, self.model)
        self._check_lengths(rows, extend, config)
        if extend is not None:
            if len(extend) != len(rows):
                raise ValueError(f"`extend` has {len(extend)} row(s) but {len(rows)} new text(s) were given.")
            extend._check_compatible_model(self, adapter_name)
            states = dict(extend.states)
            num_tokens = [a + len(r) for a, r in zip(extend.num_tokens, rows)]
            segments = [s + Counter({token_digest(r): 1}) for s, r in zip(extend.segments, rows)]
        else:
            states = self._empty_states(len(rows), adapter_name)
            num_tokens = [len(r) for r in rows]
            segments = [Counter({token_digest(r): 1}) for r in rows]
        with torch.set_grad_enabled(requires_grad):
            states = encode_states(
                self, rows, states, adapter_name, chunk_prefix=chunk_prefix, requires_grad=requires_grad,
                progress=progress,
            )
            result = GeneratedContext(self, adapter_name, states, num_tokens, segments)
        if activate:
            self.set_context(result)
        return result

    def _check_lengths(self, rows: Sequence[Sequence[int]], extend, config: GenerativeAdapterConfig) -> None:
        if config.max_context_tokens is None:
            return
        before = extend.num_tokens if extend is not None else [0] * len(rows)
        for i, (r, b) in enumerate(zip(rows, before)):
            if len(r) + b > config.max_context_tokens:
                raise ValueError(
                    f"Context {i} has {len(r) + b} tokens, more than max_context_tokens={config.max_context_tokens}. "
                    "Split it, or raise max_context_tokens in the config."
                )

    def forget(self, context: GeneratedContext, text: ContextInput, *, tokenizer=None, activate: bool = False):
        """Subtract a text previously added to `context` (parallel encoding only). Returns a new context."""
        adapter_name = context.adapter_name
        config = self.peft_config[adapter_name]
        if config.encoding != "parallel":
            raise ValueError(
                "Forgetting needs encoding='parallel': in sequential mode a chunk's contribution depends on the "
                "chunks before it, so it cannot be subtracted."
            )
        rows, chunk_prefix = to_token_rows(text, tokenizer or self.tokenizer, self.model)
        if len(rows) != len(context):
            raise ValueError(f"`context` has {len(context)} row(s) but {len(rows)} text(s) to forget were given.")
        for i, r in enumerate(rows):
            if context.segments[i][token_digest(r)] < 1:
                raise ValueError(f"Row {i}: this text was never added to the context (or was already forgotten).")
        with torch.no_grad():
            removed = encode_states(
                self, rows, self._empty_states(len(rows), adapter_name), adapter_name, chunk_prefix=chunk_prefix
            )
        states = {k: context.states[k] - removed[k] for k in context.states}
        num_tokens = [n - len(r) for n, r in zip(context.num_tokens, rows)]
        segments = [s - Counter({token_digest(r): 1}) for s, r in zip(context.segments, rows)]
        result = GeneratedContext(self, adapter_name, states, num_tokens, segments)
        if activate:
            self.set_context(result)
        return result

    def load_context(self, path: str, activate: bool = True) -> GeneratedContext:
        """Load a context saved with `ctx.save_state(path)` (to keep streaming into it)."""
        ctx = GeneratedContext.load_state(self, path, self.active_adapters[0])
        if activate:
            self.set_context(ctx)
        return ctx

    def set_context(self, context: Optional[GeneratedContext]) -> None:
        """Make `context` the default for every call (all threads) until changed; None = base model."""
        if context is not None:
            context._check_compatible_model(self, self.active_adapters[0])
        self._router.default = context

    def clear_context(self) -> None:
        self._router.default = None

    @property
    def active_context(self) -> Optional[GeneratedContext]:
        return self._router.current()

    @contextmanager
    def use_context(self, context: Optional[GeneratedContext]):
        """Use `context` for the calls inside the block, in this thread only (None = base model)."""
        if context is not None:
            context._check_compatible_model(self, self.active_adapters[0])
        with self._router.using(context):
            yield context
