"""Can a generated adapter carry exact facts, and copy words? A CPU-budgeted capability test (issues 22 and 32).

Trains a generator variant on synthetic documents (answers-only cross-entropy; the context reaches the model only
through the adapter) for a fixed budget of process CPU time, then evaluates on held-out documents whose names and
answer words were never seen in training: exact match / F1 / gold contained by question type and answer kind with the
own adapter and with another document's adapter (the control), the gold-answer NLL gap between them, and the
closed-book and context-in-prompt baselines (computed once per `--out` and cached, since they do not depend on the
generator). `--data facts`: the fact and needle documents of `peft_generative.data.synthetic_facts` (issue 22);
`--data words`: the open-vocabulary documents of `peft_generative.data.synthetic_words` (answers from open word lists,
many relations, held-out relations and phrasings); `--data both`: half each; `--data needles`: only the word
needles (one open-vocabulary word to copy; `--needle-filler 0-0` trains on the needle sentence alone;
`--needle-subjects word,name,place` mixes in needles that give a person's full name or a place;
`--needles-per-doc 2-4` puts several in one document and asks every one, so the question must find its needle: the
lookup). `--prose-share S` and `--text-share S` put real text into any of these: that share of a step's documents
are real prose passages asked their cloze questions (the training split of data/prose_recall) or blocks of the
pretraining corpus whose adapter must predict the next segment and reconstruct a window of the block, as the
generator's pretraining does (`--text-weight`: a text token's weight against an answer token). Whatever the training
data, the evaluation covers the held-out facts, needles, words, unseen-relation words,
word needles, the same word needles without filler (`word_needle_bare`: the easiest copy there is), one-entity word
documents, name needles alone and in filler (`name_needle_bare`, `name_needle`), place needles in filler and
documents of 2-4 name, place and word needles (`multi_needle`).

    python examples/scripts/fact_capability.py --name wide --token-gate --cpu-budget 640 --out runs/facts
    python examples/scripts/fact_capability.py --name words_kconv --data words --key-conv 3 --cpu-budget 900

Resumable: run the same command again after a kill and it continues from `<out>/<name>/` (safetensors + JSON).
On several cores, several processes of one thread each share every step's documents (gloo; the same update as one
process; the first process saves and evaluates): `torchrun --standalone --nproc_per_node 2
examples/scripts/fact_capability.py ...` (`OMP_NUM_THREADS=1`).
On a GPU (`--device cuda`) the process CPU time is not a fair clock; compare arms at equal steps (`--max-steps N`,
with a `--cpu-budget` that does not stop them first).
Results: `<out>/<name>/result.json` and the trained generator in `<out>/<name>/generator`; progress lines
`PROBE {...}` (the NLL gap on 24 held-out documents).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from peft_generative import GenerativeAdapterConfig, generator_of
from peft_generative.data.synthetic_facts import SYLLABLES, fact_document, needle_document
from peft_generative.data.synthetic_words import (NEEDLE_SUBJECTS, multi_needle_document, word_document,
                                                  word_needle_document)
from peft_generative.default_model import load_base_model
from peft_generative.evaluation.metrics import best_contains, best_exact_match, best_f1
from peft_generative.loading import shipped_generator_path
from peft_generative.perplexity import context_perplexity
from peft_generative.training.collation import tokenize_conversation
from peft_generative.training.question_packing import IGNORE, pack_questions
from peft_generative.utils.batching import pad_rows


def layer_list(text: str) -> list[int]:
    """'0-14' -> [0, ..., 14]; '3,5,7' -> [3, 5, 7]."""
    try:
        if "-" in text:
            first, last = (int(x) for x in text.split("-"))
            layers = list(range(first, last + 1))
        else:
            layers = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 'A-B' or 'A,B,C' (decoder layer indices)") from None
    if not layers or min(layers) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: no layers, or a negative index")
    return layers


# taken from the --init generator
ARCHITECTURE = ("token_gate", "key_conv", "value_lookahead", "key_lookahead", "value_source")


def count_range(text: str) -> tuple[int, int]:
    """'0-2' -> (0, 2)."""
    try:
        low, high = (int(x) for x in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 'MIN-MAX'") from None
    if not 0 <= low <= high:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 0 <= MIN <= MAX")
    return low, high


EVAL_SETS = ("facts", "needle", "words", "words_unseen", "word_needle", "word_needle_bare", "words_one",
             "name_needle_bare", "name_needle", "place_needle", "multi_needle")
# only when asked by --eval-sets: real prose cloze (the first 40 test passages of data/prose_recall, built by
# `python -m peft_generative.data --prose_recall`) and the bundled demo document with its six questions
FILE_SETS = ("prose_recall", "demo")
PROSE_RECALL = Path("data/prose_recall/test.eval.jsonl")
# real text to train on (`--prose-share`, `--text-share`): training-split documents only (the prose_recall test
# passages come from the pretraining corpus's validation documents), built offline by `python -m peft_generative.data
# --prose_recall --out data` and `--pretraining --no-exclude --out data`
PROSE_TRAIN = Path("data/prose_recall/train.jsonl")
TEXT_TRAIN = Path("data/pretraining/train.jsonl")
PRETRAINING_VALIDATION = Path("data/pretraining/validation.jsonl")  # `--perplexity-blocks`: held-out text
TEXT_MIN_CHARS = 3000  # a text block is cut from a document at least this long (3 segments of 128 tokens fit)


def choices(allowed: tuple[str, ...]):
    """An argparse type: a comma-separated list of names from `allowed`, repeats dropped."""
    def parse_list(text: str) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
        if not names or set(names) - set(allowed):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(allowed)}, got {text!r}")
        return names
    return parse_list


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="run name (a directory under --out)")
    p.add_argument("--out", default="runs/fact_capability", help="output directory")
    p.add_argument("--init", default="shipped", metavar="shipped|fresh|DIR",
                   help="start from the shipped generator's tensors (those of matching shape), from scratch, or from "
                        "a generator directory (e.g. an earlier run's <out>/<name>/generator); its gate, taps and value "
                        "source come with it")
    p.add_argument("--target", type=lambda text: [t for t in text.split(",") if t], default=["o_proj"],
                   metavar="MODULE[,MODULE]", help="adapted modules (e.g. down_proj, or o_proj,down_proj); a module "
                   "the loaded generator or checkpoint lacks starts fresh, its delta at zero")
    p.add_argument("--layers", type=layer_list, default=None,
                   help="adapt only these decoder layers: 'A-B' (inclusive) or 'A,B,C' (default: all)")
    p.add_argument("--normalization", default=None, help="override the shipped generator's normalisation")
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--token-gate", action="store_true",
                   help="GenerativeAdapterConfig(token_gate=True) (a generator loaded with --init keeps its own gate)")
    p.add_argument("--key-conv", type=int, default=None,
                   help="GenerativeAdapterConfig(key_conv=N) (default: the --init generator's, 0 when fresh)")
    p.add_argument("--value-lookahead", type=int, default=None,
                   help="GenerativeAdapterConfig(value_lookahead=N) (default: the --init generator's, 0 when fresh)")
    p.add_argument("--key-lookahead", type=int, default=None,
                   help="GenerativeAdapterConfig(key_lookahead=N): keys also read the N later hidden states (default: "
                        "the --init generator's, 0 when fresh)")
    p.add_argument("--value-source", choices=["layer", "embedding", "next_embedding"], default=None,
                   help="GenerativeAdapterConfig(value_source=...): values from the layer or the token embeddings")
    p.add_argument("--reset-values", action="store_true",
                   help="after loading the generator, give A3 a fresh Kaiming init and B zeros (the value path "
                        "starts over: the adapter starts as a no-op; for a new --value-source)")
    p.add_argument("--key-dim", type=int, default=None, help="state size (default: the shipped generator's); a larger "
                   "state starts from the shipped tensors in its leading block")
    p.add_argument("--value-dim", type=int, default=None)
    p.add_argument("--rank", type=int, default=None)
    p.add_argument("--data", choices=["facts", "words", "both", "needles"], default="facts",
                   help="training documents: synthetic facts (issue 22), open-vocabulary words (issue 32), half each, "
                        "or word needles only")
    p.add_argument("--words-share", type=float, default=0.5, metavar="SHARE",
                   help="with --data both: the share of word documents, the rest facts and number needles (replay)")
    p.add_argument("--prose-share", type=float, default=0.0, metavar="SHARE",
                   help=f"share of a step's documents that are real prose passages with their cloze questions "
                        f"({PROSE_TRAIN}; default 0)")
    p.add_argument("--text-share", type=float, default=0.0, metavar="SHARE",
                   help=f"share of a step's documents that are pretraining text blocks ({TEXT_TRAIN}): the adapter of "
                        "two segments predicts the next segment (completion) and a window of the two "
                        "(reconstruction), as in the generator's pretraining (default 0)")
    p.add_argument("--text-weight", type=float, default=0.25,
                   help="a text block's target token against an answer token in the token-averaged loss (default "
                        "0.25: a block's 256 target tokens weigh as 64 answer tokens)")
    p.add_argument("--text-segment", type=int, default=128, help="tokens per segment of a text block (default 128)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--conv-lr", type=float, default=None,
                   help="learning rate of the convolution taps (default --lr): they start at zero, and at --lr they "
                   "stay within ~1%% of the token's own weight for the first hundred steps")
    p.add_argument("--docs-per-step", type=int, default=4)
    p.add_argument("--train-names", choices=["wide", "narrow"], default="wide",
                   help="training names from the wide syllable inventory (default) or the first, narrow one")
    p.add_argument("--needle-fraction", type=float, default=0.2)
    p.add_argument("--word-entities", type=count_range, default=None, metavar="MIN-MAX",
                   help="entities per training word document (default: the dataset's 2-5; 1-1: one entity, no binding)")
    p.add_argument("--value-first", type=float, default=0.0, metavar="SHARE",
                   help="share of a training word document's statements given value first where the relation allows "
                        "it (\"Anaru Knox is Indie's spouse.\"; default 0: the phrasing as drawn)")
    p.add_argument("--needle-subjects", type=choices(NEEDLE_SUBJECTS), default=("word",), metavar="word,name,place",
                   help="what a training word needle asks to copy, drawn per needle (default: word; `name`: a "
                        "person's first and last name, `place`: a city, region or town)")
    p.add_argument("--needle-filler", type=count_range, default=(4, 6), metavar="MIN-MAX",
                   help="filler sentences around a training word needle (default 4-6; 0-0: the needle alone)")
    p.add_argument("--needles-per-doc", type=count_range, default=(1, 1), metavar="MIN-MAX",
                   help="needles in one training needle document, every one asked (default 1-1: one needle; more "
                        "train the lookup: a name by its role, a place by its statement, at most one word)")
    p.add_argument("--cpu-budget", type=float, default=720.0, help="training process CPU seconds")
    p.add_argument("--decay-from", type=float, default=None, metavar="CPU_S",
                   help="from this many training CPU seconds on, every learning rate falls linearly to zero at "
                        "--cpu-budget (default: constant)")
    p.add_argument("--probe-every", type=int, default=40, help="probe every N steps (and before the first; 0: never)")
    p.add_argument("--save-every", type=int, default=10)
    p.add_argument("--n-eval", type=int, default=40, help="held-out fact documents (and as many needles)")
    p.add_argument("--eval-sets", type=choices(EVAL_SETS + FILE_SETS), default=None, metavar="SET,SET",
                   help=f"evaluate (and probe) only these held-out sets (default all: {', '.join(EVAL_SETS)}; also "
                        f"{', '.join(FILE_SETS)}: 40 real prose passages of {PROSE_RECALL} and the bundled demo)")
    p.add_argument("--perplexity-blocks", type=int, default=0, metavar="N",
                   help=f"also measure held-out reconstruction and completion perplexity on the first N blocks of "
                        f"{PRETRAINING_VALIDATION} (2 segments of context, 128 tokens a segment, as docs/results.md "
                        "reports with 12): adapter, another block's adapter, no context, context in the prompt")
    p.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="also stop after N training steps in all (the budget to compare arms by on a GPU)")
    p.add_argument("--no-final-eval", action="store_true",
                   help="train to the budget, save the checkpoint and the generator (with its training_state.json), "
                        "and stop without evaluating (evaluate it elsewhere with --eval-only, e.g. on another core)")
    p.add_argument("--eval-only", action="store_true",
                   help="evaluate the --init generator directory as it is, no training (its training_state.json, "
                        "when present, gives the steps, CPU seconds and tokens it was trained for)")
    p.add_argument("--device", default="cpu", help="where the model trains and answers (cpu, cuda, cuda:1, ...)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bf16", action="store_true",
                   help="the frozen base model's weights in bf16 and training under bf16 autocast; the generator, its "
                        "Adam moments and the context states stay fp32 (about 1.7x faster a step on a CPU with "
                        "avx512_bf16; evaluation then runs the bf16 base too)")
    p.add_argument("--attention", choices=["sdpa", "eager"], default=None,
                   help="the base model's attention kernels (default: transformers' choice, sdpa); on a CPU, eager's "
                        "backward is much cheaper than sdpa's for short question rows")
    p.add_argument("--pack-questions", action="store_true",
                   help="train on the questions of each document packed into one row behind their shared chat "
                        "prefix (peft_generative.training.question_packing: the same loss and gradient as separate "
                        "rows, fewer tokens)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.eval_only and (args.no_final_eval or args.init in ("shipped", "fresh")):
        p.error("--eval-only evaluates a generator directory given with --init, and cannot skip its evaluation")
    if not 0.0 <= args.words_share <= 1.0:
        p.error(f"--words-share must be a share in [0, 1], got {args.words_share:g}")
    if not (0.0 <= args.prose_share and 0.0 <= args.text_share and args.prose_share + args.text_share <= 1.0):
        p.error(f"--prose-share {args.prose_share:g} and --text-share {args.text_share:g} must be shares summing to "
                "at most 1")
    if args.text_weight <= 0 or args.text_segment < 8:
        p.error("--text-weight must be positive and --text-segment at least 8 tokens")
    for share, path, flag in ((args.prose_share, PROSE_TRAIN, "--prose_recall"),
                              (args.text_share, TEXT_TRAIN, "--pretraining --no-exclude"),
                              (args.perplexity_blocks, PRETRAINING_VALIDATION, "--pretraining --no-exclude")):
        if share > 0 and not path.is_file():
            p.error(f"{path} is missing: build it with `python -m peft_generative.data {flag} --out data` (offline)")
    if not 0.0 <= args.value_first <= 1.0:
        p.error(f"--value-first must be a share in [0, 1], got {args.value_first:g}")
    if args.decay_from is not None and not 0 <= args.decay_from < args.cpu_budget:
        p.error(f"--decay-from {args.decay_from:g} must be at least 0 and below --cpu-budget {args.cpu_budget:g}")
    if args.needles_per_doc != (1, 1):
        try:  # more needles than the subjects can tell apart, or more filler than there is: a usage error, now
            train_needle(0, args)
        except ValueError as exc:
            p.error(f"--needles-per-doc / --needle-filler / --needle-subjects: {exc}")
    return args


# ---- model ------------------------------------------------------------------------------------------------------
def config_kwargs(args, saved: dict) -> dict:
    """`GenerativeAdapterConfig` arguments of the run: sizes from the `--init` generator's saved config `saved` (the
    shipped one for `fresh`), its architecture (gate, taps, value source) unless `fresh`, then the flags given."""
    kwargs = {k: saved[k] for k in ("key_dim", "value_dim", "rank", "alpha", "normalization", "window")}
    # the architecture of the generator loaded (its gate, taps and value source come with it), unless overridden
    loaded = {} if args.init == "fresh" else {k: saved.get(k) for k in ARCHITECTURE if saved.get(k) is not None}
    overrides = {"normalization": args.normalization, "alpha": args.alpha, "key_dim": args.key_dim,
                 "value_dim": args.value_dim, "rank": args.rank, "key_conv": args.key_conv,
                 "value_lookahead": args.value_lookahead, "key_lookahead": args.key_lookahead,
                 "value_source": args.value_source}
    kwargs.update(loaded)
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    kwargs["token_gate"] = bool(args.token_gate or kwargs.get("token_gate"))
    return kwargs


def build(args):
    base, tok = load_base_model(attn_implementation=getattr(args, "attention", None))
    source = shipped_generator_path() if args.init in ("shipped", "fresh") else Path(args.init)
    if not (source / "adapter_model.safetensors").is_file():
        raise SystemExit(f"--init {args.init}: no adapter_model.safetensors there (expected a generator directory)")
    kwargs = config_kwargs(args, json.loads((source / "adapter_config.json").read_text()))
    config = GenerativeAdapterConfig(task_type="CAUSAL_LM", target_modules=args.target, encoding="parallel",
                                     layers_to_transform=args.layers, **kwargs)
    torch.manual_seed(args.seed)
    model = get_peft_model(base, config)
    if args.init != "fresh":
        weights = load_file(str(source / "adapter_model.safetensors"))
        own = {n.replace(".default", ""): p for n, p in model.named_parameters()}
        dropped = sorted(k for k in weights if k not in own or own[k].dim() != weights[k].dim())
        if dropped:  # a silently dropped gate once made "the shipped generator" a different one
            raise SystemExit(f"--init {args.init}: {len(dropped)} saved tensors do not fit this architecture "
                             f"(e.g. {dropped[0]}); pass the flags it was trained with")
        set_peft_model_state_dict(model, {k: grown(own[k], v) for k, v in weights.items()})
    if args.reset_values:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "generator_A3" in name:
                    torch.nn.init.kaiming_normal_(param, a=math.sqrt(5))
                elif "generator_B" in name:
                    param.zero_()
    for name, param in model.named_parameters():
        param.requires_grad_("generator_" in name)
        if getattr(args, "bf16", False) and "generator_" not in name:
            param.data = param.data.to(torch.bfloat16)  # the frozen base only: its buffers (rotary) stay fp32
    tok.padding_side = "left"
    return model.to(args.device), tok


def grown(target: torch.Tensor, saved: torch.Tensor) -> torch.Tensor:
    """`saved` in the leading block of a copy of `target` (a larger state keeps the saved generator's directions; the
    rest keeps its fresh initialisation: Kaiming for A1/A2/A3, zero for B); `saved` itself when the shapes agree."""
    if target.shape == saved.shape:
        return saved
    out = target.detach().clone()
    block = tuple(slice(0, min(a, b)) for a, b in zip(target.shape, saved.shape))
    out[block] = saved[block].to(out.dtype)
    return out


def train_needle(index: int, args) -> dict:
    if args.needles_per_doc != (1, 1):
        return multi_needle_document("train", index, args.seed, needles=args.needles_per_doc,
                                     filler=args.needle_filler, subjects=args.needle_subjects)
    subjects, rng = args.needle_subjects, random.Random(f"{args.seed}-needle-subject-{index}")
    subject = subjects[0] if len(subjects) == 1 else rng.choice(subjects)
    return word_needle_document("train", index, args.seed, filler=args.needle_filler, subject=subject)


@functools.lru_cache(maxsize=None)
def prose_passages(path: Path) -> tuple[dict, ...]:
    """The real prose training passages, each with every cloze question asked about it (in file order)."""
    passages: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        doc = passages.setdefault(row["context"], {"id": f"prose:{row['id']}", "context": row["context"],
                                                   "questions": []})
        doc["questions"].append({"question": row["prompt"], "answers": [row["completion"]], "type": row["type"],
                                 "kind": row["kind"]})
    return tuple(passages.values())


@functools.lru_cache(maxsize=None)
def text_documents(path: Path) -> tuple[str, ...]:
    """The pretraining corpus's training documents long enough to cut a text block from."""
    texts = (json.loads(line)["text"] for line in path.read_text().splitlines())
    long_enough = tuple(t for t in texts if len(t) >= TEXT_MIN_CHARS)
    if not long_enough:
        raise SystemExit(f"{path}: no document of {TEXT_MIN_CHARS} characters or more to cut text blocks from")
    return long_enough


