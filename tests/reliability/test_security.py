"""Security: the server is private, uploads are guarded, paths stay in their roots, no pickle
code runs and nothing reaches the network unasked.

- Loopback only: the config binds 127.0.0.1, and live servers (started as the tests do, and
  with the config file alone deciding) listen on 127.0.0.1 and nothing else.
- Uploads (Streamlit's ``PUT /_stcore/upload_file/<session>/<file>``, the route behind
  ``st.file_uploader``): refused without the XSRF cookie and matching ``X-Xsrftoken`` header
  (403) and over ``server.maxUploadSize`` (413); kd_core refuses checkpoints over
  ``MAX_CHECKPOINT_BYTES``.
- Paths: run ids, run names, workspace keys and upload names never lead outside the roots.
- Pickles: a malicious pickle through every kd_core reader runs no code, and every
  ``torch.load`` in kd_core passes ``weights_only=True`` (read from the source).
- Network: usage statistics off, a browser session makes no request and the server no
  connection to a non-loopback address, and kd_core downloads nothing unless asked.
"""

from __future__ import annotations

import ast
import hashlib
import http.client
import ipaddress
import os
import pickle
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import psutil
import pytest
import tomllib
import torch

from app_pages._shared import PAGES
from kd_core.analysis.feature_cache import FeatureCache
from kd_core.checkpoints import (
    MAX_CHECKPOINT_BYTES,
    CheckpointError,
    load_checkpoint,
    load_training_state,
)
from kd_core.data import create_dataset
from kd_core.models import create_model
from kd_core.models.weights import read_state_dict
from kd_core.training.config import TrainConfig
from kd_core.training.runs import RunManager, new_run_id
from kd_core.workspace import ASSETS_DIR, find_entry, list_checkpoints, store_upload
from tests.browser.harness import (
    ROOT,
    SERVER_START_TIMEOUT_S,
    Server,
    free_port,
    healthy,
    launch_chromium,
    streamlit_server,
)
from tests.reliability.load import render_page, run_async

pytestmark = pytest.mark.browser

CONFIG = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
MAX_UPLOAD_BYTES = CONFIG["server"]["maxUploadSize"] * 1024 * 1024  # Streamlit counts MiB
XSRF_COOKIE = "_streamlit_xsrf"
UPLOAD_ROUTE = "/_stcore/upload_file/"
NOT_A_CHECKPOINT = b"just some notes, not weights\n"
STUDENT = ASSETS_DIR / "student_resnet8_vanilla.pt"


def _loopback(ip: str) -> bool:
    return ipaddress.ip_address(ip.split("%")[0]).is_loopback


def _tree(pid: int) -> list[psutil.Process]:
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def listening_addresses(pid: int) -> set[str]:
    """The local addresses the process ``pid`` and its children listen on (TCP and UDP)."""
    return {
        conn.laddr.ip
        for member in _tree(pid)
        for conn in member.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN or (conn.type == socket.SOCK_DGRAM and conn.laddr)
    }


def remote_addresses(pid: int) -> set[str]:
    """The remote addresses of the connections of ``pid`` and its children right now."""
    found = set()
    for member in _tree(pid):
        try:
            found |= {c.raddr.ip for c in member.net_connections(kind="inet") if c.raddr}
        except psutil.Error:
            continue
    return found


