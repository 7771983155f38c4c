"""The training recipes in examples/configs parse with the training script's parser and form one chain.

A key the dataclasses do not know, or a stage that starts from a generator no earlier stage writes, would only
show up after minutes of data loading; these tests catch it without training.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from peft_generative.training.script import make_parser

CONFIGS = Path(__file__).resolve().parent.parent / "examples" / "configs"
RECIPES = sorted(CONFIGS.glob("*.yaml"))


def parse(path: Path):
    return make_parser().parse_args_and_config(["--config", str(path)])


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_parses_with_the_training_script(path):
    script_args, training_args = parse(path)
    assert Path(script_args.train_file).parts[0] == "data"
    assert training_args.max_steps > 0 and training_args.save_steps <= training_args.max_steps


def test_recipes_chain_from_one_fresh_generator_to_the_shipped_recipe():
    parsed = {path.name: parse(path) for path in RECIPES}
    outputs = {training_args.output_dir: name for name, (_, training_args) in parsed.items()}
    assert len(outputs) == len(parsed), "two recipes write the same output_dir"
    fresh = [name for name, (script_args, _) in parsed.items() if script_args.init_generator is None]
    assert fresh == ["pretrain_smollm2.yaml"]
    for name, (script_args, _) in parsed.items():
        if script_args.init_generator is None:
            continue
        stage_dir, checkpoint = Path(script_args.init_generator).parent, Path(script_args.init_generator).name
        assert str(stage_dir) in outputs, f"{name} starts from {stage_dir}, which no recipe writes"
        _, previous = parsed[outputs[str(stage_dir)]]
        assert checkpoint == f"checkpoint-{previous.max_steps}", f"{name} does not start from the end of {stage_dir}"
    # the instruction-tuning recipe is the end of the chain: nothing starts from it
    sft_dir = parsed["sft_mixture_smollm2.yaml"][1].output_dir
    assert all(Path(s.init_generator or "").parent != Path(sft_dir) for s, _ in parsed.values())


def test_unknown_recipe_key_is_an_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "pretrain_smollm2.yaml").read_text() + "reconstruction_wieght: 0.5\n")
    with pytest.raises(ValueError, match="reconstruction_wieght"):
        parse(bad)