def text_block(index: int, args) -> dict:
    """A stretch of a pretraining document (whitespace-aligned, 12 characters per token of the block at most); the
    tokenizer cuts it into the context and its targets (`text_rows`). No questions: its targets are the text's."""
    rng = random.Random(f"{args.seed}-train-text-{index}")
    texts = text_documents(TEXT_TRAIN)
    text = texts[rng.randrange(len(texts))]
    width = 12 * 3 * args.text_segment
    start = rng.randrange(max(1, len(text) - width))
    start = text.find(" ", start) + 1 if start else 0
    return {"id": f"text:{index}", "text": text[start: start + width], "questions": []}


def text_rows(tok, doc: dict, segment: int) -> tuple[str, list[tuple[list[int], list[int]]]]:
    """A text block's context (its first two segments, as text) and target rows: the next segment (completion) and a
    segment-long window of the context (reconstruction). Every target token is labelled but the first (it has no
    token of its own row before it)."""
    ids = tok(doc["text"], add_special_tokens=False)["input_ids"]
    segment = min(segment, len(ids) // 3)
    context = ids[: 2 * segment]
    start = random.Random(doc["id"]).randrange(segment + 1)
    rows = [ids[2 * segment: 3 * segment], context[start: start + segment]]
    return tok.decode(context), [(r, [IGNORE] + r[1:]) for r in rows]


def document_rows(tok, doc: dict, args) -> tuple[str, list[tuple[list[int], list[int]]]]:
    """A training document's context and its `(ids, labels)` rows: the chat rows of its questions, or a text
    block's completion and reconstruction."""
    if "text" in doc:
        return text_rows(tok, doc, args.text_segment)
    return doc["context"], qa_rows(tok, [q["question"] for q in doc["questions"]],
                                   [q["answers"][0] for q in doc["questions"]])


def train_document(index: int, args) -> dict:
    if args.prose_share or args.text_share:  # a draw of its own: without real text the mixture is as it was
        real = random.Random(f"{args.seed}-train-real-{index}").random()
        if real < args.prose_share:
            passages = prose_passages(PROSE_TRAIN)
            return passages[random.Random(f"{args.seed}-train-prose-{index}").randrange(len(passages))]
        if real < args.prose_share + args.text_share:
            return text_block(index, args)
    rng = random.Random(f"{args.seed}-train-mix-{index}")
    if args.data == "needles":
        return train_needle(index, args)
    if args.data == "words" or (args.data == "both" and rng.random() < args.words_share):
        if rng.random() < args.needle_fraction:
            return train_needle(index, args)
        return word_document("train", index, args.seed, entity_count=args.word_entities, value_first=args.value_first)
    if rng.random() < args.needle_fraction:
        return needle_document("train", index, args.seed)
    return fact_document("train", index, args.seed,
                         train_syllables=SYLLABLES["train_narrow"] if args.train_names == "narrow" else None)


def answer_nll(model, rows, pad_id):
    """Summed NLL and count of the answer tokens per `(ids, labels)` row; the LM head runs on those positions only."""
    return batch_nll(model, pad_rows([r[0] for r in rows], pad_id, labels=[r[1] for r in rows]))


def batch_nll(model, batch: dict):
    """Summed NLL and count of the labelled tokens per row of a prepared batch (`pad_rows` or `pack_questions`)."""
    generator = generator_of(model)
    batch = {k: v.to(generator.device) for k, v in batch.items()}
    logits, target, row = generator.labelled_logits(batch["input_ids"], batch["attention_mask"], batch["labels"],
                                                    position_ids=batch.get("position_ids"))
    nll = F.cross_entropy(logits.float(), target, reduction="none")
    rows = batch["input_ids"].shape[0]
    per_row = torch.zeros(rows, device=nll.device).index_add(0, row, nll)
    return per_row, torch.bincount(row, minlength=rows)


def qa_rows(tok, questions, answers):
    return [tokenize_conversation(tok, [{"role": "user", "content": q}, {"role": "assistant", "content": a}])
            for q, a in zip(questions, answers)]


# ---- evaluation -------------------------------------------------------------------------------------------------
def flat(docs):
    return [(i, q) for i, d in enumerate(docs) for q in d["questions"]]


@torch.no_grad()
def generate(model, tok, prompts, context=None, max_new_tokens=10, batch=20):
    eos, device = tok.convert_tokens_to_ids("<|im_end|>"), generator_of(model).device
    outs = []
    for s in range(0, len(prompts), batch):
        texts = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
                 for p in prompts[s: s + batch]]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        rows = None if context is None else context.rows(list(range(s, s + len(texts))))
        out = model.generate(**enc, context=rows, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                             pad_token_id=tok.pad_token_id)
        outs += [tok.decode(r, skip_special_tokens=True).strip().split("\n")[0].strip()
                 for r in out[:, enc["input_ids"].shape[1]:]]
    return outs


