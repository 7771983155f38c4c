"""A real Hugging Face Hub *download* server on 127.0.0.1 for tests, plus a push recorder.

What it is
==========
``olah`` (a self-hosted Hub mirror, pinned ``olah==0.5.4``) serves local git repositories through
the Hub's HTTP download API (``/{repo}/resolve/{rev}/{file}``, ``/api/models/{repo}/revision/{rev}``,
tree / paths-info ...). With ``[accessibility] offline = true`` it never contacts huggingface.co.
It serves ``<mirrors-path>/models/<user>/<repo>`` (``datasets/``, ``spaces/`` likewise), which must
be a *non-bare* git repository: olah reads git objects through GitPython (so the ``git`` binary is
required) and reads LFS objects from ``<repo>/.git/lfs/objects/<o[0:2]>/<o[2:4]>/<oid>``.

Git LFS is *not* required by olah: a plain git blob is served byte-for-byte. A blob that is an LFS
pointer (``version https://git-lfs.github.com/spec/v1 / oid sha256:... / size N``) is resolved
against ``.git/lfs/objects``; for it olah answers ``etag = sha256(content)`` like the Hub does for
LFS files (a plain blob gets the git SHA-1 as etag, also like the Hub). :meth:`HubServer.publish`
writes ``*.safetensors`` / ``*.bin`` / ... (the Hub's default LFS patterns) in exactly that LFS
layout -- the layout ``git lfs`` itself produces -- so **neither the git-lfs binary nor a git
identity is needed**: commits are written with ``git fast-import`` (one subprocess per commit).

olah 0.5.4 deviations from the Hub, and the shim this harness adds
------------------------------------------------------------------
olah runs in a subprocess started as ``python -c _OLAH_LAUNCHER`` which installs one small HTTP
middleware before calling olah's own CLI entry point. It only touches requests for repositories
that exist in the mirrors dir, and only where olah 0.5.4 differs from the Hub:

* a missing file in an existing repo: olah answers ``401 RepoNotFound`` (HEAD) / ``500`` (GET);
  the Hub answers ``404`` ``x-error-code: EntryNotFound``. Client code depends on that
  difference (``transformers``' ``push_to_hub`` only tolerates ``EntryNotFoundError`` when it
  looks for an existing README.md; ``cached_file`` treats optional files the same way). The shim
  answers ``404 EntryNotFound`` / ``404 RevisionNotFound`` as the Hub does.
* ``GET /api/models/<user>/<repo>`` without a revision: offline olah only answers it from its
  upstream cache (``401``); the shim answers it from the local repo's default branch, as the Hub.

Pointing the client at the server inside one pytest process
-----------------------------------------------------------
``huggingface_hub`` 2.x reads ``HF_ENDPOINT`` at import time into
``huggingface_hub.constants.ENDPOINT`` and ``HUGGINGFACE_CO_URL_TEMPLATE``; the module-level
``huggingface_hub.hf_api.api`` (behind ``model_info``, ``file_exists`` ...) and ``transformers``'
cached ``transformers.utils.hub._hf_api`` copy the endpoint when they are created. Setting the
environment variable after import therefore does nothing. :func:`patch_hub_client` patches all of
those with ``monkeypatch`` (undone after each test) and sets ``HF_ENDPOINT`` for subprocesses;
``hf_hub_download`` / ``snapshot_download`` / ``HfApi`` read ``constants`` at call time, so this
works whatever was imported first. The alternative, exporting ``HF_ENDPOINT`` before anything
imports ``huggingface_hub`` (top of the root conftest), needs the port before the server starts;
passing ``endpoint=`` works for ``hf_hub_download``/``HfApi`` but not through transformers/peft.
The ``hub`` fixture also forces online mode (``HF_HUB_OFFLINE`` may be set for the rest of the
suite) and gives every test an empty HF cache (``constants.HF_HUB_CACHE``), so each test really
downloads.

Fixtures and helpers (import them in ``conftest.py``: ``from hub_server import hub_server, hub``
or ``from tests.hub_server import ...`` when ``tests`` is a package)
------------------------------------------------------------------------------------------------
* ``hub_server`` (session): the running :class:`HubServer` (``.endpoint``, ``.publish(local_dir,
  repo_id)``, ``.read_file``, ``.list_files``, ``.head``). Skips the test if olah is not installed.
  The client is *not* redirected by this fixture alone.
* ``hub`` (function): the same server, with the client redirected to it, online mode and an
  empty HF cache for this test.
* :func:`capture_push` ``(monkeypatch, server)``: replaces the Hub's *write* API with an in-process
  emulation backed by the server's git repos; see its docstring. No Hub-compatible server that
  accepts uploads from the real client can be installed here, so this is the closest offline test
  of ``push_to_hub``: everything client-side runs for real, the pushed commit lands in the olah
  repo, and reads during the push (``ModelCard.load``, ``repo_info``) go over HTTP to olah.

Startup takes about 1-2 s (olah imports fastapi/uvicorn); the server is shared by the session and
stopped by PID at the end (also on failure; an ``atexit`` hook is the last resort).

Requirements: the ``git`` binary, and ``olah==0.5.4`` importable either in this environment or by
the interpreter named in ``$OLAH_PYTHON`` (a separate venv keeps olah's dependency pins -- e.g.
``fastapi-utils`` -> ``psutil<6`` -- out of the project environment). Without olah the tests using
these fixtures are skipped with that reason. git-lfs is not needed.
"""

