"""``python -m peft_generative.data --all --out DIR``: download the raw data once and build the datasets."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .build import DATASETS, build_all
from .cache import DATA_ENV, SOURCES, DownloadError, data_dir, fetch_all


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
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


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
    wanted = list(DATASETS) if args.all else [d for d in DATASETS if getattr(args, d)]
    if not wanted:
        parser.error("nothing to do: give --all or one of " + ", ".join(f"--{d}" for d in DATASETS))
    if args.out is None:
        parser.error("--out is required")
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    print(f"[peft_generative.data] data cache: {Path(root).expanduser() if root else data_dir()}", file=sys.stderr)
    results = build_all(args.out, wanted, seed=args.seed, data_root=root, exclude_eval_passages=not args.no_exclude,
                        progress_bar=not args.no_progress, articles_english_share=args.articles_english_share)
    summary = {}
    for name, paths in results.items():
        manifest = json.loads((args.out / name / "manifest.json").read_text())
        summary[name] = {"counts": manifest["counts"], "files": {k: str(v) for k, v in paths.items()}}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
