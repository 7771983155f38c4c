import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from peft_generative.cli import main
from peft_generative.interpolation import interpolate_generators

from .test_saving import DOC, QUERY, generator_state, make
from .conftest import tiny_model


@pytest.fixture
def two_generators(tmp_path):
    first, second = make(), make()
    with torch.no_grad():  # the same shapes, different values (as after fine-tuning)
        for name, param in second.named_parameters():
            if "generator_" in name:
                param.mul_(-0.5).add_(0.01)
    first.save_pretrained(tmp_path / "first")
    second.save_pretrained(tmp_path / "second")
    return tmp_path / "first", tmp_path / "second", generator_state(first), generator_state(second)


def test_interpolation_is_the_weighted_sum_and_loads(tmp_path, two_generators):
    first, second, state_a, state_b = two_generators
    interpolate_generators(str(first), str(second), 0.75, str(tmp_path / "mix"))
    loaded = PeftModel.from_pretrained(tiny_model(), tmp_path / "mix")
    mixed = generator_state(loaded)
    assert mixed.keys() == state_a.keys()
    for name, value in mixed.items():
        torch.testing.assert_close(value, 0.75 * state_a[name] + 0.25 * state_b[name], rtol=0, atol=1e-7)
    assert not any(torch.equal(mixed[k], state_a[k]) for k in mixed if "generator_B" in k)
    ctx = loaded.contextualize(DOC)
    with torch.no_grad(), loaded.use_context(ctx):
        assert torch.isfinite(loaded(QUERY).logits).all()
    written = json.loads((tmp_path / "mix" / "adapter_config.json").read_text())
    assert written == json.loads((first / "adapter_config.json").read_text())


@pytest.mark.parametrize("weight, expected", [(1.0, "a"), (0.0, "b")])
def test_end_weights_give_an_input_bit_for_bit(tmp_path, two_generators, weight, expected):
    first, second, state_a, state_b = two_generators
    out = interpolate_generators(str(first), str(second), weight, str(tmp_path / "mix"))
    source = load_file(str((first if expected == "a" else second) / "adapter_model.safetensors"))
    assert out.keys() == source.keys() and all(torch.equal(out[k], source[k]) for k in out)


def test_mismatched_generators_are_refused_and_nothing_is_written(tmp_path, two_generators):
    first, _, _, _ = two_generators
    make(key_dim=8).save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="key_dim: 16 vs 8"):
        interpolate_generators(str(first), str(tmp_path / "other"), 0.5, str(tmp_path / "mix"))
    assert not (tmp_path / "mix").exists()


def test_bad_weight_output_and_files_give_clear_errors(tmp_path, two_generators):
    first, second, _, _ = two_generators
    with pytest.raises(ValueError, match=r"weight must be in \[0, 1\]"):
        interpolate_generators(str(first), str(second), 1.5, str(tmp_path / "mix"))
    before = (first / "adapter_model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="is one of the inputs"):
        interpolate_generators(str(first), str(second), 0.5, str(first))
    assert (first / "adapter_model.safetensors").read_bytes() == before
    with pytest.raises(FileNotFoundError, match="adapter_config.json is missing"):
        interpolate_generators(str(first), str(tmp_path), 0.5, str(tmp_path / "mix"))
    (second / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        interpolate_generators(str(first), str(second), 0.5, str(tmp_path / "mix"))


def test_non_finite_generator_is_refused(tmp_path, two_generators):
    first, _, _, _ = two_generators
    broken = make()
    with torch.no_grad():
        next(p for n, p in broken.named_parameters() if "generator_B" in n)[0, 0] = float("nan")
    broken.save_pretrained(tmp_path / "broken")
    with pytest.raises(ValueError, match="NaN or inf"):
        interpolate_generators(str(first), str(tmp_path / "broken"), 0.5, str(tmp_path / "mix"))


def test_cli_interpolate(tmp_path, two_generators, capsys):
    first, second, state_a, state_b = two_generators
    assert main(["interpolate", str(first), str(second), "--weight", "0.5", "--out", str(tmp_path / "mix")]) == 0
    assert "written to" in capsys.readouterr().out
    mixed = load_file(str(tmp_path / "mix" / "adapter_model.safetensors"))
    name = next(k for k in mixed if "generator_B" in k)
    assert not torch.equal(mixed[name], load_file(str(first / "adapter_model.safetensors"))[name])
    assert main(["interpolate", str(first), str(second), "--weight", "2", "--out", str(tmp_path / "m2")]) == 2
    assert "weight must be in [0, 1]" in capsys.readouterr().err
