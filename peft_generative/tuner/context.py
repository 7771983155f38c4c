"""`GeneratedContext`: the memory of one or more contexts (per-row states) and the adapters made from them."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from typing import TYPE_CHECKING, Optional, Sequence

import torch
from peft.utils import SAFETENSORS_WEIGHTS_NAME
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..utils.atomic import atomic_directory, atomic_file

if TYPE_CHECKING:  # pragma: no cover
    from .generator import Generator

STATE_FORMAT = "peft-generative-context-state"
STATE_FORMAT_VERSION = 2
STATE_FILE = "context_state.safetensors"
# an entry of `added_texts` that marks a row whose states were refined at test time (not a text digest)
REFINED_MARKER = "refined"
STATE_METADATA_KEYS = {"format", "version", "num_tokens", "added_texts", "generator", "generator_digest",
                       "generator_source"}


def text_digest(ids: Sequence[int]) -> str:
    """Stable fingerprint of one added text (its token ids), used to check what `forget` may subtract."""
    return hashlib.sha256(json.dumps(list(ids)).encode()).hexdigest()[:24]


class GeneratedContext:
    """Per-row context memories and the LoRA factors generated from them.

    Row `i` holds, for every adapted module, the additive state `S_i` (`key_dim x value_dim`, float32) and the
    compact factors `lora_A_i` (`k x d_in`), `lora_B_i` (`d_out x k`) computed once from it. Rows are independent
    contexts: `ctx[i]` is row `i`, `GeneratedContext.stack([a, None, b])` builds a batch in which the middle
    row uses the base model. `added_texts[i]` is the multiset of digests of the texts streamed into row `i` (what
    `forget` may subtract).

    Make it apply with `model.generate(..., context=ctx)` / `model(..., context=ctx)` (this call only, any thread),
    `with model.use_context(ctx): ...` (this thread) or `model.set_context(ctx)` (every thread).
    """

    def __init__(
        self,
        generator: "Generator",
        states: dict[str, torch.Tensor],
        num_tokens: Sequence[int],
        added_texts: Optional[Sequence[Counter]] = None,
        factors: Optional[dict[str, tuple[torch.Tensor, torch.Tensor]]] = None,
        weight_versions: Optional[dict[str, tuple[int, ...]]] = None,
    ):
        self.generator = generator
        self.states = dict(states)
        self.num_tokens = [int(n) for n in num_tokens]
        self.added_texts = [Counter(s) for s in added_texts] if added_texts is not None else \
            [Counter() for _ in self.num_tokens]
        # the generator weights these factors were computed with (torch's in-place version counters)
        self.weight_versions = weight_versions if weight_versions is not None else \
            {key: generator.weight_versions(key) for key in self.states}
        self.factors = factors if factors is not None else generator.factors(self.states)

    # ---- basic properties ------------------------------------------------------------------------------------
    @property
    def adapter_name(self) -> str:
        return self.generator.adapter_name

    @property
    def config(self):
        return self.generator.config

    @property
    def encoding(self) -> str:
        return self.config.encoding

    def __len__(self) -> int:
        return len(self.num_tokens)

    @property
    def has_context(self) -> list[bool]:
        return [n > 0 for n in self.num_tokens]

    @property
    def refined(self) -> list[bool]:
        """Per row: were its states refined at test time (`contextualize(..., refine_steps=N)`)?"""
        return [texts[REFINED_MARKER] > 0 for texts in self.added_texts]

    def factors_for(self, module_key: str, adapter_name: str):
        """The factors of one module, or None for another adapter. Refuses factors made by generator weights that
        have since changed in place (a training step, `load_adapter`): they no longer belong to this generator."""
        if adapter_name != self.adapter_name:
            return None
        factors = self.factors.get(module_key)
        if factors is not None and self.generator.weight_versions(module_key) != self.weight_versions[module_key]:
            raise RuntimeError(
                "This context was generated before the generator's weights changed (a training step or "
                "`load_adapter`); its adapter belongs to the old weights. Contextualize the text again, or reload a "
                "saved state with `model.load_context`."
            )
        return factors

    @property
    def adapter_numel(self) -> int:
        """Floats in one row's generated adapter (the LoRA factors)."""
        return sum(a[0].numel() + b[0].numel() for a, b in self.factors.values())

    def context_factors(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The factors of the part written from the context, without the generator's shared LoRA (`shared_rank`;
        the same as `factors` when it has none): `{module: (lora_A (rows, k, d_in), lora_B (rows, d_out, k))}`."""
        k = self.config.generated_rank
        return {key: (a[:, :k], b[:, :, :k]) for key, (a, b) in self.factors.items()}

    def context_delta_sq_norm(self) -> torch.Tensor:
        """Per row, `sum over modules ||lora_B @ lora_A||_F^2` of the part written from the context, computed from
        the factors (`trace(A A^T B^T B)`), differentiable: `(rows,)` fp32."""
        squares = []
        for a, b in self.context_factors().values():
            a, b = a.float(), b.float()
            squares.append(((a @ a.mT) * (b.mT @ b)).sum((1, 2)))
        return torch.stack(squares).sum(0)

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
    def rows(self, index) -> "GeneratedContext":
        """A context made of the given rows, in order (rows may repeat: several targets per context)."""
        index = torch.as_tensor(index)
        if index.dtype == torch.bool or index.is_floating_point():
            raise TypeError(f"row indices must be integers, got {index.dtype}.")
        index = index.to(torch.long).flatten().cpu()
        rows = index.tolist()
        if rows and (min(rows) < 0 or max(rows) >= len(self)):
            raise IndexError(f"row index out of range for a context with {len(self)} row(s)")
        copies = {}  # the index on each device the tensors live on: one host-to-device copy, not one per tensor

        def pick(tensor: torch.Tensor) -> torch.Tensor:
            if tensor.device not in copies:
                copies[tensor.device] = index.to(tensor.device)
            return tensor.index_select(0, copies[tensor.device])

        states = {k: pick(v) for k, v in self.states.items()}
        factors = {k: (pick(a), pick(b)) for k, (a, b) in self.factors.items()}
        return GeneratedContext(
            self.generator, states, [self.num_tokens[i] for i in rows], [self.added_texts[i] for i in rows], factors,
            self.weight_versions,
        )

    def __getitem__(self, item) -> "GeneratedContext":
        if isinstance(item, bool) or not isinstance(item, (int, slice)):
            raise TypeError(f"index a context with an int or a slice (or use ctx.rows([...])), got {item!r}.")
        rows = list(range(len(self)))[item] if isinstance(item, slice) else [item]
        for r in rows:
            if not -len(self) <= r < len(self):
                raise IndexError(f"row {r} out of range for a context with {len(self)} row(s)")
        return self.rows([r % len(self) for r in rows])

    @staticmethod
    def stack(contexts: Sequence[Optional["GeneratedContext"]]) -> "GeneratedContext":
        """One batch from several contexts; `None` rows use the base model (their adapter is exactly zero)."""
        if isinstance(contexts, GeneratedContext) or isinstance(contexts, (str, bytes)):
            raise TypeError("GeneratedContext.stack takes a list of contexts (None for rows without one).")
        contexts = list(contexts)
        for i, c in enumerate(contexts):
            if c is not None and not isinstance(c, GeneratedContext):
                raise TypeError(f"GeneratedContext.stack: item {i} is a {type(c).__name__}, not a GeneratedContext "
                                "or None.")
        real = [c for c in contexts if c is not None]
        if not real:
            raise ValueError("GeneratedContext.stack needs at least one context (None marks rows without one).")
        first = real[0]
        for c in real[1:]:
            first.check_combinable(c)
        states, factors, tokens, texts = {}, {}, [], []
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
            texts += [Counter()] if c is None else c.added_texts
        return GeneratedContext(first.generator, states, tokens, texts, factors, first.weight_versions)

    # ---- composition -------------------------------------------------------------------------------------------
    def check_combinable(self, other: "GeneratedContext") -> None:
        """Refuse to combine with anything but a context of the same generator, made with the same weights."""
        if not isinstance(other, GeneratedContext):
            raise TypeError(f"expected a GeneratedContext, got {type(other).__name__}")
        if other.generator is not self.generator:
            raise ValueError("These contexts come from different generators; they cannot be combined.")
        if other.weight_versions != self.weight_versions:
            raise ValueError("These contexts were made by different versions of the generator's weights (it was "
                             "trained or reloaded in between); contextualize their texts again.")

    def __add__(self, other: "GeneratedContext") -> "GeneratedContext":
        """Compose memories (e.g. a user profile plus a document): states add, the adapter is regenerated."""
        self.check_combinable(other)
        if len(self) != len(other) and 1 not in (len(self), len(other)):
            raise ValueError(f"cannot add contexts with {len(self)} and {len(other)} rows (one of them must have 1).")
        rows = max(len(self), len(other))
        tokens = [a + b for a, b in zip(_broadcast(self.num_tokens, rows), _broadcast(other.num_tokens, rows))]
        texts = [a + b for a, b in zip(_broadcast(self.added_texts, rows), _broadcast(other.added_texts, rows))]
        states = {k: self.states[k] + other.states[k] for k in self.states}
        return GeneratedContext(self.generator, states, tokens, texts)

    def extend(self, text, *, tokenizer=None, requires_grad: bool = False, progress: bool = True) -> "GeneratedContext":
        """Stream more text into this memory; returns the extended context (this one is unchanged)."""
        if isinstance(text, GeneratedContext):
            raise TypeError("`extend` takes text (or token ids); to combine two contexts use `ctx + other`.")
        return self.generator.contextualize(text, tokenizer=tokenizer, extend=self, requires_grad=requires_grad,
                                            progress=progress)

    def forget(self, text, *, tokenizer=None) -> "GeneratedContext":
        """Subtract a previously added text (parallel encoding only); returns the new context."""
        return self.generator.forget(self, text, tokenizer=tokenizer)

    def detach(self) -> "GeneratedContext":
        states = {k: v.detach() for k, v in self.states.items()}
        factors = {k: (a.detach(), b.detach()) for k, (a, b) in self.factors.items()}
        return GeneratedContext(self.generator, states, self.num_tokens, self.added_texts, factors,
                                self.weight_versions)

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
        """Save as an ordinary PEFT LoRA adapter (loads with plain peft / LoRA servers such as vLLM). The directory
        is replaced atomically: an interrupted export leaves the old adapter (or none), never a mix."""
        weights = self.lora_state_dict(dtype)
        config = self.lora_config()
        with atomic_directory(save_directory) as tmp:
            config.save_pretrained(str(tmp))
            save_file(weights, os.path.join(tmp, SAFETENSORS_WEIGHTS_NAME), metadata={"format": "pt"})

    # ---- own state form (keeps streaming) ----------------------------------------------------------------------
    def save_state(self, path: str) -> None:
        """Save the streaming state (safetensors) so the memory can be reloaded and extended later. The file names
        the generator's weights (a digest): it loads only into the generator that made it."""
        tensors = {f"state.{k}": v.detach().contiguous().cpu() for k, v in self.states.items()}
        meta = {
            "format": STATE_FORMAT,
            "version": STATE_FORMAT_VERSION,
            "num_tokens": self.num_tokens,
            "added_texts": [dict(s) for s in self.added_texts],
            "generator": self.generator.signature(),
            "generator_digest": self.generator.digest(),
            "generator_source": self.generator.source,
        }
        with atomic_file(path) as tmp:
            save_file(tensors, str(tmp), metadata={"peft_generative": json.dumps(meta)})

    @classmethod
    def load_state(cls, generator: "Generator", path: str) -> "GeneratedContext":
        """A context saved with `save_state`, checked against `generator` (shapes, weights, rows, metadata)."""
        if os.path.isdir(path):
            path = os.path.join(path, STATE_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No saved context state at {path}.")
        try:
            tensors = load_file(path)
            with safe_open(path, framework="pt") as f:
                raw = (f.metadata() or {}).get("peft_generative")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(
                f"{path} is not a readable safetensors context state (corrupt or truncated): {exc}"
            ) from exc
        if raw is None:
            raise ValueError(f"{path} is a safetensors file but not a peft-generative context state.")
        meta = _read_metadata(path, raw)
        expected = generator.signature()
        if meta["generator"] != expected:
            raise ValueError(
                f"{path} was made by a different generator, of another shape ({meta['generator']}), than this model's "
                f"({expected}). Re-encode the text with this model."
            )
        digest = generator.digest()
        if meta["generator_digest"] != digest:
            raise ValueError(
                f"{path} was made by generator {meta['generator_source']!r} (weights {meta['generator_digest']}), "
                f"but this model's generator is {generator.source!r} (weights {digest}): its memory means nothing to "
                "these weights. Load that generator, or re-encode the texts with this one."
            )
        rows = len(meta["num_tokens"])
        unexpected = sorted(set(tensors) - {f"state.{key}" for key in expected["modules"]})
        if unexpected:
            raise ValueError(f"{path} holds tensors this generator does not have ({unexpected[:3]}); the file was "
                             "altered.")
        shape = (rows, generator.config.key_dim, generator.config.value_dim)
        states = {}
        for key in expected["modules"]:
            tensor = tensors.get(f"state.{key}")
            if tensor is None:
                raise ValueError(f"{path} lacks the state of module {key}; the file is incomplete.")
            if tuple(tensor.shape) != shape or not tensor.is_floating_point():
                raise ValueError(f"{path}: the state of {key} has shape {tuple(tensor.shape)} ({tensor.dtype}), "
                                 f"expected {shape} floats for {rows} row(s); the file is corrupt.")
            if not torch.isfinite(tensor).all():
                raise ValueError(f"{path}: the state of {key} contains NaN or inf; the file is corrupt.")
            states[key] = tensor.to(device=generator.device, dtype=torch.float32)
        return cls(generator, states, meta["num_tokens"], [Counter(s) for s in meta["added_texts"]])


def _read_metadata(path: str, raw: str) -> dict:
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: the context state's metadata is not valid JSON; the file is corrupt.") from exc
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a peft-generative context state.")
    if meta.get("version") != STATE_FORMAT_VERSION:
        raise ValueError(
            f"{path}: context state format v{meta.get('version')}, this version of peft-generative reads "
            f"v{STATE_FORMAT_VERSION}. States of format v1 name no generator weights; re-encode their texts."
        )
    missing = sorted(STATE_METADATA_KEYS - set(meta))
    if missing:
        raise ValueError(f"{path}: the context state's metadata lacks {missing}; the file is incomplete or altered.")
    tokens, texts = meta["num_tokens"], meta["added_texts"]
    if not (isinstance(tokens, list) and tokens and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                        for n in tokens)):
        raise ValueError(f"{path}: `num_tokens` must be a non-empty list of token counts; the file is corrupt.")
    if not (isinstance(texts, list) and len(texts) == len(tokens) and all(isinstance(t, dict) for t in texts)):
        raise ValueError(f"{path}: `added_texts` must hold one entry per row; the file is corrupt.")
    return meta


def _broadcast(values: list, rows: int) -> list:
    return values * rows if len(values) == 1 else values