from __future__ import annotations

import atexit
import base64
import dataclasses
import fnmatch
import functools
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import unquote

import pytest

OLAH_REQUIREMENT = "olah==0.5.4"
STARTUP_TIMEOUT_S = 60.0

# The .gitattributes the Hub writes into a new model repo (create_repo).
HUB_DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
        "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
        "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*",
        "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
    )
)
DEFAULT_LFS_PATTERNS: tuple[str, ...] = tuple(line.split()[0] for line in HUB_DEFAULT_GITATTRIBUTES.splitlines())
# The Hub stores files of 10 MiB and more, and binary files, in LFS whatever .gitattributes says.
HUB_LFS_SIZE_THRESHOLD = 10 * 1024 * 1024

_REPO_TYPE_DIRS = {"model": "models", "dataset": "datasets", "space": "spaces"}
_LFS_POINTER_RE = re.compile(rb"^version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\nsize ([0-9]+)\n$")
_COMMITTER = b"Hub Test <hub-test@localhost>"

# Runs in the server subprocess: argv = [config.toml, log_dir]. See the module docstring.
_OLAH_LAUNCHER = r'''
import os, re, sys
from urllib.parse import unquote
import git, gitdb
import olah.server as olah_server
from olah.mirror.repos import LocalMirrorRepo
from starlette.responses import JSONResponse, Response

_RESOLVE = re.compile(rb"^/(?:(datasets|spaces)/)?([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$")
_INFO = re.compile(rb"^/api/(models|datasets|spaces)/([^/]+)/([^/]+)/?$")

def _local_repo(type_dir, org, repo):
    for base in olah_server.app.state.app_settings.config.mirrors_path:
        path = os.path.join(base, type_dir, org, repo)
        if os.path.isdir(os.path.join(path, ".git")):
            return path
    return None

def _error(status, code, message, head):
    headers = {"x-error-code": code, "x-error-message": message}
    if head:
        return Response(status_code=status, headers=headers)
    return JSONResponse({"error": message}, status_code=status, headers=headers)

def _lookup(path, revision, filename):
    with git.Repo(path) as repo:
        try:
            commit = repo.commit(revision)
        except (gitdb.exc.BadName, gitdb.exc.BadObject, ValueError):
            return "revision"
        try:
            obj = commit.tree / filename
        except KeyError:
            return "entry"
        return None if obj.type == "blob" else "entry"

@olah_server.app.middleware("http")
async def hub_compat(request, call_next):
    raw = request.scope.get("raw_path") or request.url.path.encode()
    raw = raw.split(b"?", 1)[0]
    head = request.method == "HEAD"
    if request.method in ("GET", "HEAD"):
        m = _RESOLVE.match(raw)
        if m:
            type_dir = (m.group(1) or b"models").decode()
            org, repo, rev, filename = (unquote(g.decode()) for g in m.group(2, 3, 4, 5))
            path = _local_repo(type_dir, org, repo)
            if path is not None:
                missing = _lookup(path, rev, filename)
                if missing == "revision":
                    return _error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
                if missing == "entry":
                    return _error(404, "EntryNotFound", "Entry not found", head)
        m = _INFO.match(raw)
        if m:
            type_dir, org, repo = (unquote(g.decode()) for g in m.group(1, 2, 3))
            path = _local_repo(type_dir, org, repo)
            if path is not None:
                with git.Repo(path) as repo_obj:
                    branch = "main" if repo_obj.head.is_detached else repo_obj.head.reference.name
                meta = LocalMirrorRepo(path, type_dir, org, repo).get_meta(branch)
                if meta is not None:
                    return Response(status_code=200) if head else JSONResponse(meta)
    return await call_next(request)

sys.argv = ["olah-cli", "--config", sys.argv[1], "--log-path", sys.argv[2]]
olah_server.cli()
'''


