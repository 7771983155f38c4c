"""The package as the ecosystem meets it: a light import that still registers the PEFT type for peft's loaders,
progress bars that follow Hugging Face's switches, the cache directory, and what the wheel ships."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}

REGISTERED = ("from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING; from peft.utils import PeftType; "
              "assert PEFT_TYPE_TO_TUNER_MAPPING[PeftType.GENERATIVE_ADAPTER].__name__ == 'GenerativeAdapterModel'")


def test_import_is_light_and_every_import_order_registers_the_type():
    """`import peft_generative` imports neither torch nor peft, yet peft's loaders find the type whichever is
    imported first, including when a module of this package is what imports peft (three fresh interpreters, run at
    the same time)."""
    orders = [
        "import sys, peft_generative; assert 'torch' not in sys.modules and 'peft' not in sys.modules; import peft",
        "import peft; import peft_generative",
        "from peft_generative.loading import load_generative_model",
    ]
    procs = [subprocess.Popen([sys.executable, "-c", f"{first}; {REGISTERED}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=ENV) for first in orders]
    for first, proc in zip(orders, procs):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (first, err)


def test_progress_bars_follow_the_hugging_face_switch():
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    from peft_generative.data.progress import progress
    from peft_generative.progress import progress_bar, progress_bars_enabled

    enable_progress_bars()  # an in-process CLI test before may have switched them off (the CLI is quiet)
    assert progress_bars_enabled() and not progress_bar(range(2)).disable
    disable_progress_bars()
    try:
        assert not progress_bars_enabled() and progress_bar(range(2)).disable
        assert list(progress(range(3), desc="x")) == [0, 1, 2]
    finally:
        enable_progress_bars()
    assert progress_bar(range(2), enabled=False).disable


def test_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    from peft_generative.data.cache import data_dir
    from peft_generative.paths import cache_root

    monkeypatch.delenv("PEFT_GENERATIVE_HOME", raising=False)
    monkeypatch.delenv("PEFT_GENERATIVE_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_root() == Path.home() / ".cache" / "peft_generative"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "peft_generative" and data_dir() == cache_root() / "data"
    monkeypatch.setenv("PEFT_GENERATIVE_HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home"


def test_project_metadata():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and (ROOT / "LICENSE").read_text().count("Apache License") >= 1
    assert (ROOT / "peft_generative" / "py.typed").is_file()
    assert not any(dep.split(">")[0] in ("trl", "datasets", "accelerate", "matplotlib") for dep in project["dependencies"])
    extras = project["optional-dependencies"]
    assert {"trl", "accelerate", "datasets"} <= {d.split(">")[0] for d in extras["train"]}
    assert any(d.startswith("matplotlib") for d in extras["eval"])
    assert any(d.startswith("peft-generative[") and "train" in d and "eval" in d for d in extras["dev"])
    from peft_generative.extras import EXTRAS

    assert set(EXTRAS) <= set(extras)


def test_a_lora_is_refused_as_a_generator_before_the_base_model_loads(tmp_path):
    import json

    from peft_generative.loading import load_generative_model

    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(ValueError, match="LORA adapter, not a Generative Adapter generator"):
        load_generative_model(str(tmp_path / "no-such-model"), str(tmp_path))
