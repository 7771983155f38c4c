import json

import pytest
from peft import PeftConfig, PeftType, get_peft_model
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

import peft_generative as pg
import importlib

import peft_generative.tuner
from peft_generative.tuner.peft_type import extend_enum

from .conftest import tiny_model


def test_registration_extends_peft_type_and_registries():
    assert PeftType.GENERATIVE_ADAPTER == "GENERATIVE_ADAPTER"
    assert PeftType("GENERATIVE_ADAPTER") is PeftType["GENERATIVE_ADAPTER"] is pg.GENERATIVE_ADAPTER
    assert pg.GENERATIVE_ADAPTER in list(PeftType)
    assert PEFT_TYPE_TO_CONFIG_MAPPING["GENERATIVE_ADAPTER"] is pg.GenerativeAdapterConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING["GENERATIVE_ADAPTER"] is pg.GenerativeAdapterModel
    importlib.reload(peft_generative.tuner)  # registering again is idempotent
    assert PEFT_TYPE_TO_TUNER_MAPPING["GENERATIVE_ADAPTER"] is peft_generative.tuner.GenerativeAdapterModel
    assert extend_enum(PeftType, "GENERATIVE_ADAPTER") is pg.GENERATIVE_ADAPTER
    assert PeftType.LORA in list(PeftType)  # existing members untouched


def test_defaults_are_usable():
    cfg = pg.GenerativeAdapterConfig(task_type="CAUSAL_LM")
    assert cfg.normalization == "svd" and cfg.encoding == "sequential"
    assert cfg.rank <= min(cfg.key_dim, cfg.value_dim)
    assert cfg.scaling == pytest.approx(cfg.alpha / cfg.value_dim)
    model = get_peft_model(tiny_model(), pg.GenerativeAdapterConfig(task_type="CAUSAL_LM", window=64))
    assert model.peft_config["default"].target_modules == {"o_proj"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"key_dim": 0}, "key_dim"),
        ({"value_dim": -3}, "value_dim"),
        ({"rank": 300, "key_dim": 256, "value_dim": 256}, "rank"),
        ({"window": 0}, "window"),
        ({"normalization": "l2"}, "normalization"),
        ({"encoding": "random"}, "encoding"),
        ({"alpha": 0}, "alpha"),
        ({"target_modules": []}, "target_modules"),
        ({"max_context_tokens": 0}, "max_context_tokens"),
        ({"svd_grad_eps": 2.0}, "svd_grad_eps"),
    ],
)
def test_invalid_values_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pg.GenerativeAdapterConfig(**kwargs)


def test_config_roundtrip_through_peft(tmp_path):
    cfg = pg.GenerativeAdapterConfig(key_dim=24, value_dim=20, rank=6, encoding="parallel", target_modules=["o_proj"])
    cfg.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "adapter_config.json").read_text())
    assert data["peft_type"] == "GENERATIVE_ADAPTER"
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, pg.GenerativeAdapterConfig)
    assert (loaded.key_dim, loaded.value_dim, loaded.rank, loaded.encoding) == (24, 20, 6, "parallel")


def test_window_longer_than_positions_is_refused():
    with pytest.raises(ValueError, match="positions"):
        get_peft_model(tiny_model(), pg.GenerativeAdapterConfig(window=4096))


def test_non_linear_target_is_refused():
    with pytest.raises(TypeError, match="nn.Linear"):
        get_peft_model(tiny_model(), pg.GenerativeAdapterConfig(target_modules=["input_layernorm"], window=64))
