"""A saved generator as files of limited size, and back, exactly."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from peft_generative.loading import shipped_generator_path
from peft_generative.training.shards import INDEX_NAME, join_generator_shards, main, plan_shards, write_generator_shards

MIB = 2**20


def test_the_shipped_generator_comes_back_exactly_from_files_under_16_mib(tmp_path):
    shipped = shipped_generator_path()
    files = write_generator_shards(str(shipped), str(tmp_path / "shards"), 15 * MIB)
    weights = [f for f in files if f.suffix == ".safetensors"]
    assert len(weights) == 2 and all(f.stat().st_size <= 15 * MIB for f in files)
    assert {f.name for f in files} >= {"adapter_config.json", INDEX_NAME}
    joined = join_generator_shards(str(tmp_path / "shards"), str(tmp_path / "joined"))
    original, again = load_file(shipped / "adapter_model.safetensors"), load_file(joined / "adapter_model.safetensors")
    assert original.keys() == again.keys()
    assert all(torch.equal(original[k], again[k]) and original[k].dtype == again[k].dtype for k in original)
    assert (joined / "adapter_config.json").read_bytes() == (shipped / "adapter_config.json").read_bytes()


def test_incomplete_or_altered_shards_are_refused(tmp_path):
    shards = tmp_path / "shards"
    files = write_generator_shards(str(shipped_generator_path()), str(shards), 15 * MIB)
    second = next(f for f in files if f.name.startswith("generator-00002"))
    data = second.read_bytes()
    second.unlink()
    with pytest.raises(FileNotFoundError, match="generator-00002-of-00002"):
        join_generator_shards(str(shards), str(tmp_path / "joined"))
    first = next(f for f in files if f.name.startswith("generator-00001"))
    second.write_bytes(first.read_bytes())  # the wrong file under the right name
    with pytest.raises(ValueError, match="does not hold the tensors its index names"):
        join_generator_shards(str(shards), str(tmp_path / "joined"))
    second.write_bytes(data)
    assert join_generator_shards(str(shards), str(tmp_path / "joined")).is_dir()
    with pytest.raises(ValueError, match="not a sharded generator"):
        join_generator_shards(str(tmp_path), str(tmp_path / "other"))


def test_planning_and_the_command_line(tmp_path, capsys):
    assert plan_shards({"b": 3000, "a": 3000, "c": 10}, 6000) == [["a"], ["b", "c"]]
    with pytest.raises(ValueError, match="allow larger shards"):
        plan_shards({"a": 10_000}, 6000)
    assert main(["split", str(shipped_generator_path()), str(tmp_path / "s"), "--max-mib", "15"]) == 0
    assert main(["join", str(tmp_path / "s"), str(tmp_path / "g")]) == 0
    assert Path(tmp_path / "g" / "adapter_model.safetensors").is_file()
    assert main(["join", str(tmp_path / "nothing"), str(tmp_path / "g2")]) == 1
    assert "not a sharded generator" in capsys.readouterr().err