@contextmanager
def server_from_config_alone(env: dict[str, str]) -> Iterator[int]:
    """``streamlit run serve.py`` (as ``make run``) with only a port given: address, headless
    mode and usage statistics come from ``.streamlit/config.toml``. Yields the server's pid."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "serve.py", "--server.port", str(port)]
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=output, stderr=output
        )
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while not healthy(f"http://127.0.0.1:{port}/_stcore/health"):
                if process.poll() is not None or time.monotonic() > deadline:
                    output.seek(0)
                    pytest.fail(f"the server did not start:\n{output.read().decode()[-3000:]}")
                time.sleep(0.1)
            yield process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("security")
    return {"KD_CORE_RUNS": str(root / "runs"), "KD_CORE_UPLOADS": str(root / "uploads")}


@pytest.fixture(scope="module")
def server(folders: dict[str, str]) -> Iterator[Server]:
    with streamlit_server(folders) as running:
        yield running


# --------------------------------------------------------------------------------------------
# What one browser session sees and causes: requests, server connections, an upload replayed.


@dataclass
class Observed:
    """One browser session on the live server: the hosts its pages requested, the remote
    addresses of the server's connections meanwhile, the message the inspector showed for an
    uploaded non-checkpoint, and the HTTP status of each replayed upload request."""

    request_hosts: set[str] = field(default_factory=set)
    server_remotes: set[str] = field(default_factory=set)
    upload_message: str = ""
    upload_status: dict[str, int] = field(default_factory=dict)


def _put_upload(
    url: str, headers: dict[str, str], body: bytes | None = None, method: str = "PUT"
) -> int:
    """Send a multipart upload of ``body`` to ``url``; without ``body``, only the headers go
    out (``headers`` then carries the announced Content-Length). Returns the status."""
    parsed = urlparse(url)
    boundary = "kdcoreboundary"
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    try:
        connection.putrequest(method, parsed.path)
        connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        payload = b""
        if body is not None:
            payload = (
                (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                    f'filename="notes.pt"\r\nContent-Type: application/octet-stream\r\n\r\n'
                ).encode()
                + body
                + f"\r\n--{boundary}--\r\n".encode()
            )
            headers = {**headers, "Content-Length": str(len(payload))}
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(payload or None)
        return connection.getresponse().status
    finally:
        connection.close()


def _replay_uploads(url: str, cookie: str, token: str) -> dict[str, int]:
    """The browser's upload request replayed without, with forged and with real XSRF
    credentials, and over the size limit."""
    from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string

    forged = generate_xsrf_token_string(os.urandom(16))
    jar = f"{XSRF_COOKIE}={cookie}"
    return {
        "no cookie, no token": _put_upload(url, {}, NOT_A_CHECKPOINT),
        "cookie, no token": _put_upload(url, {"Cookie": jar}, NOT_A_CHECKPOINT),
        "token, no cookie": _put_upload(url, {"X-Xsrftoken": token}, NOT_A_CHECKPOINT),
        "forged token": _put_upload(url, {"Cookie": jar, "X-Xsrftoken": forged}, NOT_A_CHECKPOINT),
        "POST, no token": _put_upload(url, {}, NOT_A_CHECKPOINT, method="POST"),
        "DELETE, no token": _put_upload(url, {}, method="DELETE"),
        "cookie and token": _put_upload(
            url, {"Cookie": jar, "X-Xsrftoken": token}, NOT_A_CHECKPOINT
        ),
        "over the limit": _put_upload(
            url,
            {"Cookie": jar, "X-Xsrftoken": token, "Content-Length": str(MAX_UPLOAD_BYTES + 1)},
        ),
    }


async def _browse(base_url: str) -> Observed:
    from playwright.async_api import async_playwright

    observed = Observed()
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright)
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(120_000)
            context.on("request", lambda r: observed.request_hosts.add(urlparse(r.url).hostname))
            page = await context.new_page()
            inspector = next(i for i, spec in enumerate(PAGES) if spec.url_path == "inspector")
            await render_page(page, base_url, 0, PAGES[0])
            await render_page(page, base_url, inspector, PAGES[inspector])
            await page.get_by_text("Upload a file", exact=True).click()
            dropzone = page.get_by_test_id("stFileUploaderDropzoneInput")
            async with page.expect_request(
                lambda r: r.method == "PUT" and UPLOAD_ROUTE in r.url
            ) as upload:
                await dropzone.set_input_files(
                    {"name": "notes.pt", "mimeType": "text/plain", "buffer": NOT_A_CHECKPOINT}
                )
            request = await upload.value
            token = await request.header_value("x-xsrftoken") or ""
            cookies = {c["name"]: c["value"] for c in await context.cookies()}
            alert = page.get_by_test_id("stAlert").filter(has_text="notes.pt")
            observed.upload_message = await alert.first.inner_text()
            # Replayed while the browser session is connected (uploads need a live session).
            observed.upload_status = _replay_uploads(
                request.url, cookies.get(XSRF_COOKIE, ""), token
            )
        finally:
            await browser.close()
    return observed


@pytest.fixture(scope="module")
def observed(server: Server) -> Observed:
    stop = threading.Event()
    remotes: set[str] = set()

    def watch() -> None:
        while not stop.is_set():
            remotes.update(remote_addresses(server.process.pid))
            stop.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = run_async(_browse(server.base_url))
    finally:
        stop.set()
        watcher.join(timeout=5)
    result.server_remotes = remotes
    return result


# --------------------------------------------------------------------------------------------
# The server is private.


def test_the_config_binds_loopback_with_xsrf_on_and_usage_statistics_off():
    assert CONFIG["server"]["address"] == "127.0.0.1"
    assert CONFIG["server"]["enableXsrfProtection"] is True
    assert CONFIG["server"]["headless"] is True
    assert CONFIG["browser"]["gatherUsageStats"] is False
    # Uploads are capped by Streamlit first, well below kd_core's own checkpoint limit.
    assert 0 < MAX_UPLOAD_BYTES < MAX_CHECKPOINT_BYTES
    makefile = (ROOT / "Makefile").read_text()
    assert "ADDRESS ?= 127.0.0.1" in makefile
    assert "--server.address $(ADDRESS)" in makefile


def test_live_servers_listen_on_loopback_only(server, folders):
    assert listening_addresses(server.process.pid) == {"127.0.0.1"}
    with server_from_config_alone(folders) as pid:  # no --server.address: the config decides
        assert listening_addresses(pid) == {"127.0.0.1"}


def test_listening_addresses_reports_each_bound_address():
    """The check above can fail: another address than 127.0.0.1 is reported (another loopback
    address here, so that the test itself exposes nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.2", 0))
        sock.listen()
        assert "127.0.0.2" in listening_addresses(os.getpid())


# --------------------------------------------------------------------------------------------
# Uploads.


def test_the_browser_upload_reached_the_app_and_was_rejected_with_a_sentence(observed):
    assert "notes.pt is a text file" in observed.upload_message, observed.upload_message
    assert "not a checkpoint" in observed.upload_message


def test_uploads_without_a_valid_xsrf_token_are_refused(observed):
    status = observed.upload_status
    refused = ("no cookie, no token", "cookie, no token", "token, no cookie", "forged token")
    for case in (*refused, "DELETE, no token"):
        assert status[case] == 403, (case, status)
    assert status["POST, no token"] == 405, status  # uploads are PUT only
    assert status["cookie and token"] == 204, status  # the same request, credentials intact


def test_uploads_over_the_configured_size_are_refused(observed):
    assert observed.upload_status["over the limit"] == 413, observed.upload_status


def test_kd_core_refuses_checkpoints_over_its_size_limit(tmp_path):
    data = STUDENT.read_bytes()
    with pytest.raises(CheckpointError, match=r"over the .* limit"):
        load_checkpoint(data, name="big.pt", max_bytes=len(data) - 1)
    with pytest.raises(CheckpointError, match=r"over the .* limit"):
        store_upload(data, "big.pt", folder=tmp_path / "uploads", max_bytes=len(data) - 1)
    assert not (tmp_path / "uploads").exists()
    # A file over the default limit is refused from its size alone (sparse: nothing is read).
    huge = tmp_path / "huge.pt"
    with huge.open("wb") as file:
        file.truncate(MAX_CHECKPOINT_BYTES + 1)
    with pytest.raises(CheckpointError, match=r"huge.pt is 2.0 GiB, over the 2.0 GiB limit"):
        load_checkpoint(huge)


# --------------------------------------------------------------------------------------------
# Paths stay inside their roots.

HOSTILE_NAMES = [
    "../../etc/passwd", "..", ".", "/etc/passwd", "a/../../b", "..\\..\\windows",
    "C:\\evil", "~root", "name\x00.pt", "名前/../../x", "x" * 500, "", " ",
]  # fmt: skip


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def test_run_ids_and_run_names_never_leave_the_runs_root(tmp_path):
    manager = RunManager(tmp_path / "runs")
    manager.root.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    for run_id in [*HOSTILE_NAMES, "../victim", "runs/../victim", ".slots", "-rf"]:
        with pytest.raises(ValueError, match="is not a run id"):
            manager.run_dir(run_id)
    with pytest.raises(ValueError, match="is not a run id"):
        manager.delete("../victim")
    assert victim.is_dir()
    config = TrainConfig()
    for name in HOSTILE_NAMES:
        run_id = new_run_id(manager.root, config, name)
        assert manager.run_dir(run_id).parent == manager.root, (name, run_id)


def test_uploads_are_stored_by_content_hash_whatever_their_name(tmp_path):
    folder = tmp_path / "uploads"
    data = STUDENT.read_bytes()
    before = set(tmp_path.parent.iterdir())
    for name in HOSTILE_NAMES:
        entry = store_upload(data, name, folder=folder)
        assert entry.path.parent == folder and _inside(entry.path, folder), (name, entry.path)
    digest = hashlib.sha256(data).hexdigest()[:16]
    assert sorted(p.name for p in folder.iterdir()) == [f"{digest}.json", f"{digest}.pt"]
    assert set(tmp_path.parent.iterdir()) == before  # nothing written next to the test folder
    entries = list_checkpoints(runs=tmp_path / "runs", uploads=folder)
    roots = (ASSETS_DIR, folder)
    assert all(any(_inside(e.path, root) for root in roots) for e in entries)
    # Keys select entries; they are never turned into paths.
    for key in ["bundled:../../etc/passwd", "upload:../" + digest, f"upload:{folder}/{digest}"]:
        with pytest.raises(CheckpointError, match="no longer available"):
            find_entry(entries, key)


# --------------------------------------------------------------------------------------------
# No pickle code ever runs.


class _Exec:
    """Unpickling this runs ``exec``, which writes ``marker``: proof that pickle code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pickle code ran')",))


class _System(_Exec):
    """The classic: unpickling this runs a shell command (``os.system``) writing ``marker``."""

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _malicious_files(folder: Path, payload: _Exec) -> dict[str, Path]:
    """``payload`` as the weights of a plain pickle and of torch.save's zip and legacy files."""
    files = {
        "plain pickle": folder / "plain.pth",
        "torch zip": folder / "zip.pth",
        "torch legacy": folder / "legacy.pth",
    }
    files["plain pickle"].write_bytes(pickle.dumps({"state_dict": payload}, protocol=2))
    torch.save({"state_dict": payload}, files["torch zip"])
    torch.save({"model": payload}, files["torch legacy"], _use_new_zipfile_serialization=False)
    return files


@pytest.mark.parametrize("payload", [_Exec, _System], ids=["exec", "os.system"])
def test_a_malicious_pickle_runs_no_code_in_any_kd_core_reader(tmp_path, payload):
    marker = tmp_path / "pickle-code-ran"
    cache = FeatureCache(tmp_path / "features")
    for kind, path in _malicious_files(tmp_path, payload(marker)).items():
        data = path.read_bytes()
        with pytest.raises(CheckpointError) as refused:
            load_checkpoint(data, name=path.name)
        if payload is _System:  # named, and the user is told how to re-save the weights
            assert "(posix.system)" in str(refused.value), str(refused.value)
            assert "never executes such objects" in str(refused.value)
        with pytest.raises(CheckpointError):
            load_checkpoint(path)
        with pytest.raises(CheckpointError):
            store_upload(data, path.name, folder=tmp_path / "uploads")
        with pytest.raises(CheckpointError):
            load_training_state(path)
        with pytest.raises(ValueError, match="Could not read weights"):
            read_state_dict(path)
        with pytest.raises(ValueError):
            create_model("resnet8", num_classes=10, weights=path)
        # The feature cache treats a foreign file under a key's name as a miss.
        key = hashlib.sha256(kind.encode()).hexdigest()[:32]
        cache.path(key).parent.mkdir(exist_ok=True)
        cache.path(key).write_bytes(data)
        assert cache.get(key) is None
        assert not marker.exists(), f"pickle code ran reading the {kind} file"
    assert not (tmp_path / "uploads").exists()


def _calls(tree: ast.AST, module: str, function: str) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == function
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == module
        ):
            yield node