def olah_python() -> str:
    """The interpreter that runs olah: ``$OLAH_PYTHON`` (e.g. a separate venv, which keeps olah's
    pins such as ``psutil<6`` out of the project env) or this interpreter."""
    return os.environ.get("OLAH_PYTHON") or sys.executable


@functools.lru_cache(maxsize=None)
def _can_import_olah(python: str) -> bool:
    if python == sys.executable:
        return importlib.util.find_spec("olah") is not None
    try:
        return subprocess.run([python, "-c", "import olah.server"], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def olah_available() -> bool:
    return _can_import_olah(olah_python())


# --------------------------------------------------------------------------------------------
# Git storage (what the Hub keeps server-side), written with plumbing only
# --------------------------------------------------------------------------------------------


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    # Independent of the developer's git config (hooks, templates, lfs filters, signing ...).
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0")
    return env


def _git(repo_dir: Path, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
    if shutil.which("git") is None:
        raise RuntimeError("the `git` binary is required (olah/GitPython read repositories with it)")
    proc = subprocess.run(
        ["git", *args], cwd=repo_dir, input=input, capture_output=True, env=_git_env(), check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo_dir}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def _ensure_git_repo(repo_dir: Path, branch: str = "main") -> None:
    if (repo_dir / ".git").is_dir():
        return
    repo_dir.mkdir(parents=True, exist_ok=True)
    _git(repo_dir, "init", "-q")
    _git(repo_dir, "symbolic-ref", "HEAD", f"refs/heads/{branch}")


def _rev_parse(repo_dir: Path, rev: str) -> str | None:
    out = _git(repo_dir, "rev-parse", "--verify", "-q", f"{rev}^{{commit}}", check=False).strip()
    return out.decode() or None


def lfs_pointer(data: bytes) -> bytes:
    """The git-lfs pointer file for ``data`` (spec v1, as ``git lfs pointer`` writes it)."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n".encode()


def _store_lfs_object(repo_dir: Path, data: bytes) -> str:
    oid = hashlib.sha256(data).hexdigest()
    obj = repo_dir / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    if not obj.exists():
        obj.parent.mkdir(parents=True, exist_ok=True)
        tmp = obj.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(obj)
    return oid


def _fast_import_path(path: str) -> bytes:
    if not path or path.startswith(("/", '"')) or "\n" in path or '"' in path or "\\" in path:
        raise ValueError(f"unsupported path in repo: {path!r}")
    return path.encode()


def git_commit(
    repo_dir: Path,
    *,
    files: dict[str, bytes] | None = None,
    lfs_paths: Iterable[str] = (),
    deletions: Iterable[str] = (),
    replace_all: bool = False,
    message: str = "Update",
    branch: str = "main",
    parent: str | None = None,
) -> str:
    """Commit ``files`` (path -> bytes) on ``branch`` of the non-bare repo at ``repo_dir``.

    Paths in ``lfs_paths`` are stored as git-lfs pointers with their object in ``.git/lfs/objects``.
    ``deletions`` may name files or folders. ``replace_all`` makes the tree exactly ``files``.
    ``parent`` (default: the branch head, or none for a new branch) is the commit's parent.
    Returns the new commit's SHA-1. The work tree is not touched (olah reads git objects only).
    """
    files = dict(files or {})
    lfs_paths = set(lfs_paths)
    _ensure_git_repo(repo_dir)
    if parent is None:
        parent = _rev_parse(repo_dir, f"refs/heads/{branch}")
    stream = io.BytesIO()
    w = stream.write
    msg = message.encode()
    w(b"commit refs/heads/" + branch.encode() + b"\n")
    w(b"committer " + _COMMITTER + b" %d +0000\n" % int(time.time()))
    w(b"data %d\n" % len(msg) + msg + b"\n")
    if parent:
        w(b"from " + parent.encode() + b"\n")
    if replace_all:
        w(b"deleteall\n")
    for path in deletions:
        w(b"D " + _fast_import_path(path.rstrip("/")) + b"\n")
    for path in sorted(files):
        data = files[path]
        if path in lfs_paths and len(data) > 0:
            _store_lfs_object(repo_dir, data)
            data = lfs_pointer(data)
        w(b"M 100644 inline " + _fast_import_path(path) + b"\n")
        w(b"data %d\n" % len(data) + data + b"\n")
    w(b"done\n")
    _git(repo_dir, "fast-import", "--quiet", "--done", input=stream.getvalue())
    sha = _rev_parse(repo_dir, f"refs/heads/{branch}")
    assert sha is not None
    return sha


@dataclasses.dataclass(frozen=True)
class RepoEntry:
    path: str
    blob_sha: str  # git SHA-1 of the stored blob (of the pointer, for LFS files)
    size: int  # size of the content (of the LFS object, for LFS files)
    lfs_oid: str | None  # sha256 of the content for LFS files

    @property
    def is_lfs(self) -> bool:
        return self.lfs_oid is not None


def git_list_files(repo_dir: Path, revision: str = "main") -> dict[str, RepoEntry]:
    """All files of ``revision`` (recursive), LFS pointers resolved. Empty if no such revision."""
    if not (repo_dir / ".git").is_dir() or _rev_parse(repo_dir, revision) is None:
        return {}
    out = _git(repo_dir, "ls-tree", "-r", "-l", "-z", revision)
    entries: dict[str, RepoEntry] = {}
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, path = record.split(b"\t", 1)
        _mode, otype, sha, size = meta.split()
        if otype != b"blob":
            continue
        lfs_oid, real_size = None, int(size)
        if 100 < real_size < 200:
            m = _LFS_POINTER_RE.match(_git(repo_dir, "cat-file", "blob", sha.decode()))
            if m:
                lfs_oid, real_size = m.group(1).decode(), int(m.group(2))
        entries[path.decode()] = RepoEntry(path.decode(), sha.decode(), real_size, lfs_oid)
    return entries


def git_read_file(repo_dir: Path, path: str, revision: str = "main") -> bytes:
    """Content of ``path`` at ``revision`` (LFS objects resolved). Raises KeyError if absent."""
    entry = git_list_files(repo_dir, revision).get(path)
    if entry is None:
        raise KeyError(path)
    if entry.lfs_oid:
        oid = entry.lfs_oid
        return (repo_dir / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).read_bytes()
    return _git(repo_dir, "cat-file", "blob", entry.blob_sha)


def gitattributes_lfs_patterns(text: str) -> list[str]:
    return [
        line.split()[0]
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#") and "filter=lfs" in line.split()[1:]
    ]


def matches_patterns(path: str, patterns: Iterable[str]) -> bool:
    """gitattributes-style match: a pattern without '/' matches the basename at any depth."""
    base = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path if "/" in p else base, p) for p in patterns)


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class HubServer:
    """An olah process serving the git repos under ``<base_dir>/mirrors`` on 127.0.0.1."""

    host = "127.0.0.1"

    def __init__(self, base_dir: str | os.PathLike) -> None:
        self.base_dir = Path(base_dir)
        self.mirrors_dir = self.base_dir / "mirrors"
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.log_path = self.base_dir / "olah.log"
        self.startup_seconds: float | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> "HubServer":
        if not olah_available():
            raise RuntimeError(f"olah is not importable by {olah_python()} (pip install '{OLAH_REQUIREMENT}')")
        if shutil.which("git") is None:
            raise RuntimeError("the `git` binary is required by olah (GitPython); apt-get install git")
        t0 = time.monotonic()
        for mirror_type in _REPO_TYPE_DIRS.values():
            (self.mirrors_dir / mirror_type).mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _attempt in range(3):  # the free port may be taken between probe and bind
            self.port = _free_port(self.host)
            config = self.base_dir / "olah.toml"
            config.write_text(
                "[basic]\n"
                f'host = "{self.host}"\n'
                f"port = {self.port}\n"
                f"repos-path = {json.dumps(str(self.base_dir / 'cache'))}\n"
                f'mirror-netloc = "{self.host}:{self.port}"\n'
                f'mirror-lfs-netloc = "{self.host}:{self.port}"\n'
                f"mirrors-path = [{json.dumps(str(self.mirrors_dir))}]\n"
                "\n[accessibility]\n"
                "offline = true\n"
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
            env["PYTHONUNBUFFERED"] = "1"
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [olah_python(), "-c", _OLAH_LAUNCHER, str(config), str(self.base_dir / "logs")],
                    cwd=self.base_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            atexit.register(self.stop)
            if self._wait_ready(t0 + timeout):
                self.startup_seconds = time.monotonic() - t0
                return self
            last_error = self.log_tail()
            self.stop()
            if "address already in use" not in last_error.lower():
                break
        raise RuntimeError(f"olah did not start on {self.host}:{self.port}; log tail:\n{last_error}")

    def _wait_ready(self, deadline: float) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        url = f"{self.endpoint}/api/models/__probe__/__probe__/revision/main"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                opener.open(url, timeout=2).close()
                return True
            except urllib.error.HTTPError:
                return True  # any HTTP answer means it is serving
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # SIGTERM to this PID only
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- client side ---------------------------------------------------------------------------
    def patch_client(self, monkeypatch: pytest.MonkeyPatch) -> None:
        patch_hub_client(monkeypatch, self.endpoint)

    # -- repositories ----------------------------------------------------------------------------
    def repo_dir(self, repo_id: str, repo_type: str = "model") -> Path:
        if repo_id.count("/") != 1 or any(p in ("", ".", "..") for p in repo_id.split("/")):
            raise ValueError(f"repo_id must be '<user>/<repo>', got {repo_id!r}")
        return self.mirrors_dir / _REPO_TYPE_DIRS[repo_type] / repo_id

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        return (self.repo_dir(repo_id, repo_type) / ".git").is_dir()

    def publish(
        self,
        local_dir: str | os.PathLike,
        repo_id: str,
        *,
        repo_type: str = "model",
        lfs_patterns: Iterable[str] = DEFAULT_LFS_PATTERNS,
        gitattributes: bool = False,
        message: str | None = None,
        branch: str = "main",
    ) -> str:
        """Make ``repo_id``'s ``branch`` hold exactly the files of ``local_dir`` (one new commit).

        Files matching ``lfs_patterns`` are stored through git-lfs (pointer + LFS object), others as
        plain blobs. ``gitattributes=True`` also commits a ``.gitattributes`` naming those patterns,
        as a repo created on the Hub has (unless ``local_dir`` has its own). Returns the commit SHA.
        """
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise NotADirectoryError(local_dir)
        patterns = list(lfs_patterns)
        files: dict[str, bytes] = {}
        for path in sorted(local_dir.rglob("*")):
            rel = path.relative_to(local_dir)
            if ".git" in rel.parts or not path.is_file():
                continue
            files[rel.as_posix()] = path.read_bytes()
        if gitattributes and ".gitattributes" not in files:
            files[".gitattributes"] = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in patterns).encode()
        lfs = {p for p in files if matches_patterns(p, patterns)}
        return git_commit(
            self.repo_dir(repo_id, repo_type),
            files=files,
            lfs_paths=lfs,
            replace_all=True,
            message=message or f"Publish {local_dir.name}",
            branch=branch,
        )

    def head(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str | None:
        repo_dir = self.repo_dir(repo_id, repo_type)
        return _rev_parse(repo_dir, revision) if (repo_dir / ".git").is_dir() else None

    def list_files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, RepoEntry]:
        return git_list_files(self.repo_dir(repo_id, repo_type), revision)

    def read_file(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> bytes:
        return git_read_file(self.repo_dir(repo_id, repo_type), path, revision)


def patch_hub_client(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """Point huggingface_hub (and transformers' cached HfApi) at ``endpoint`` until undo."""
    import huggingface_hub.constants as hf_constants
    import huggingface_hub.hf_api as hf_api_module

    endpoint = endpoint.rstrip("/")
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("NO_PROXY", ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"])))
    monkeypatch.setenv("no_proxy", os.environ["NO_PROXY"])
    monkeypatch.setattr(hf_constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hf_constants, "HF_URL_HOSTS", hf_constants.HF_URL_HOSTS | {"127.0.0.1"})
    monkeypatch.setattr(hf_api_module.api, "endpoint", endpoint)
    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None and hasattr(transformers_hub, "_hf_api"):
        # Recreated lazily from constants.ENDPOINT; the old instance comes back at undo.
        monkeypatch.setattr(transformers_hub, "_hf_api", None)


def force_online(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)


def use_hf_cache(monkeypatch: pytest.MonkeyPatch, cache_dir: str | os.PathLike) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache_dir))


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------

# One server per process even if the fixture is collected twice (conftest + a test module).
_shared: dict[str, Any] = {"server": None, "users": 0}


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory: pytest.TempPathFactory):
    """Session-wide olah server on 127.0.0.1 (see :class:`HubServer`). Skips without olah."""
    if not olah_available():
        pytest.skip(
            f"olah is not installed for {olah_python()}; `pip install '{OLAH_REQUIREMENT}'` (or set OLAH_PYTHON "
            "to an interpreter that has it) to run the Hub server tests"
        )
    if _shared["server"] is None:
        server = HubServer(tmp_path_factory.mktemp("hub-server"))
        server.start()
        _shared["server"] = server
    _shared["users"] += 1
    try:
        yield _shared["server"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            server, _shared["server"] = _shared["server"], None
            server.stop()


@pytest.fixture
def hub(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The session server, with huggingface_hub/transformers/peft pointed at it for this test,
    online mode forced and an empty HF cache (``tmp_path / 'hf-cache'``)."""
    hub_server.patch_client(monkeypatch)
    force_online(monkeypatch)
    use_hf_cache(monkeypatch, tmp_path / "hf-cache")
    yield hub_server
    # transformers creates its shared HfApi lazily; one made during this test points at the server.
    transformers_hub = sys.modules.get("transformers.utils.hub")
    cached = getattr(transformers_hub, "_hf_api", None)
    if cached is not None and getattr(cached, "endpoint", None) == hub_server.endpoint:
        transformers_hub._hf_api = None


# --------------------------------------------------------------------------------------------
# push_to_hub: the Hub's write API, emulated in-process on top of the server's git repos
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CapturedCommit:
    repo_id: str
    repo_type: str
    revision: str
    summary: str
    description: str
    parent_commit: str | None
    payload: list[dict]  # the ndjson lines the client would POST to /api/<type>s/<repo>/commit/<rev>
    files: dict[str, bytes]  # path -> content of every added/updated file
    lfs_paths: set[str]  # paths sent as "lfsFile" (content uploaded separately)
    deleted: list[str]
    oid: str  # resulting commit SHA in the served repo


@dataclasses.dataclass
class PushRecorder:
    """What the client sent to the (emulated) Hub write API."""

    server: HubServer
    namespace: str = "user"
    created_repos: list[str] = dataclasses.field(default_factory=list)
    created_branches: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    validated_readmes: list[str] = dataclasses.field(default_factory=list)
    preupload_requests: list[dict] = dataclasses.field(default_factory=list)
    uploads: dict[str, bytes] = dataclasses.field(default_factory=dict)  # sha256 -> bytes (LFS/Xet)
    commits: list[CapturedCommit] = dataclasses.field(default_factory=list)

    @property
    def last_commit(self) -> CapturedCommit:
        if not self.commits:
            raise AssertionError("nothing was committed")
        return self.commits[-1]


def _hub_error(method: str, url: str, status: int, code: str | None, message: str):
    """Raise what huggingface_hub raises when the Hub answers ``status`` (its own mapping)."""
    import httpx2
    from huggingface_hub.utils import hf_raise_for_status

    headers = {"x-error-message": message}
    if code:
        headers["x-error-code"] = code
    response = httpx2.Response(status, headers=headers, json={"error": message}, request=httpx2.Request(method, url))
    hf_raise_for_status(response)
    raise AssertionError("unreachable")  # pragma: no cover


def capture_push(monkeypatch: pytest.MonkeyPatch, server: HubServer, *, namespace: str = "user") -> PushRecorder:
    """Emulate the Hub's write endpoints in-process, on ``server``'s git repos, and record them.

    Replaced (each is one HTTP exchange with the Hub in huggingface_hub 2.x):

    * ``HfApi.create_repo``   POST /api/repos/create: creates the repo with the Hub's default
      ``.gitattributes`` as initial commit; ``"name"`` without namespace -> ``"<namespace>/name"``.
    * ``HfApi.create_branch`` POST /api/<type>s/<repo>/branch/<branch>.
    * ``HfApi._validate_yaml`` POST /api/validate-yaml: YAML front matter of README.md must parse
      to a mapping (the Hub checks more).
    * ``_commit_api._fetch_upload_modes`` POST .../preupload/<rev>: "lfs" when the path matches the
      repo's .gitattributes LFS patterns, or is >= 10 MiB, or its sample has a NUL byte; else
      "regular". Returns the remote oid of existing files, so unchanged files are skipped by the
      real client logic. ``shouldIgnore`` is always false (.gitignore is not emulated).
    * ``_commit_api._upload_files`` LFS batch / Xet upload: stores the bytes as LFS objects of the
      repo after checking their sha256.
    * ``_commit_api._send_commit`` POST .../commit/<rev>: the payload is built by the real
      ``_prepare_commit_payload`` and serialised as the client does; the emulated server applies
      it to the repo (regular files from base64, ``lfsFile`` from uploaded objects, deletions;
      ``parentCommit`` checked) and answers with the new commit's SHA.

    Everything else in ``push_to_hub`` / ``create_commit`` / ``upload_folder`` runs unchanged, and
    reads (``ModelCard.load``, ``repo_info`` ...) go over HTTP to olah, so use this together with
    the ``hub`` fixture (client pointed at ``server``). Errors are raised through huggingface_hub's
    own ``hf_raise_for_status`` from a Hub-like response. ``create_pr`` is not emulated.
    """
    import huggingface_hub._commit_api as commit_api
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import CommitInfo, RepoUrl

    recorder = PushRecorder(server=server, namespace=namespace)
    prepare_commit_payload = commit_api._prepare_commit_payload  # the real one

    def type_dir(repo_type: str | None) -> str:
        return _REPO_TYPE_DIRS[repo_type or "model"]

    def url_prefix(endpoint: str, repo_type: str | None) -> str:
        return endpoint if (repo_type or "model") == "model" else f"{endpoint}/{type_dir(repo_type)}"

    def existing_repo(repo_id: str, repo_type: str | None, method: str, url: str) -> Path:
        if not server.repo_exists(repo_id, repo_type or "model"):
            _hub_error(method, url, 404, "RepoNotFound", "Repository not found")
        return server.repo_dir(repo_id, repo_type or "model")

    def existing_revision(repo_dir: Path, revision: str, method: str, url: str) -> str:
        sha = _rev_parse(repo_dir, revision if re.fullmatch(r"[0-9a-f]{40}", revision) else f"refs/heads/{revision}")
        if sha is None:
            _hub_error(method, url, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return sha

    def create_repo(self, repo_id: str, *, token=None, private=None, repo_type=None, exist_ok=False, **kwargs):
        if "/" not in repo_id:
            repo_id = f"{namespace}/{repo_id}"
        endpoint = self.endpoint
        if server.repo_exists(repo_id, repo_type or "model"):
            if not exist_ok:
                _hub_error("POST", f"{endpoint}/api/repos/create", 409, None, "You already created this model repo")
        else:
            git_commit(
                server.repo_dir(repo_id, repo_type or "model"),
                files={".gitattributes": HUB_DEFAULT_GITATTRIBUTES.encode()},
                message="initial commit",
            )
            recorder.created_repos.append(repo_id)
        return RepoUrl(f"{url_prefix(endpoint, repo_type)}/{repo_id}", endpoint=endpoint)

    def create_branch(self, repo_id: str, *, branch: str, revision=None, token=None, repo_type=None, exist_ok=False):
        url = f"{self.endpoint}/api/{type_dir(repo_type)}/{repo_id}/branch/{branch}"
        repo_dir = existing_repo(repo_id, repo_type, "POST", url)
        if _rev_parse(repo_dir, f"refs/heads/{branch}") is not None:
            if not exist_ok:
                _hub_error("POST", url, 409, None, "Reference already exists")
            return
        start = existing_revision(repo_dir, revision or "main", "POST", url)
        _git(repo_dir, "update-ref", f"refs/heads/{branch}", start)
        recorder.created_branches.append((repo_id, branch))

    def validate_yaml(self, content: str, *, repo_type=None, token=None):
        import yaml
        from huggingface_hub.repocard import REGEX_YAML_BLOCK

        recorder.validated_readmes.append(content)
        match = REGEX_YAML_BLOCK.search(content)
        if match is None:
            return
        try:
            data = yaml.safe_load(match.group(2))
        except yaml.YAMLError as exc:
            raise ValueError(f"Invalid metadata in README.md.\n- {exc}") from exc
        if data is not None and not isinstance(data, dict):
            raise ValueError("Invalid metadata in README.md.\n- metadata must be a mapping")

    def fetch_upload_modes(additions, repo_type, repo_id, headers, revision, endpoint=None, create_pr=False, gitignore_content=None):
        endpoint = endpoint or self_endpoint()
        revision = unquote(revision)
        url = f"{endpoint}/api/{repo_type}s/{repo_id}/preupload/{revision}"
        repo_dir = existing_repo(repo_id, repo_type, "POST", url)
        existing_revision(repo_dir, revision, "POST", url)
        remote = git_list_files(repo_dir, revision)
        patterns: list[str] = []
        if ".gitattributes" in remote:
            patterns = gitattributes_lfs_patterns(git_read_file(repo_dir, ".gitattributes", revision).decode())
        request = []
        for op in additions:
            sample = op.upload_info.sample
            lfs = matches_patterns(op.path_in_repo, patterns) or op.upload_info.size >= HUB_LFS_SIZE_THRESHOLD or b"\0" in sample
            entry = remote.get(op.path_in_repo)
            op._upload_mode = "lfs" if lfs else "regular"
            op._should_ignore = False
            op._remote_oid = None if entry is None else (entry.lfs_oid or entry.blob_sha)
            if op.upload_info.size == 0:
                op._upload_mode = "regular"
            request.append({"path": op.path_in_repo, "size": op.upload_info.size, "uploadMode": op._upload_mode})
        recorder.preupload_requests.append({"repo_id": repo_id, "revision": revision, "files": request})

    def self_endpoint() -> str:
        import huggingface_hub.constants as hf_constants

        return hf_constants.ENDPOINT

    def upload_files(*, additions, repo_type, repo_id, headers, endpoint=None, num_threads=5, revision=None, create_pr=None):
        url = f"{endpoint or self_endpoint()}/{repo_id}.git/info/lfs/objects/batch"
        repo_dir = existing_repo(repo_id, repo_type, "POST", url)
        for op in additions:
            with op.as_file() as f:
                data = f.read()
            oid = hashlib.sha256(data).hexdigest()
            if op.upload_info.sha256.hex() != oid or op.upload_info.size != len(data):
                _hub_error("PUT", url, 400, None, f"LFS object {op.path_in_repo} does not match its oid/size")
            _store_lfs_object(repo_dir, data)
            recorder.uploads[oid] = data

    def send_commit(*, operations, files_to_copy, commit_message, commit_description, repo_type, repo_id, headers,
                    revision, endpoint=None, parent_commit=None, create_pr=False, hot_reload=False, retry_on_error=False):
        endpoint = endpoint or self_endpoint()
        revision = unquote(revision)
        url = f"{endpoint}/api/{repo_type}s/{repo_id}/commit/{revision}"
        if create_pr:
            raise NotImplementedError("capture_push does not emulate create_pr")
        # Client side, as in the real _send_commit: the ndjson body.
        body = b"".join(
            json.dumps(item).encode() + b"\n"
            for item in prepare_commit_payload(
                operations=operations,
                files_to_copy=files_to_copy,
                commit_message=commit_message,
                commit_description=commit_description,
                parent_commit=parent_commit,
            )
        )
        # Server side.
        payload = [json.loads(line) for line in body.splitlines() if line.strip()]
        repo_dir = existing_repo(repo_id, repo_type, "POST", url)
        head = existing_revision(repo_dir, revision, "POST", url)
        header = payload[0]["value"]
        if header.get("parentCommit") and header["parentCommit"] != head:
            _hub_error("POST", url, 412, None, "A commit has happened since. Please refresh and try again.")
        remote = git_list_files(repo_dir, head)
        files: dict[str, bytes] = {}
        lfs_paths: set[str] = set()
        deleted: list[str] = []
        for item in payload[1:]:
            key, value = item["key"], item["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                oid = value["oid"]
                obj = repo_dir / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
                if not obj.is_file():
                    _hub_error("POST", url, 422, None, f"LFS pointer for {value['path']} points to a missing object")
                files[value["path"]] = obj.read_bytes()
                lfs_paths.add(value["path"])
            elif key in ("deletedFile", "deletedFolder"):
                path = value["path"].rstrip("/")
                exists = path in remote if key == "deletedFile" else any(p.startswith(path + "/") for p in remote)
                if not exists:
                    _hub_error("POST", url, 404, "EntryNotFound", f"A file with this name doesn't exist: {path}")
                deleted.append(path)
            else:
                raise NotImplementedError(f"capture_push does not emulate commit entries of kind {key!r}")
        message = header["summary"] + (f"\n\n{header['description']}" if header.get("description") else "")
        oid = git_commit(
            repo_dir, files=files, lfs_paths=lfs_paths, deletions=deleted, message=message, branch=revision, parent=head
        )
        recorder.commits.append(
            CapturedCommit(
                repo_id=repo_id,
                repo_type=repo_type,
                revision=revision,
                summary=header["summary"],
                description=header.get("description", ""),
                parent_commit=header.get("parentCommit"),
                payload=payload,
                files=files,
                lfs_paths=lfs_paths,
                deleted=deleted,
                oid=oid,
            )
        )
        return CommitInfo(
            commit_url=f"{url_prefix(endpoint, repo_type)}/{repo_id}/commit/{oid}",
            commit_message=commit_message,
            commit_description=commit_description,
            oid=oid,
            pr_url=None,
            _endpoint=endpoint,
        )

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_branch", create_branch)
    monkeypatch.setattr(HfApi, "_validate_yaml", validate_yaml)
    monkeypatch.setattr(commit_api, "_fetch_upload_modes", fetch_upload_modes)
    monkeypatch.setattr(commit_api, "_upload_files", upload_files)
    monkeypatch.setattr(commit_api, "_send_commit", send_commit)
    return recorder


@pytest.fixture
def hub_push(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> PushRecorder:
    """``hub`` plus :func:`capture_push`: ``push_to_hub`` commits into the olah-served repos."""
    return capture_push(monkeypatch, hub)
