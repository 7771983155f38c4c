"""Install the carried wheels that this machine lacks (or has older) into a target folder, without any index.

    python scripts/device/kit_install.py device_kit/wheels /tmp/pg_site --detail stage.json [--force]

A package already installed at the carried version or newer is left alone (the GPU image's own builds win); the rest
go into the target, which device_check.sh puts first on PYTHONPATH. `--force` installs every wheel that fits this
Python (a rehearsal on a machine that has them all). Writes what it decided to `--detail` (JSON); exits non-zero when
a needed wheel does not fit this Python or pip fails.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

from packaging.tags import sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version


def installed_version(name: str):
    try:
        return Version(importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        return None


def choose(wheels: list[Path], force: bool) -> tuple[list[Path], dict, list[str]]:
    """The wheels to install, for every package what was found and decided, and the problems: a package this
    machine needs whose carried wheel does not fit its Python (the kit was made for another version)."""
    supported = set(sys_tags())
    chosen, decisions, problems = [], {}, []
    for wheel in sorted(wheels):
        name, carried, _, tags = parse_wheel_filename(wheel.name)
        here = installed_version(name)
        needed = here is None or here < carried
        fits = bool(tags & supported)
        install = (needed or force) and fits
        decisions[canonicalize_name(name)] = {"carried": str(carried), "found": str(here) if here else None,
                                              "installed": install, "fits_this_python": fits}
        if install:
            chosen.append(wheel)
        elif needed:
            problems.append(f"{wheel.name} is needed but does not fit Python {sys.version_info.major}."
                            f"{sys.version_info.minor}: make the kit with REMOTE_PYTHON=<this version> "
                            "scripts/device_prepare.sh")
    return chosen, decisions, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wheels", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--detail", type=Path, required=True)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    wheels = list(args.wheels.glob("*.whl")) if args.wheels.is_dir() else []
    if not wheels:
        args.detail.write_text(json.dumps({"error": f"no wheels in {args.wheels}: run scripts/device_prepare.sh "
                                                    "here and carry device_kit"}) + "\n")
        print(f"kit_install: no wheels in {args.wheels}", file=sys.stderr)
        return 1
    chosen, decisions, problems = choose(wheels, args.force)
    for name, d in decisions.items():
        note = "" if d["fits_this_python"] else " (the wheel is for another Python)"
        print(f"kit_install: {name}: carried {d['carried']}, found {d['found']} -> "
              f"{'install' if d['installed'] else 'keep'}{note}")
    for problem in problems:
        print(f"kit_install: {problem}", file=sys.stderr)
    rc = 1 if problems else 0
    if chosen and not problems:
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                   "--no-cache-dir", "--upgrade", "--target", str(args.target), *map(str, chosen)]
        rc = subprocess.call(command)
    args.detail.write_text(json.dumps({"packages": decisions, "target": str(args.target), "problems": problems,
                                       "rc": rc}, indent=1) + "\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())
