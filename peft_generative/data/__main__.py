"""``python -m peft_generative.data --all --out DIR``: download the raw data once and build the datasets."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from .build import DATASETS, build_all
from .cache import DATA_ENV, SOURCES, DownloadError, data_dir, fetch_all

WORDS = "synthetic_words"  # built here (nothing to download), with its own size options
WORDS_DEFAULTS = {"words_train": 4000, "words_heldout": 200, "words_needle_fraction": 0.15,
                  "words_needle_filler": (4, 6), "words_needle_subjects": ("word",), "words_needles_per_doc": (1, 1),
                  "words_value_first": 0.0}


def _min_max(text: str) -> tuple[int, int]:
    try:
        low, high = (int(x) for x in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected MIN-MAX, e.g. 0-6") from None
    return low, high


def _subjects(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m peft_generative.data",
        description="Download (once, into the data cache) and build the Generative Adapter datasets as JSON Lines: "
        "pretraining text, passage QA (knowledge), MetaICL-like demonstrations, multi-session conversations.",
        epilog=f"Raw downloads are cached in ${DATA_ENV}/raw (default: data/raw in $PEFT_GENERATIVE_HOME, "
        "$XDG_CACHE_HOME/peft_generative or ~/.cache/peft_generative). Sources: "
        + ", ".join(f"{s.spec} ({s.kind})" for s in SOURCES.values())
        + ". Debian packages need apt-get (run `apt-get update` first on a fresh machine).",
    )
    p.add_argument("--out", type=Path, help="output directory (one sub-directory per dataset)")
    p.add_argument("--all", action="store_true", help="build every dataset")
    for name in DATASETS:
        p.add_argument(f"--{name}", action="store_true", help=f"build the {name} dataset")
    p.add_argument("--seed", type=int, default=0, help="split / sampling seed (default 0)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"data cache directory (default: ${DATA_ENV}, else data in the package's cache directory)")
    p.add_argument("--fetch-only", action="store_true", help="only download the raw data into the cache")
    p.add_argument("--no-exclude", action="store_true",
                   help="do not drop pretraining documents that overlap knowledge passages")
    p.add_argument("--articles-english-share", type=float, default=0.5, metavar="SHARE",
                   help="share of synthetic training articles with real English names (default 0.5; 0 builds the "
                   "ninth generator's training file)")
    p.add_argument("--prose_recall", action="store_true",
                   help="build the prose_recall dataset: cloze recall questions on real passages of the news, speech "
                   "and BBC pretraining sources, split like the pretraining corpus (not part of --all)")
    p.add_argument("--prose-train-passages", type=int, default=4000, metavar="N",
                   help="prose_recall: training passages (default 4000, up to 4 questions each)")
    p.add_argument("--prose-heldout-passages", type=int, default=200, metavar="N",
                   help="prose_recall: validation and test passages each (default 200)")
    if WORDS not in DATASETS:
        p.add_argument(f"--{WORDS}", action="store_true",
                       help="build the synthetic_words dataset (people, companies and ships with real-word answers "
                       "that can only be copied; held-out words, relations and phrasings; part of --all)")
    p.add_argument("--words-train", type=int, default=None, metavar="N",
                   help=f"synthetic_words training documents (default {WORDS_DEFAULTS['words_train']})")
    p.add_argument("--words-heldout", type=int, default=None, metavar="N",
                   help="synthetic_words documents per validation/test file (default "
                   f"{WORDS_DEFAULTS['words_heldout']})")
    p.add_argument("--words-needle-fraction", type=float, default=None, metavar="SHARE",
                   help="share of synthetic_words training documents that are needles (default "
                   f"{WORDS_DEFAULTS['words_needle_fraction']})")
    p.add_argument("--words-needle-filler", type=_min_max, default=None, metavar="MIN-MAX",
                   help="filler sentences around a synthetic_words training needle (default 4-6; 0-6 also trains on "
                   "needles alone, the easiest copy)")
    p.add_argument("--words-needles-per-doc", type=_min_max, default=None, metavar="MIN-MAX",
                   help="needles in one synthetic_words training needle document, every one asked (default 1-1; "
                   "2-4 trains the lookup: names told apart by role, places by statement, at most one word)")
    p.add_argument("--words-needle-subjects", type=_subjects, default=None, metavar="word,name,place",
                   help="what a synthetic_words training needle asks to copy, drawn per needle (default word; name: "
                   "a person's full name, place: a city, region or town)")
    p.add_argument("--words-value-first", type=float, default=None, metavar="SHARE",
                   help="share of the synthetic_words training statements given value first where the relation allows "
                   "it (\"Anaru Knox is Indie's spouse.\"; default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _words_options(parser: argparse.ArgumentParser, args: argparse.Namespace, build_words: bool) -> dict:
    """The synthetic_words sizes, checked before anything is built (a bad value is a usage error)."""
    given = {name: getattr(args, name) for name in WORDS_DEFAULTS if getattr(args, name) is not None}
    if given and not build_words:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        parser.error(f"{flags} only apply to --{WORDS}: add --{WORDS} (or --all)")
    options = {**WORDS_DEFAULTS, **given}
    for name in ("words_train", "words_heldout"):
        if options[name] < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive number of documents, got {options[name]}")
    if not 0 <= options["words_needle_fraction"] < 1:
        parser.error(f"--words-needle-fraction must be in [0, 1), got {options['words_needle_fraction']}")
    if not 0 <= options["words_value_first"] <= 1:
        parser.error(f"--words-value-first must be in [0, 1], got {options['words_value_first']}")
    if build_words:
        from .synthetic_words import FILLER, NEEDLE_SUBJECTS

        subjects = options["words_needle_subjects"]
        if not subjects or set(subjects) - set(NEEDLE_SUBJECTS):
            parser.error(f"--words-needle-subjects must be a comma-separated list of {', '.join(NEEDLE_SUBJECTS)}, "
                         f"got {','.join(subjects) or 'nothing'}")
        low, high = options["words_needle_filler"]
        if not 0 <= low <= high <= len(FILLER):
            parser.error(f"--words-needle-filler must be MIN-MAX with 0 <= MIN <= MAX <= {len(FILLER)}, got "
                         f"{low}-{high}")
        if options["words_needles_per_doc"] != (1, 1):
            from .synthetic_words import multi_needle_document

            try:
                multi_needle_document("train", 0, needles=options["words_needles_per_doc"], filler=(low, high),
                                      subjects=subjects)
            except ValueError as exc:
                parser.error(f"--words-needles-per-doc: {exc}")
    return options


def _check_bigbench(wanted: list[str], args: argparse.Namespace) -> None:
    """Stop before building anything when a dataset needs the retired BIG-bench archive and it is not cached."""
    from .cache import SOURCES, bigbench_cached, raw_dir

    source = SOURCES["bigbench"]
    needs = [d for d in wanted if d == "knowledge" or (d == "pretraining" and not args.no_exclude)]
    if needs and source.retired and not bigbench_cached(args.data_dir):
        flags = " ".join(f"--{d}" for d in wanted if d != "knowledge")
        raise DownloadError(
            f"{', '.join(needs)}: {source.retired} (here: `{flags + ' ' if flags else ''}--prose_recall"
            f"{' --no-exclude' if 'pretraining' in wanted else ''}`); or put a copy of {source.pattern} (SHA-256 "
            f"{source.sha256}) into {raw_dir(args.data_dir)} and run again: a file found there is used as it is."
        )


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    root = args.data_dir
    if args.fetch_only:
        paths = fetch_all(root)
        for name, path in paths.items():
            print(f"{name}: {path}")
        return 0
    build_words = args.all or getattr(args, WORDS)  # synthetic_words is part of --all (nothing to download)
    wanted = [d for d in (DATASETS if args.all else [d for d in DATASETS if getattr(args, d)]) if d != WORDS]
    if not wanted and not args.prose_recall and not build_words:
        parser.error("nothing to do: give --all or one of "
                     + ", ".join(f"--{d}" for d in dict.fromkeys((*DATASETS, "prose_recall", WORDS))))
    if args.out is None:
        parser.error("--out is required")
    for flag in ("prose_train_passages", "prose_heldout_passages"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be a positive number of passages, got {getattr(args, flag)}")
    words_options = _words_options(parser, args, build_words)
    _check_bigbench(wanted + ([WORDS] if build_words else []), args)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    print(f"[peft_generative.data] data cache: {Path(root).expanduser() if root else data_dir()}", file=sys.stderr)
    results = build_all(args.out, wanted, seed=args.seed, data_root=root, exclude_eval_passages=not args.no_exclude,
                        progress_bar=not args.no_progress, articles_english_share=args.articles_english_share)
    if args.prose_recall:
        from .prose_recall import build_prose_recall_dataset

        results["prose_recall"] = build_prose_recall_dataset(
            args.out / "prose_recall", seed=args.seed, data_root=root, train_passages=args.prose_train_passages,
            heldout_passages=args.prose_heldout_passages, progress_bar=not args.no_progress)
    if build_words:
        from .synthetic_words import build_synthetic_words_dataset

        t0 = time.perf_counter()
        results[WORDS] = build_synthetic_words_dataset(
            args.out / WORDS, seed=args.seed, train_documents=words_options["words_train"],
            heldout_documents=words_options["words_heldout"], needle_fraction=words_options["words_needle_fraction"],
            needle_filler=words_options["words_needle_filler"],
            needle_subjects=words_options["words_needle_subjects"],
            needles_per_doc=words_options["words_needles_per_doc"], value_first=words_options["words_value_first"])
        logging.getLogger("peft_generative.data.build").info("built %s in %.1fs -> %s", WORDS,
                                                              time.perf_counter() - t0, args.out / WORDS)
    summary = {}
    for name, paths in results.items():
        manifest = json.loads((args.out / name / "manifest.json").read_text())
        summary[name] = {"counts": manifest["counts"], "files": {k: str(v) for k, v in paths.items()}}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
