"""Evaluation of the paper's three scenarios, comparing three ways to use a context on the same examples:

- closed-book: the base model, question only;
- prompting: the base model with the context in the prompt;
- generative adapter: the context turned into an adapter (`model.contextualize`), question only;
- optionally the control `adapter_other_context`: the adapter of another context of the file, question only.

Each reports a score (knowledge: token F1 / EM / gold contained, per answer kind too when questions carry a
"kind"; demonstrations: accuracy; conversation: F1 on probes or perplexity of the next session) and its cost:
time, estimated FLOPs per answer (contextualisation amortised and reported separately) and bytes of per-context
state (KV cache vs adapter). Formats: docs/evaluation.md.

    from peft_generative.evaluation import evaluate
    result = evaluate("knowledge", "test.eval.jsonl", limit=5, out_dir="eval_results/knowledge")

The command line `peft-generative eval` is in `peft_generative.cli.evaluate`.
"""

from .engine import ALL_METHODS, METHOD_LABELS, METHODS, Engine, Unit
from .records import EvalDataError
from .metrics import (accuracy, best_contains, best_exact_match, best_f1, contains_answer, exact_match,
                      normalize_answer, perplexity, token_f1)
from .report import bucket_label, bucket_labels, summarize, to_markdown, write_report
from .runner import DEFAULT_BUCKETS, DEFAULT_GROUP_SIZES, TASKS, evaluate

__all__ = [
    "ALL_METHODS", "DEFAULT_BUCKETS", "DEFAULT_GROUP_SIZES", "METHODS", "METHOD_LABELS", "TASKS", "Engine", "EvalDataError", "Unit", "accuracy",
    "best_contains", "best_exact_match", "best_f1", "bucket_label", "bucket_labels", "contains_answer", "evaluate",
    "exact_match", "normalize_answer", "perplexity", "summarize", "to_markdown",
    "token_f1", "write_report",
]
