"""Choosing the training checkpoint to resume from: the newest one that was written completely."""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Optional

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)

TRAINER_STATE_NAME = "trainer_state.json"
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def is_complete_checkpoint(path: str) -> bool:
    """The Trainer writes `trainer_state.json` last; a checkpoint whose state file is missing or does not parse was
    interrupted while it was being saved."""
    try:
        with open(os.path.join(path, TRAINER_STATE_NAME), encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(state, dict) and "global_step" in state


def last_complete_checkpoint(output_dir: str) -> Optional[str]:
    """The newest `checkpoint-N` directory of `output_dir` that was saved completely (None if there is none).
    Half-written ones (a run killed mid-save) are skipped with a warning, so auto-resume never picks them."""
    if not os.path.isdir(output_dir):
        return None
    steps = sorted(
        ((int(m.group(1)), name) for name in os.listdir(output_dir) if (m := _CHECKPOINT.match(name))
         and os.path.isdir(os.path.join(output_dir, name))),
        reverse=True,
    )
    for _, name in steps:
        path = os.path.join(output_dir, name)
        if is_complete_checkpoint(path):
            return path
        logger.warning("skipping %s: it was not saved completely (no readable %s)", path, TRAINER_STATE_NAME)
    return None