@torch.no_grad()
def gold_nll(model, tok, prompts, answers, context=None, batch=24):
    out = []
    for s in range(0, len(answers), batch):
        rows = qa_rows(tok, prompts[s: s + batch], answers[s: s + batch])
        with model.use_context(None if context is None else context.rows(list(range(s, s + len(rows))))):
            nll, count = answer_nll(model, rows, tok.pad_token_id)
        out += (nll / count.clamp(min=1)).tolist()
    return out


def score(predictions, questions):
    """EM, F1 and gold contained (x100) over all questions, EM by question type, and all three by answer kind."""
    answers = [q["answers"] for q in questions]
    measures = {"EM": [best_exact_match(p, a) for p, a in zip(predictions, answers)],
                "F1": [best_f1(p, a) for p, a in zip(predictions, answers)],
                "contains": [best_contains(p, a) for p, a in zip(predictions, answers)]}
    mean = lambda xs: round(100 * sum(xs) / max(len(xs), 1), 1)  # noqa: E731

    def grouped(field, values):
        groups = {}
        for v, q in zip(values, questions):
            groups.setdefault(q.get(field, "?"), []).append(v)
        return {k: mean(v) for k, v in sorted(groups.items())}

    return {**{name: mean(values) for name, values in measures.items()},
            "EM_by_type": grouped("type", measures["EM"]),
            "by_kind": {name: grouped("kind", values) for name, values in measures.items()},
            "predictions": predictions}


