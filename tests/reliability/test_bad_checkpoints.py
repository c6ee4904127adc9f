"""Bad checkpoints, through kd_core (``load_checkpoint``, ``store_upload``) and through the
inspector page's upload: each is refused with a sentence saying why, nothing in the pickle
ever runs, the uploads folder keeps exactly what it held, and the page keeps working."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
import tomllib
import torch

from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.evaluation import evaluate_model
from kd_core.checkpoints import MAX_CHECKPOINT_BYTES, CheckpointError, load_checkpoint
from kd_core.data import create_dataset
from kd_core.workspace import store_upload
from tests.reliability.corpus import (
    BadInput,
    assert_sentence,
    checkpoint_cases,
    code_running_cases,
    state_dict_bytes,
)

CASES = checkpoint_cases()
CODE_KINDS = [case.id for case in code_running_cases(Path("unused"))]
PROJECT = Path(__file__).resolve().parents[2]


def _ids(cases: list[BadInput]) -> list[str]:
    return [case.id for case in cases]


def _code_case(kind: str, sentinel: Path) -> BadInput:
    [case] = [c for c in code_running_cases(sentinel) if c.id == kind]
    return case


@pytest.fixture(scope="module")
def good_bytes() -> bytes:
    return state_dict_bytes()


# ---------------------------------------------------------------- kd_core


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_a_bad_checkpoint_is_refused_with_a_reason_and_nothing_is_stored(
    case: BadInput, project_env, good_bytes: bytes, tmp_path: Path
) -> None:
    store_upload(good_bytes, "earlier.pt")  # an earlier upload, which must stay as it is
    before = project_env.snapshot()
    file = tmp_path / case.name
    file.write_bytes(case.data)
    for source in (case.data, file):
        with pytest.raises(CheckpointError) as refused:
            load_checkpoint(source, name=case.name)
        assert_sentence(str(refused.value), case.phrase)
        assert case.name in str(refused.value)  # the message names the file
    with pytest.raises(CheckpointError, match=case.phrase):
        store_upload(case.data, case.name)
    assert project_env.snapshot() == before


@pytest.mark.parametrize("kind", CODE_KINDS)
def test_a_code_running_pickle_is_refused_and_never_runs(kind: str, project_env, tmp_path):
    sentinel = tmp_path / "sentinel"
    case = _code_case(kind, sentinel)
    before = project_env.snapshot()
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(case.data, name=case.name)
    assert_sentence(str(refused.value), case.phrase)
    assert "open" in str(refused.value)  # it names the object it refused
    with pytest.raises(CheckpointError, match=case.phrase):
        store_upload(case.data, case.name)
    assert not sentinel.exists()
    assert project_env.snapshot() == before
    # The control: the same bytes do run their code when unpickled without weights_only.
    control = tmp_path / "control"
    unsafe = _code_case(kind, control).data
    if kind == "plain_pickle":
        pickle.loads(unsafe)
    else:
        torch.load(io.BytesIO(unsafe), weights_only=False)
    assert control.exists()


def test_torchvision_resnet18_with_10_classes_is_recognised() -> None:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    data = io.BytesIO()
    torch.save(resnet18(num_classes=10).state_dict(), data)
    loaded = load_checkpoint(data.getvalue(), name="resnet18.pth")
    assert (loaded.arch, loaded.num_classes) == ("tv_resnet18", 10)


def test_wrong_class_count_loads_but_evaluation_says_the_counts_differ(project_env) -> None:
    loaded = load_checkpoint(state_dict_bytes("resnet8", num_classes=100), name="c100.pt")
    assert loaded.num_classes == 100
    shapes = create_dataset("shapes", split="test", augment=False, limit=16)
    with pytest.raises(AnalysisError) as refused:
        evaluate_model(loaded.model, shapes)
    assert_sentence(str(refused.value), "outputs 100 classes but the dataset has 10")


def test_a_file_over_the_upload_limit_is_refused_before_reading(project_env, good_bytes):
    before = project_env.snapshot()
    with pytest.raises(CheckpointError) as refused:
        store_upload(good_bytes, "big.pt", max_bytes=1024)
    assert_sentence(str(refused.value), r"is \d+\.\d KiB, over the 1\.0 KiB limit")
    assert project_env.snapshot() == before


def test_the_server_caps_upload_sizes_below_the_checkpoint_limit() -> None:
    config = tomllib.loads((PROJECT / ".streamlit" / "config.toml").read_text())
    limit_mb = config["server"]["maxUploadSize"]
    assert isinstance(limit_mb, int) and 0 < limit_mb * 2**20 <= MAX_CHECKPOINT_BYTES


# ---------------------------------------------------------------- the inspector page


@pytest.fixture(scope="module")
def inspector(app_opener):
    return app_opener("inspector.py", inspector_source="Upload a file")


def _upload(at, name: str, data: bytes):
    at.radio(key="inspector_source").set_value("Upload a file").run()
    at.file_uploader(key="inspector_upload").set_value(
        (name, data, "application/octet-stream")
    ).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _still_usable(at) -> None:
    """The page works on: the list view summarises the workspace's teacher."""
    at.radio(key="inspector_source").set_value("From the list").run()
    assert not at.exception, [e.value for e in at.exception]
    assert {m.label: m.value for m in at.metric}["Architecture"] == "resnet20"


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_the_inspector_shows_why_an_upload_is_refused(inspector, module_project_env, case):
    before = module_project_env.snapshot()
    at = _upload(inspector, case.name, case.data)
    assert len(at.error) == 1
    assert_sentence(at.error[0].value, case.phrase)
    assert not at.metric  # no summary of a refused file
    assert module_project_env.snapshot() == before
    _still_usable(at)


@pytest.mark.parametrize("kind", CODE_KINDS)
def test_the_inspector_refuses_a_code_running_pickle(inspector, module_project_env, kind, tmp_path):
    sentinel = tmp_path / "sentinel"
    case = _code_case(kind, sentinel)
    before = module_project_env.snapshot()
    at = _upload(inspector, case.name, case.data)
    assert len(at.error) == 1
    assert_sentence(at.error[0].value, case.phrase)
    assert not sentinel.exists()
    assert module_project_env.snapshot() == before
    _still_usable(at)


def test_the_inspector_evaluation_says_a_100_class_upload_does_not_fit_shapes(
    inspector, module_project_env
):
    at = _upload(inspector, "c100.pt", state_dict_bytes("resnet8", num_classes=100))
    assert "usable checkpoint" in at.success[0].value
    assert {m.label: m.value for m in at.metric}["Classes"] == "100"
    [evaluate] = [b for b in at.button if b.label == "Evaluate"]
    evaluate.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1
    assert_sentence(at.error[0].value, "outputs 100 classes but the dataset has 10")
    stored = sorted(p.suffix for p in module_project_env.uploads.iterdir())
    assert stored == [".json", ".pt"]  # the upload itself is kept (it is a valid checkpoint)
    _still_usable(at)
