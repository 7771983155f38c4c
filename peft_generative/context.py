"""`GeneratedContext`: the memory of one or more contexts (per-row states) and the adapters made from them."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from typing import TYPE_CHECKING, Optional, Sequence

import torch
from peft.utils import SAFETENSORS_WEIGHTS_NAME
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

if TYPE_CHECKING:  # pragma: no cover
    from .model import GenerativeAdapterModel

STATE_FORMAT = "peft-generative-context-state"
STATE_FORMAT_VERSION = 1
STATE_FILE = "context_state.safetensors"


def token_digest(ids: Sequence[int]) -> str:
    """Stable fingerprint of one added text (its token ids), used to check what `forget` may subtract."""
    return hashlib.sha256(json.dumps(list(ids)).encode()).hexdigest()[:24]


class GeneratedContext:
    """Per-row context memories and the LoRA factors generated from them.

    Row `i` holds, for every adapted module, the additive state `S_i` (`key_dim x value_dim`, float32) and the
    compact factors `lora_A_i` (`k x d_in`), `lora_B_i` (`d_out x k`) computed once from it. Rows are independent
    contexts: `ctx[i]` is row `i`, `GeneratedContext.stack([a, None, b])` builds a batch in which the middle
    row uses the base model.

    Make it apply with `with model.use_context(ctx): ...` (this thread only) or `model.set_context(ctx)`.
    """

    def __init__(
        self,
        model: "GenerativeAdapterModel",
        adapter_name: str,
        states: dict[str, torch.Tensor],
        num_tokens: Sequence[int],
        segments: Optional[Sequence[Counter]] = None,
        factors: Optional[dict[str, tuple[torch.Tensor, torch.Tensor]]] = None,
    ):
        self._model = model
        self.adapter_name = adapter_name
        self.states = dict(states)
        self.num_tokens = [int(n) for n in num_tokens]
        self.segments = [Counter(s) for s in segments] if segments is not None else [Counter() for _ in self.num_tokens]
        self.factors = factors if factors is not None else model._compute_factors(self.states, adapter_name)

    # ---- basic properties ------------------------------------------------------------------------------------
    @property
    def config(self):
        return self._model.peft_config[self.adapter_name]

    @property
    def encoding(self) -> str:
        return self.config.encoding

    def __len__(self) -> int:
        return len(self.num_tokens)

    @property
    def has_context(self) -> list[bool]:
        return [n > 0 for n in self.num_tokens]

    def factors_for(self, module_key: str, adapter_name: str):
        if adapter_name != self.adapter_name:
            return None
        return self.factors.get(module_key)

    @property
    def adapter_numel(self) -> int:
        """Floats in one row's generated adapter (the LoRA factors)."""
        return sum(a[0].numel() + b[0].numel() for a, b in self.factors.values())

    @property
    def state_numel(self) -> int:
        """Floats in one row's streaming state."""
        return sum(s[0].numel() for s in self.states.values())

    def __repr__(self) -> str:
        return (
            f"GeneratedContext(rows={len(self)}, tokens={self.num_tokens}, modules={len(self.states)}, "
            f"encoding={self.encoding!r}, adapter_floats_per_row={self.adapter_numel})"
        )

    # ---- rows --------------------------------------------------------------------------------------------------
    def _select(self, index: torch.Tensor) -> "GeneratedContext":
        states = {k: v.index_select(0, index.to(v.device)) for k, v in self.states.items()}
        factors = {
            k: (a.index_select(0, index.to(a.device)), b.index_select(0, index.to(b.device)))
            for k, (a, b) in self.factors.items()
        }
        rows = index.tolist()
        return GeneratedContext(
            self._model, self.adapter_name, states, [self.num_tokens[i] for i in rows],
            [self.segments[i] for i in rows], factors,
        )

    def rows(self, index) -> "GeneratedContext":
        """A context made of the given rows, in order (rows may repeat: several targets per context)."""
        index = torch.as_tensor(index, dtype=torch.long).flatten()
        if index.numel() and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"row index out of range for a context with {len(self)} row(s)")
        return self._select(index.cpu())

    def __getitem__(self, item) -> "GeneratedContext":
        rows = list(range(len(self)))[item] if isinstance(item, slice) else [item]
        for r in rows:
            if not -len(self) <= r < len(self):
                raise IndexError(f"row {r} out of range for a context with {len(self)} row(s)")
        return self.rows([r % len(self) for r in rows])

    @staticmethod
    def stack(contexts: Sequence[Optional["GeneratedContext"]]) -> "GeneratedContext":
        """One batch from several contexts; `None` rows use the base model (their adapter is exactly zero)."""
        real = [c for c in contexts if c is not None]
        if not real:
            raise ValueError("GeneratedContext.stack needs at least one context (None marks rows without one).")
        first = real[0]
        for c in real[1:]:
            first._check_compatible(c)
        states, factors, tokens, segments = {}, {}, [], []
        for key in first.states:
            parts_s, parts_a, parts_b = [], [], []
            for c in contexts:
                if c is None:
                    parts_s.append(torch.zeros_like(first.states[key][:1]))
                    parts_a.append(torch.zeros_like(first.factors[key][0][:1]))
                    parts_b.append(torch.zeros_like(first.factors[key][1][:1]))
                else:
                    parts_s.append(c.states[key])
                    parts_a.append(c.factors[key][0])
                    parts_b.append(c.factors[key][1])
            states[key] = torch.cat(parts_s)
            factors[key] = (torch.cat(parts_a), torch.cat(parts_b))
        for c in contexts:
            tokens += [0] if c is None else c.num_tokens
            segments += [Counter()] if c is None else c.segments
        return GeneratedContext(first._model, first.adapter_name, states, tokens, segments, factors)

    # ---- composition -------------------------------------------------------------------------------------------
    def _check_compatible(self, other: "GeneratedContext") -> None:
        if not isinstance(other, GeneratedContext):
            raise TypeError(f"expected a GeneratedContext, got {type(other).__name__}")
        if other._model is not self._model or other.adapter_name != self.adapter_name:
            raise ValueError("These contexts come from different generators; they cannot be combined.")

    def _check_compatible_model(self, model, adapter_name: str) -> None:
        if self._model is not model or self.adapter_name != adapter_name:
            raise ValueError(
                "This context was generated by another model or generator; generate it with this model "
                "(or reload its saved state with `model.load_context`)."
            )

    def __add__(self, other: "GeneratedContext") -> "GeneratedContext":
        """Compose memories (e.g. a user profile plus a document): states add, the adapter is regenerated."""
        self._check_compatible(other)
        if len(self) != len(other) and 1 not in (len(self), len(other)):
            raise ValueError(f"cannot add contexts with {len(self)} and {len(other)} rows (one of them must have 1).")
        rows = max(len(self), len(other))
        tokens = [a + b for a, b in zip(_broadcast(self.num_tokens, rows), _broadcast(other.num_tokens, rows))]
        segments = [a + b for a, b in zip(_broadcast(self.segments, rows), _broadcast(other.segments, rows))]
        states = {k: self.states[k] + other.states[k] for k in self.states}
        return GeneratedContext(self._model, self.adapter_name, states, tokens, segments)

    def extend(self, context, **kwargs) -> "GeneratedContext":
        """Stream more text into this memory; returns the extended context (this one is unchanged)."""
        return self._model.contextualize(context, extend=self, **kwargs)

    def forget(self, context, **kwargs) -> "GeneratedContext":
        """Subtract a previously added text (parallel encoding only); returns the new context."""
        return self._model.forget(self, context, **kwargs)

    def detach(self) -> "GeneratedContext":
        states = {k: v.detach() for k, v in self.states.items()}
        factors = {k: (a.detach(), b.detach()) for k, (a, b) in self.factors.items()}
        return GeneratedContext(self._model, self.adapter_name, states, self.num_tokens, self.segments, factors)

    # ---- export as a plain LoRA --------------------------------------------------------------------------------
    def _single_row(self, what: str) -> None:
        if len(self) != 1:
            raise ValueError(f"{what} needs a single context; this one has {len(self)} rows: use ctx[i].{what}(...).")

    def lora_state_dict(self, dtype: Optional[torch.dtype] = None) -> dict[str, torch.Tensor]:
        """PEFT LoRA weights (`base_model.model.<module>.lora_{A,B}.weight`) of this single-row context."""
        self._single_row("lora_state_dict")
        out = {}
        for key, (a, b) in self.factors.items():
            a, b = a[0].detach(), b[0].detach()
            if dtype is not None:
                a, b = a.to(dtype), b.to(dtype)
            out[f"base_model.model.{key}.lora_A.weight"] = a.contiguous().cpu()
            out[f"base_model.model.{key}.lora_B.weight"] = b.contiguous().cpu()
        return out

    def lora_config(self):
        from peft import LoraConfig

        rank = self.config.adapter_rank
        return LoraConfig(
            r=rank,
            lora_alpha=rank,  # scaling 1: the generated factors already include alpha / value_dim
            target_modules=sorted(self.states),
            lora_dropout=0.0,
            bias="none",
            task_type=self.config.task_type,
            base_model_name_or_path=self.config.base_model_name_or_path,
        )

    def save_pretrained(self, save_directory: str, dtype: Optional[torch.dtype] = None) -> None:
        """Save as an ordinary PEFT LoRA adapter (loads with plain peft / LoRA servers such as vLLM)."""
        weights = self.lora_state_dict(dtype)
        config = self.lora_config()
        with _atomic_directory(save_directory) as tmp:
            config.save_pretrained(tmp)
            save_file(weights, os.path.join(tmp, SAFETENSORS_WEIGHTS_NAME), metadata={"format": "pt"})

    # ---- own state form (keeps streaming) ----------------------------------------------------------------------
    def save_state(self, path: str) -> None:
        """Save the streaming state (safetensors) so the memory can be reloaded and extended later."""
        tensors = {f"state.{k}": v.detach().contiguous().cpu() for k, v in self.states.items()}
        meta = {
            "format": STATE_FORMAT,
            "version": STATE_FORMAT_VERSION,
            "num_tokens": self.num_tokens,
            "segments": [dict(s) for s in self.segments],
            "generator": self._model._generator_signature(self.adapter_name),
        }
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"peft_generative": json.dumps(meta)})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @classmethod
    def load_state(cls, model: "GenerativeAdapterModel", path: str, adapter_name: str = "default") -> "GeneratedContext":
        if os.path.isdir(path):
            path = os.path.join(path, STATE_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No saved context state at {path}.")
        try:
            tensors = load_file(path)
            from safetensors import safe_open

            with safe_open(path, framework="pt") as f:
                raw = (f.metadata() or {}).get("peft_generative")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(f"{path} is not a readable safetensors context state (corrupt or truncated): {exc}") from exc
        if raw is None:
            raise ValueError(f"{path} is a safetensors file but not a peft-generative context state.")
        meta = json.loads(raw)
        if meta.get("format") != STATE_FORMAT or meta.get("version") != STATE_FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported context state format {meta.get('format')} v{meta.get('version')}.")
        expected = model._generator_signature(adapter_name)
        if meta["generator"] != expected:
            raise ValueError(
                f"{path} was made by a different generator ({meta['generator']}) than this model's ({expected}). "
                "Re-encode the text with this model."
            )
        device = model._device()
        states = {}
        for key in expected["modules"]:
            tensor = tensors.get(f"state.{key}")
            if tensor is None:
                raise ValueError(f"{path} lacks the state of module {key}; the file is incomplete.")
            if not torch.isfinite(tensor).all():
                raise ValueError(f"{path}: the state of {key} contains NaN or inf; the file is corrupt.")
            states[key] = tensor.to(device=device, dtype=torch.float32)
        return cls(model, adapter_name, states, meta["num_tokens"], [Counter(s) for s in meta["segments"]])


def _broadcast(values: list, rows: int) -> list:
    return values * rows if len(values) == 1 else values


class _atomic_directory:
    """Write into a temporary sibling directory and move it into place only when complete."""

    def __init__(self, target: str):
        self.target = os.path.abspath(target)

    def __enter__(self) -> str:
        parent = os.path.dirname(self.target)
        os.makedirs(parent, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        import shutil

        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if os.path.isdir(self.target):
            for name in os.listdir(self.tmp):
                os.replace(os.path.join(self.tmp, name), os.path.join(self.target, name))
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            os.replace(self.tmp, self.target)