@torch.no_grad()
def evaluate_adapters(model, tok, docs, generation=True):
    """Own adapter vs the next document's adapter (the control) on every question."""
    ctx = model.contextualize([d["context"] for d in docs], tokenizer=tok, activate=False, progress=False)
    pairs = flat(docs)
    questions = [q for _, q in pairs]
    prompts, answers = [q["question"] for q in questions], [q["answers"][0] for q in questions]
    result = {}
    for tag, rows in (("own", [i for i, _ in pairs]), ("control", [(i + 1) % len(docs) for i, _ in pairs])):
        nll = gold_nll(model, tok, prompts, answers, ctx.rows(rows))
        result[tag] = {"nll": sum(nll) / len(nll), "nll_list": nll}
        if generation:
            result[tag].update(score(generate(model, tok, prompts, ctx.rows(rows)), questions))
    gaps = [c - o for o, c in zip(result["own"]["nll_list"], result["control"]["nll_list"])]
    result["nll_gap"] = sum(gaps) / len(gaps)
    result["own_better"] = sum(g > 0 for g in gaps) / len(gaps)
    return result


@torch.no_grad()
def baselines(model, tok, docs):
    pairs = flat(docs)
    questions = [q for _, q in pairs]
    prompts = {"closed_book": [q["question"] for q in questions],
               "prompting": [f"{docs[i]['context']}\n\n{q['question']}" for i, q in pairs]}
    with model.use_context(None):
        return {tag: score(generate(model, tok, p, max_new_tokens=24), questions) for tag, p in prompts.items()}


