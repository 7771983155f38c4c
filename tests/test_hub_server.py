"""The Hub download path for real (olah on 127.0.0.1), and what push_to_hub uploads.

Fixtures come from tests/hub_server.py (``hub`` = session olah server + client pointed at it +
empty HF cache; ``hub_push`` = ``hub`` + the emulated write API). They are imported here so this
file also runs without a conftest; importing them in conftest as well is harmless (one server).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

if __package__:
    from .hub_server import capture_push, hub, hub_push, hub_server  # noqa: F401
else:
    from hub_server import capture_push, hub, hub_push, hub_server  # noqa: F401


def _tiny_safetensors(path: Path) -> bytes:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    save_file({"w": torch.randn(4, 8, generator=g), "b": torch.arange(6, dtype=torch.int64)}, str(path))
    return path.read_bytes()


@pytest.fixture
def small_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "to-publish"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"name": "tiny", "values": [1, 2, 3]}, indent=2) + "\n")
    (folder / "sub" / "notes.txt").write_text("nested file\n")
    _tiny_safetensors(folder / "model.safetensors")
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_publish_then_hf_hub_download(hub, small_folder):
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    sha = hub.publish(small_folder, "alice/tiny-files")
    stored = hub.list_files("alice/tiny-files")
    assert set(stored) == {"config.json", "model.safetensors", "sub/notes.txt"}
    assert stored["model.safetensors"].is_lfs and not stored["config.json"].is_lfs

    for name, content in _files(small_folder).items():
        path = hf_hub_download("alice/tiny-files", name)
        assert Path(path).read_bytes() == content, name
        assert f"/snapshots/{sha}/" in path  # the served commit is what the client resolved

    # As on the Hub: the etag of an LFS file is its sha256, of a regular file its git blob SHA-1.
    st = (small_folder / "model.safetensors").read_bytes()
    meta = get_hf_file_metadata(hf_hub_url("alice/tiny-files", "model.safetensors"))
    assert (meta.etag, meta.size, meta.commit_hash) == (hashlib.sha256(st).hexdigest(), len(st), sha)
    meta = get_hf_file_metadata(hf_hub_url("alice/tiny-files", "config.json"))
    assert meta.etag == stored["config.json"].blob_sha


def test_snapshot_download_and_update(hub, small_folder, tmp_path):
    from huggingface_hub import snapshot_download

    first = hub.publish(small_folder, "alice/tiny-snap", gitattributes=True)
    snap = Path(snapshot_download("alice/tiny-snap"))
    assert snap.name == first
    expected = _files(small_folder)
    got = _files(snap)
    assert got.pop(".gitattributes").startswith(b"*.7z filter=lfs")
    assert got == expected

    # A new commit on main is picked up; removed files are gone from the new snapshot.
    (small_folder / "sub" / "notes.txt").unlink()
    (small_folder / "config.json").write_text('{"name": "tiny", "values": [4]}\n')
    second = hub.publish(small_folder, "alice/tiny-snap")
    snap2 = Path(snapshot_download("alice/tiny-snap", local_dir=tmp_path / "local"))
    assert hub.head("alice/tiny-snap") == second != first
    assert {k: v for k, v in _files(snap2).items() if not k.startswith(".cache/")} == _files(small_folder)


def test_hub_like_errors_and_repo_info(hub, small_folder):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    sha = hub.publish(small_folder, "alice/tiny-errors")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("alice/tiny-errors", "nope.json")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("alice/tiny-errors", "config.json", revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("alice/no-such-repo", "config.json")

    api = HfApi()
    assert api.model_info("alice/tiny-errors").sha == sha  # no revision: default branch
    assert sorted(api.list_repo_files("alice/tiny-errors")) == ["config.json", "model.safetensors", "sub/notes.txt"]
    assert api.file_exists("alice/tiny-errors", "model.safetensors")
    assert not api.file_exists("alice/tiny-errors", "adapter_config.json")


def test_autoconfig_from_the_server(hub, tmp_path):
    from transformers import AutoConfig, LlamaConfig

    config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, vocab_size=64)
    config.save_pretrained(tmp_path / "cfg")
    hub.publish(tmp_path / "cfg", "alice/tiny-llama-config")

    loaded = AutoConfig.from_pretrained("alice/tiny-llama-config")
    assert type(loaded) is LlamaConfig
    assert (loaded.hidden_size, loaded.num_hidden_layers, loaded.vocab_size) == (16, 2, 64)
    assert loaded._name_or_path == "alice/tiny-llama-config"
    ignore = {"_name_or_path", "transformers_version"}
    assert {k: v for k, v in loaded.to_dict().items() if k not in ignore} == {
        k: v for k, v in config.to_dict().items() if k not in ignore
    }


def _tiny_llama(seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, vocab_size=64, max_position_embeddings=32)
    return LlamaForCausalLM(config).eval()


def test_peft_push_to_hub_round_trip(hub_push, hub):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load as load_safetensors

    repo_id = "user/tiny-lora"
    lora = get_peft_model(_tiny_llama(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                    init_lora_weights=False))
    info = lora.push_to_hub(repo_id)

    # What was sent: the repo creation, one commit with the three files, the weights through LFS.
    assert hub_push.created_repos == [repo_id]
    commit = hub_push.last_commit
    assert len(hub_push.commits) == 1
    assert set(commit.files) == {"README.md", "adapter_config.json", "adapter_model.safetensors"}
    assert commit.lfs_paths == {"adapter_model.safetensors"}
    weights = commit.files["adapter_model.safetensors"]
    assert hub_push.uploads == {hashlib.sha256(weights).hexdigest(): weights}
    assert commit.summary == "Upload model"
    assert info.oid == commit.oid == hub.head(repo_id)
    assert info.commit_url == f"{hub.endpoint}/{repo_id}/commit/{commit.oid}"

    adapter_config = json.loads(commit.files["adapter_config.json"])
    assert adapter_config["peft_type"] == "LORA" and adapter_config["r"] == 4
    assert sorted(adapter_config["target_modules"]) == ["q_proj", "v_proj"]
    tensors = load_safetensors(weights)
    expected = {k: v for k, v in lora.state_dict().items() if "lora_" in k}
    assert len(tensors) == len(expected) == 2 * 2 * 2  # layers x modules x (A, B)
    for name, tensor in tensors.items():
        key = name.replace(".weight", ".default.weight")
        assert torch.equal(tensor, expected[key]), name
    readme = commit.files["README.md"].decode()
    assert readme.startswith("---\n") and hub_push.validated_readmes == [readme]

    # The repo on the server = the Hub's initial .gitattributes + the pushed files.
    assert set(hub.list_files(repo_id)) == {".gitattributes", *commit.files}
    assert hub.read_file(repo_id, "adapter_model.safetensors") == weights

    # Load back through the server, into a fresh base model with the same base weights.
    loaded = PeftModel.from_pretrained(_tiny_llama(), repo_id).eval()
    ids = torch.tensor([[1, 5, 9, 3, 7]])
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, lora(ids).logits, atol=1e-6)
        with loaded.disable_adapter():  # the adapter matters
            assert not torch.allclose(loaded(ids).logits, lora(ids).logits, atol=1e-4)

    # Pushing the same model again: the client sees identical remote files (read via olah) and
    # makes no commit.
    again = lora.push_to_hub(repo_id)
    assert len(hub_push.commits) == 1 and again.oid == commit.oid


def test_capture_push_errors_like_the_hub(hub, monkeypatch, tmp_path):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

    recorder = capture_push(monkeypatch, hub)
    api = HfApi()
    with pytest.raises(RepositoryNotFoundError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="user/never-created")
    url = api.create_repo("errors-repo")  # no namespace: the emulated Hub adds "user/"
    assert url.repo_id == "user/errors-repo" and recorder.created_repos == ["user/errors-repo"]
    with pytest.raises(HfHubHTTPError):
        api.create_repo("user/errors-repo")  # exists, exist_ok=False -> 409
    with pytest.raises(EntryNotFoundError):
        api.create_commit("user/errors-repo", [CommitOperationDelete("missing.txt")], commit_message="rm")
    with pytest.raises(ValueError, match="Invalid metadata"):
        api.upload_file(path_or_fileobj=b"---\n[unclosed\n---\ntext\n", path_in_repo="README.md",
                        repo_id="user/errors-repo")
    info = api.create_commit(
        "user/errors-repo",
        [CommitOperationAdd("a.txt", b"hello\n"), CommitOperationAdd("blob.pt", b"\x00\x01binary")],
        commit_message="two files",
    )
    assert recorder.last_commit.lfs_paths == {"blob.pt"}
    assert hub.list_files("user/errors-repo")["blob.pt"].is_lfs
    assert hub.read_file("user/errors-repo", "a.txt") == b"hello\n" and info.oid == hub.head("user/errors-repo")
