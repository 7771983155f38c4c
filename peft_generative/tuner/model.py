"""`GenerativeAdapterModel`: the peft tuner that injects generators and turns text into contexts."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Optional

from peft.tuners.tuners_utils import BaseTuner
from torch import nn

from ..utils.model_config import text_config
from .config import DEFAULT_TARGET_MODULES, GenerativeAdapterConfig
from .context import GeneratedContext
from .encoding import CaptureHook
from .generator import Generator, decoder_layer_path
from .inputs import TextInput
from .layer import GenerativeLinear
from .router import ContextCarryingCheckpoint, ContextRouter

MODEL_TAGS = ["peft-generative", "generative-adapter"]
CONTEXT_ARGUMENT = "context"
_KEEP = object()


def base_model_fingerprint(model: nn.Module) -> dict:
    config = getattr(model, "config", None)
    text = text_config(config) if config is not None else None
    get = (lambda k: getattr(text, k, None)) if text is not None else (lambda k: None)
    return {
        "model_type": get("model_type"),
        "hidden_size": get("hidden_size"),
        "num_hidden_layers": get("num_hidden_layers"),
        "vocab_size": get("vocab_size"),
    }


def tuner_of(model: nn.Module) -> "GenerativeAdapterModel":
    """The `GenerativeAdapterModel` of a `PeftModel` (or of a model wrapped by accelerate/DDP), or the model
    itself if it already is one."""
    seen = model
    for _ in range(4):
        if isinstance(seen, GenerativeAdapterModel):
            return seen
        seen = getattr(seen, "module", None) or getattr(seen, "base_model", None)
        if seen is None:
            break
    raise TypeError(
        f"{type(model).__name__} carries no Generative Adapter: load a generator with "
        "`PeftModel.from_pretrained(base, dir)` (after `import peft_generative`) or "
        "`peft_generative.loading.load_generative_model`."
    )


def generator_of(model: nn.Module) -> Generator:
    """The `Generator` (adapted layers, factors, digest) of a peft model carrying a Generative Adapter."""
    return tuner_of(model).generator


class GenerativeAdapterModel(BaseTuner):
    """Injects a `GenerativeLinear` into every target module and encodes text into contexts.

    Reached from the `PeftModel` returned by `get_peft_model` (peft forwards unknown attributes), so
    `peft_model.contextualize(...)`, `peft_model.use_context(...)` etc. work directly.
    """

    prefix: str = "generator_"
    tuner_layer_cls = GenerativeLinear
    target_module_mapping = DEFAULT_TARGET_MODULES

    # ---- injection ---------------------------------------------------------------------------------------------
    def _pre_injection_hook(self, model: nn.Module, config: GenerativeAdapterConfig, adapter_name: str) -> None:
        if "router" not in self.__dict__:
            self.router = ContextRouter()
            self.hook_handles = []
            self.generator = None
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
            raise NotImplementedError(f"One generator per model: `{current_key}` is already adapted.")
        hidden_size = base_model_fingerprint(self.model)["hidden_size"]
        if hidden_size is None:
            raise ValueError("The base model's config has no `hidden_size`; Generative Adapter needs it.")
        layer_path = decoder_layer_path(current_key, self.model)
        new = GenerativeLinear(
            target, adapter_name, peft_config, hidden_size, current_key, int(layer_path.rsplit(".", 1)[1]),
            self.router,
        )
        if peft_config.init_from_attention:
            new.init_from_attention(adapter_name, self.model.get_submodule(layer_path))
        if adapter_name not in self.active_adapters:
            new.requires_grad_(False)
        self._replace_module(parent, target_name, new, target)

    def _post_injection_hook(self, model: nn.Module, config: GenerativeAdapterConfig, adapter_name: str) -> None:
        self.generator = Generator(model, adapter_name, config, self.router)
        if not self.generator.layers:
            raise ValueError(f"No module matched target_modules={config.target_modules}.")
        for handle in self.hook_handles:
            handle.remove()
        self.hook_handles = [
            layer.register_forward_pre_hook(CaptureHook(self.router, index), with_kwargs=True)
            for index, layer in self.generator.decoder_layers().items()
        ]
        name = "is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing") else \
            "is_gradient_checkpointing"  # transformers < 5.2x
        if getattr(model, name, False):
            self.carry_context_through_checkpointing()
        if hasattr(model, "add_model_tags"):
            model.add_model_tags(MODEL_TAGS)

    def _checked(self, context) -> Optional[GeneratedContext]:
        if context is not None:
            self.generator.check_owns(context)
        return context

    # ---- forward -----------------------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any):
        context = kwargs.pop(CONTEXT_ARGUMENT, _KEEP)
        if context is _KEEP:
            return self.model(*args, **kwargs)
        with self.router.using(self._checked(context)):
            return self.model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any):
        """The base model's `generate`, with an optional per-call `context=` (in whatever thread runs it, e.g. the
        thread a `TextIteratorStreamer` pattern starts). A context row may cover the rows that beam search or
        `num_return_sequences` make of each input row."""
        context = kwargs.pop(CONTEXT_ARGUMENT, _KEEP)
        generation_config = kwargs.get("generation_config") or getattr(self.model, "generation_config", None)
        expansion = 1
        for name in ("num_beams", "num_return_sequences"):
            value = kwargs.get(name, getattr(generation_config, name, None))
            expansion *= int(value) if value else 1
        with self.router.expanding(expansion):
            if context is _KEEP:
                return self.model.generate(*args, **kwargs)
            with self.router.using(self._checked(context)):
                return self.model.generate(*args, **kwargs)

    def activation_checkpointing_enable(self, *args, **kwargs):
        """Turn on the base model's activation (gradient) checkpointing and make its recomputation see the same
        context as the forward pass (the Trainer calls this when `gradient_checkpointing=True`)."""
        self.model.activation_checkpointing_enable(*args, **kwargs)
        self.carry_context_through_checkpointing()

    def gradient_checkpointing_enable(self, *args, **kwargs):
        """The older name of `activation_checkpointing_enable`, as transformers still offers it."""
        self.model.gradient_checkpointing_enable(*args, **kwargs)
        self.carry_context_through_checkpointing()

    def carry_context_through_checkpointing(self) -> None:
        """Wrap each checkpointed layer's function (transformers' `_gradient_checkpointing_func` hook) once."""
        for module in self.model.modules():
            func = getattr(module, "_gradient_checkpointing_func", None)
            if func is not None and not isinstance(func, ContextCarryingCheckpoint):
                module._gradient_checkpointing_func = ContextCarryingCheckpoint(func, self.router)

    def merge_and_unload(self, *args, **kwargs):
        raise NotImplementedError(
            "A generator has no fixed weights to merge. Export a generated context with `ctx.save_pretrained(dir)` "
            "and merge that LoRA with plain peft; `unload()` returns the base model."
        )

    def _unload_and_optionally_merge(self, merge=True, *args, **kwargs):
        if merge:
            return self.merge_and_unload()
        for handle in self.hook_handles:
            handle.remove()
        self.hook_handles = []
        return super()._unload_and_optionally_merge(merge, *args, **kwargs)

    # ---- contexts ----------------------------------------------------------------------------------------------
    def generator_layers(self) -> dict[str, GenerativeLinear]:
        """Every adapted layer, by module name."""
        return dict(self.generator.layers)

    def set_tokenizer(self, tokenizer) -> None:
        """Tokenizer used by `contextualize` when none is passed."""
        self.generator.tokenizer = tokenizer

    @property
    def tokenizer(self):
        return self.generator.tokenizer

    def contextualize(
        self,
        text: TextInput,
        *,
        tokenizer=None,
        extend: Optional[GeneratedContext] = None,
        activate: bool = True,
        requires_grad: bool = False,
        progress: bool = True,
        refine_steps: int = 0,
        refine_lr: float = 0.05,
        refine_max_tokens: int = 1024,
    ) -> GeneratedContext:
        """Encode text into a per-context adapter in one pass over its tokens.

        Args:
            text: a string, a list of strings (one adapter per string, batched), token ids (a list of ints,
                a list of lists, a 2-D tensor) or a tokenizer output with `input_ids` (and `attention_mask`).
            tokenizer: tokenizer for text input (default: the one given to `set_tokenizer`).
            extend: an existing context to stream the new text into (same number of rows); it is not modified.
            activate: make the result the default context of the calling thread (other threads are not affected;
                `set_context` sets the default of every thread, `context=` applies to one call).
            requires_grad: keep the graph (training); by default encoding runs without gradients.
            progress: show a progress bar for multi-chunk contexts.
            refine_steps: optional test-time refinement (off by default): this many Adam steps on the states so that
                the adapted model, without the text in its prompt, reconstructs the text given here (its first
                `refine_max_tokens` tokens); each step is one forward and backward pass over them. A refined row
                can be saved, exported and extended, but not `forget`-ed.
            refine_lr: Adam's learning rate, relative to each state's scale.
            refine_max_tokens: how many of each text's tokens the refinement fits.

        Returns:
            A `GeneratedContext` with one row per input text.
        """
        if extend is not None:
            self.generator.check_owns(extend, "extend")
        result = self.generator.contextualize(text, tokenizer=tokenizer, extend=extend, requires_grad=requires_grad,
                                              progress=progress, refine_steps=refine_steps, refine_lr=refine_lr,
                                              refine_max_tokens=refine_max_tokens)
        if activate:
            self.router.set_thread_default(result)
        return result

    def forget(self, context: GeneratedContext, text: TextInput, *, tokenizer=None, activate: bool = False):
        """Subtract a text previously added to `context` (parallel encoding only). Returns a new context."""
        result = self.generator.forget(context, text, tokenizer=tokenizer)
        if activate:
            self.router.set_thread_default(result)
        return result

    def load_context(self, path: str, activate: bool = True) -> GeneratedContext:
        """Load a context saved with `ctx.save_state(path)` (to keep streaming into it)."""
        ctx = GeneratedContext.load_state(self.generator, path)
        if activate:
            self.router.set_thread_default(ctx)
        return ctx

    def set_context(self, context: Optional[GeneratedContext]) -> None:
        """Make `context` the default for every call in every thread (until changed); None = base model."""
        self.router.default = self._checked(context)
        self.router.clear_thread_default()

    def clear_context(self) -> None:
        """Back to the base model: the model-wide default and this thread's default are cleared."""
        self.router.default = None
        self.router.clear_thread_default()

    @property
    def active_context(self) -> Optional[GeneratedContext]:
        return self.router.current()

    @contextmanager
    def use_context(self, context: Optional[GeneratedContext]):
        """Use `context` for the calls inside the block, in this thread only (None = base model)."""
        with self.router.using(self._checked(context)):
            yield context