def eval_sets(n: int, seed: int, names: tuple[str, ...] = EVAL_SETS) -> dict[str, list[dict]]:
    """The held-out documents every run is measured on, whatever it was trained on (`names`: only these)."""
    documents = {"facts": lambda i: fact_document("test", i, seed),
                 "needle": lambda i: needle_document("test", i, seed),
                 "words": lambda i: word_document("test", i, seed),
                 "words_unseen": lambda i: word_document("test", i, seed, unseen=True),
                 "word_needle": lambda i: word_needle_document("test", i, seed),
                 "word_needle_bare": lambda i: word_needle_document("test", i, seed, filler=(0, 0)),
                 "words_one": lambda i: word_document("test", i, seed, entity_count=(1, 1)),
                 "name_needle_bare": lambda i: word_needle_document("test", i, seed, filler=(0, 0), subject="name"),
                 "name_needle": lambda i: word_needle_document("test", i, seed, subject="name"),
                 "place_needle": lambda i: word_needle_document("test", i, seed, subject="place"),
                 "multi_needle": lambda i: multi_needle_document("test", i, seed)}
    return {name: file_set(name) if name in FILE_SETS else [documents[name](i) for i in range(n)]
            for name in names}  # only the sets asked are built


def file_set(name: str) -> list[dict]:
    """`prose_recall`: the first 40 test passages (135 cloze questions, as in docs/results.md); `demo`: the bundled
    Quillmoor document and its six questions, then a held-out facts document without questions whose adapter is the
    demo's control (another context's adapter, as in every other set)."""
    if name == "prose_recall":
        if not PROSE_RECALL.is_file():
            raise SystemExit(f"{PROSE_RECALL} is missing: build it with `python -m peft_generative.data --prose_recall "
                             "--out data` (offline, from the pretraining corpora's packages)")
        return [json.loads(line) for line in PROSE_RECALL.read_text().splitlines()[:40]]
    assets = shipped_generator_path().parent
    questions = json.loads((assets / "quillmoor_questions.json").read_text())
    control = fact_document("test", 0, 0)
    return [{"id": "quillmoor", "context": (assets / "quillmoor.txt").read_text(),
             "questions": [{**q, "type": "demo", "kind": "demo"} for q in questions]},
            {"id": f"control:{control['id']}", "context": control["context"], "questions": []}]