def _keyword(call: ast.Call, name: str) -> object:
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def test_every_torch_load_in_kd_core_is_weights_only():
    sources = sorted((ROOT / "kd_core").rglob("*.py"))
    loads, unsafe, pickles = 0, [], []
    for source in sources:
        tree = ast.parse(source.read_text(), filename=str(source))
        where = source.relative_to(ROOT)
        for node in ast.walk(tree):  # loaders imported under another name escape the scan
            if isinstance(node, ast.ImportFrom) and node.module in ("torch", "pickle"):
                names = {alias.name for alias in node.names}
                if names & {"load", "loads", "Unpickler"}:
                    unsafe.append(f"{where}:{node.lineno} from {node.module} import a loader")
        for call in _calls(tree, "torch", "load"):
            loads += 1
            if _keyword(call, "weights_only") is not True:
                unsafe.append(f"{where}:{call.lineno} torch.load without weights_only=True")
        for module in ("np", "numpy"):
            for call in _calls(tree, module, "load"):
                if _keyword(call, "allow_pickle") is True:
                    unsafe.append(f"{where}:{call.lineno} np.load(allow_pickle=True)")
        for function in ("load", "loads", "Unpickler"):
            pickles += [f"{where}:{c.lineno}" for c in _calls(tree, "pickle", function)]
    assert loads >= 3, "the scan found too few torch.load calls: is it reading kd_core?"
    assert not unsafe, unsafe
    # CIFAR's python files are pickles by format: the only pickle reader (see the next test).
    assert all(site.startswith("kd_core/data/cifar.py:") for site in pickles), pickles


def test_a_crafted_cifar_folder_runs_no_code(tmp_path):
    marker = tmp_path / "pickle-code-ran"
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    for name in names:
        (folder / name).write_bytes(pickle.dumps(_Exec(marker), protocol=2))
    with pytest.raises(ValueError, match="not a genuine CIFAR batch"):
        create_dataset("cifar10", split="test", root=tmp_path / "data")
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# Nothing reaches the network unasked.


def test_a_browser_session_stays_on_loopback(observed):
    assert observed.request_hosts == {"127.0.0.1"}, observed.request_hosts
    assert observed.server_remotes, "no server connection was seen: is the watcher working?"
    assert all(_loopback(ip) for ip in observed.server_remotes), observed.server_remotes


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every outgoing connection attempt is recorded and refused."""
    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] or args)
        raise OSError("network access refused by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_kd_core_downloads_nothing_unless_asked(tmp_path, no_network):
    with pytest.raises(ValueError, match="downloading is off"):
        create_model("tv_resnet18", num_classes=10, weights="imagenet")
    with pytest.raises(ValueError, match="download=True"):
        create_dataset("cifar10", split="test", root=tmp_path)
    assert no_network == []
    assert not any(tmp_path.iterdir())