def cached_baselines(path: Path, model, tok, sets: dict[str, list[dict]]) -> dict:
    """Closed-book and context-in-prompt answers do not depend on the generator: computed once per output folder and
    set (a set added later is computed alone; a set whose documents changed is recomputed)."""
    saved = json.loads(path.read_text()) if path.exists() else {"documents": {}, "results": {}}
    for name, docs in sets.items():
        ids = [d["id"] for d in docs]
        if saved["documents"].get(name) != ids:
            saved["documents"][name], saved["results"][name] = ids, baselines(model, tok, docs)
            path.with_suffix(".tmp").write_text(json.dumps(saved, indent=1))
            os.replace(path.with_suffix(".tmp"), path)  # runs side by side may share the cache: never half-written
    return {name: saved["results"][name] for name in sets}


# ---- training -----------------------------------------------------------------------------------------------------
def training_loss(model, tok, docs, args) -> torch.Tensor:
    """Token-averaged answer NLL of every question of `docs`, each document's context reaching the model only
    through its adapter; with `--pack-questions`, a document's questions share one row; with `--bf16`, under bf16
    autocast (the states and the loss stay fp32)."""
    nll, count = training_nll(model, tok, docs, args)
    return nll / count


def training_nll(model, tok, docs, args) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed answer NLL of every question of `docs` and the number of answer tokens (see `training_loss`)."""
    device_type = torch.device(args.device).type
    contexts, groups = zip(*(document_rows(tok, d, args) for d in docs))
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=args.bf16):
        ctx = model.contextualize(list(contexts), tokenizer=tok, requires_grad=True, activate=False, progress=False)
        if args.pack_questions:
            batch, rows = pack_questions(groups, tok.pad_token_id), list(range(len(docs)))
        else:
            flat_rows = [r for g in groups for r in g]
            batch = pad_rows([r[0] for r in flat_rows], tok.pad_token_id, labels=[r[1] for r in flat_rows])
            rows = [i for i, g in enumerate(groups) for _ in g]
        with model.use_context(ctx.rows(rows)):
            nll, count = batch_nll(model, batch)
    if any("text" in d for d in docs):  # a text block's target tokens weigh --text-weight answer tokens each
        weight = torch.tensor([args.text_weight if "text" in docs[i] else 1.0 for i in rows], device=nll.device)
        return (nll * weight).sum(), (count * weight).sum()
    return nll.sum(), count.sum()


# ---- several processes (torchrun): each takes its share of a step's documents -------------------------------------
def process_group() -> tuple[int, int]:
    """`(rank, world size)`: under `torchrun --nproc_per_node N` a gloo group (one CPU thread a process is the
    cheapest way to use N cores here), `(0, 1)` otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), world


def summed(values: list[float]) -> list[float]:
    """`values` summed over the processes (one all-reduce)."""
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def shared_step(model, tok, docs, args, params) -> tuple[float, int]:
    """Backward of this process's documents' summed NLL, then the gradients summed over the processes and divided by
    every process's answer tokens: the gradient of the step's token-averaged loss, as one process would compute it
    (up to float summation order). Returns the step's loss and training tokens (over all processes)."""
    import torch.distributed as dist

    nll, count = training_nll(model, tok, docs, args)
    nll.backward()
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
    dist.all_reduce(flat)
    total_nll, total_count, tokens = summed([nll.item(), count.item(), data_tokens(tok, docs, args)])
    offset = 0
    for p in params:
        p.grad = (flat[offset: offset + p.numel()].view_as(p) / total_count).to(p.dtype)
        offset += p.numel()
    return total_nll / total_count, int(tokens)


def training_step(model, tok, args, params, optimizer, step: int, rank: int = 0, world: int = 1) -> tuple[float, int]:
    """One update on step `step`'s documents (this process's share of them under torchrun: the same update on every
    process); the update is skipped if the gradient is not finite. Returns the step's loss and training tokens."""
    model.train()
    docs = [train_document(step * args.docs_per_step + j, args) for j in range(args.docs_per_step)]
    optimizer.zero_grad(set_to_none=True)
    if world == 1:
        loss = training_loss(model, tok, docs, args)
        loss.backward()
        loss, tokens = loss.item(), data_tokens(tok, docs, args)
    else:
        loss, tokens = shared_step(model, tok, docs[rank::world], args, params)
    if torch.isfinite(torch.nn.utils.clip_grad_norm_(params, 1.0)):
        optimizer.step()
    return loss, tokens


def data_tokens(tok, docs, args) -> int:
    """The training tokens of `docs`: their contexts' tokens plus every question-answer row's (one row a question,
    however the rows are batched) and every text target's."""
    total = 0
    for doc in docs:
        context, rows = document_rows(tok, doc, args)
        total += len(tok(context, add_special_tokens=False)["input_ids"]) + sum(len(r[0]) for r in rows)
    return total


# ---- resumable training -----------------------------------------------------------------------------------------
def save(run: Path, model, optimizer, state):
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    tensors = {f"param/{n}": p.detach().contiguous() for n, p in trainable.items()}
    index = {id(p): i for i, p in enumerate(p for group in optimizer.param_groups for p in group["params"])}
    for p, s in optimizer.state.items():
        for key, value in s.items():
            tensors[f"opt/{index[id(p)]}/{key}"] = torch.as_tensor(value).contiguous()
    save_file(tensors, str(run / "checkpoint.safetensors.tmp"))
    os.replace(run / "checkpoint.safetensors.tmp", run / "checkpoint.safetensors")
    (run / "state.json").write_text(json.dumps(state, indent=1))


def decay_factor(cpu: float, start: float | None, end: float) -> float:
    """The learning rate's factor at `cpu` training seconds: 1 until `start`, then linear to 0 at `end`."""
    if start is None or cpu <= start:
        return 1.0
    return max(0.0, (end - cpu) / (end - start))


def restore(run: Path, model, optimizer) -> dict:
    """Parameters, optimizer moments and progress of the run's checkpoint. Parts the checkpoint was saved without
    (taps added with a flag, e.g. `--key-lookahead`) keep their zero start and a fresh optimizer state; the saved
    moments are matched to the parameters the checkpoint has, in the optimizer's order."""
    tensors = load_file(str(run / "checkpoint.safetensors"))
    named = dict(model.named_parameters())
    with torch.no_grad():
        for key, value in tensors.items():
            if key.startswith("param/"):
                named[key[len("param/"):]].copy_(value)
    names = {id(p): n for n, p in named.items()}
    params = [p for group in optimizer.param_groups for p in group["params"] if f"param/{names[id(p)]}" in tensors]
    for key, value in tensors.items():
        if key.startswith("opt/"):
            _, i, name = key.split("/")
            param = params[int(i)]  # Adam's moments live beside their parameter; its step count stays on the CPU
            optimizer.state[param][name] = value.clone() if name == "step" else value.to(param.device, copy=True)
    return json.loads((run / "state.json").read_text())


def main(argv=None):
    args = parse(argv)
    torch.set_num_threads(args.threads)
    rank, world = process_group()
    if world > 1 and args.eval_only:
        raise SystemExit("--eval-only runs in one process (start it without torchrun)")
    run = Path(args.out) / args.name
    run.mkdir(parents=True, exist_ok=True)
    model, tok = build(args)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    is_tap = lambda name: "_conv" in name or "_lookahead" in name  # noqa: E731
    taps = [p for n, p in named if is_tap(n)]
    groups = [{"params": [p for n, p in named if not is_tap(n)]}]
    if taps:
        groups.append({"params": taps, "lr": args.conv_lr or args.lr})
    optimizer = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.0)
    state = {"step": 0, "cpu": 0.0, "wall": 0.0, "tokens": 0, "probes": []}
    if args.eval_only:
        saved = Path(args.init) / "training_state.json"
        state.update(json.loads(saved.read_text()) if saved.exists() else {})
    elif (run / "checkpoint.safetensors").exists():
        state = restore(run, model, optimizer)
        print(f"resumed at step {state['step']} ({state['cpu']:.0f} CPU s)", flush=True)
    sets = eval_sets(args.n_eval, args.seed, args.eval_sets or EVAL_SETS)
    probe_sizes = {"facts": 8, "words": 12, "needle": 4, "word_needle_bare": 12, "words_one": 12,
                   "name_needle_bare": 12}
    probe_sets = {name: sets[name][:size] for name, size in probe_sizes.items() if name in sets}

    def probe():
        """Gold NLL with the own / another document's adapter, and gold contained in the own adapter's answers, on
        the first held-out documents of each set (the curve of docs/img/words_contained_levers.png)."""
        entry = {"step": state["step"], "cpu": round(state["cpu"])}
        for part, docs in probe_sets.items():
            r = evaluate_adapters(model.eval(), tok, docs, generation=part != "needle")
            entry[part] = {"own_nll": round(r["own"]["nll"], 3), "control_nll": round(r["control"]["nll"], 3),
                           "gap": round(r["nll_gap"], 3), "own_better": round(r["own_better"], 2)}
            if part != "needle":
                entry[part]["contains"] = r["own"]["contains"]
                entry[part]["control_contains"] = r["control"]["contains"]
        state["probes"].append(entry)
        print("PROBE", json.dumps(entry), flush=True)

    if not state["probes"] and not args.eval_only and rank == 0 and args.probe_every:
        probe()
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    while not args.eval_only and state["cpu"] < args.cpu_budget and (args.max_steps is None or
                                                                     state["step"] < args.max_steps):
        c0, w0 = time.process_time(), time.time()
        for group, lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = lr * decay_factor(state["cpu"], args.decay_from, args.cpu_budget)
        loss, tokens = training_step(model, tok, args, params, optimizer, state["step"], rank, world)
        state["tokens"] = state.get("tokens", 0) + tokens
        state["step"] += 1
        cpu = time.process_time() - c0
        state["cpu"] += cpu if world == 1 else summed([cpu])[0]  # every process's CPU time: the same on all
        state["wall"] += time.time() - w0
        if state["step"] % 5 == 0 and rank == 0:
            print(f"step {state['step']} loss {loss:.3f} cpu {state['cpu']:.0f}s tokens {state['tokens']}",
                  flush=True)
        if args.probe_every and state["step"] % args.probe_every == 0 and rank == 0:
            probe()
        if state["step"] % args.save_every == 0 and rank == 0:
            save(run, model, optimizer, state)
    if rank > 0:  # the first process saves and evaluates
        return
    if not args.eval_only:
        save(run, model, optimizer, state)
        model.save_pretrained(str(run / "generator"))  # a generator directory: `peft-generative eval --generator ...`
        progress = {k: state.get(k) for k in ("step", "cpu", "wall", "tokens")}
        (run / "generator" / "training_state.json").write_text(json.dumps(progress, indent=1))
    if args.no_final_eval:
        return
    model.eval()
    result = {"args": vars(args), "steps": state["step"], "train_cpu_s": round(state["cpu"]),
              "train_tokens": state.get("tokens"),
              "train_wall_s": round(state["wall"]), "probes": state["probes"]}
    result.update({part: evaluate_adapters(model, tok, docs) for part, docs in sets.items()})
    cached = cached_baselines(Path(args.out) / f"baselines_n{args.n_eval}_seed{args.seed}.json", model, tok, sets)
    result.update({f"baselines_{part}": value for part, value in cached.items()})
    if args.perplexity_blocks:
        texts = [json.loads(line)["text"] for line in PRETRAINING_VALIDATION.read_text().splitlines()]
        with torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=args.bf16):
            result["perplexity"] = context_perplexity(model, tok, texts, num_segments=3, segment_length=128,
                                                      max_blocks=args.perplexity_blocks, progress=False)
        print("[perplexity]", json.dumps(result["perplexity"]), flush=True)
    (run / "result.json").write_text(json.dumps(result, indent=1))
    for part in sets:
        r, prompting = result[part], result[f"baselines_{part}"]["prompting"]
        print(f"[{part}] own EM {r['own']['EM']:.1f} F1 {r['own']['F1']:.1f} contained {r['own']['contains']:.1f} "
              f"by kind {r['own']['by_kind']['contains']} | control contained {r['control']['contains']:.1f} | "
              f"prompting contained {prompting['contains']:.1f} {prompting['by_kind']['contains']} | gold NLL own "
              f"{r['own']['nll']:.3f} control {r['control']['nll']:.3f} (own better {r['own_better']:.2f})", flush=True)


if __name__ == "__main__":
    main()
