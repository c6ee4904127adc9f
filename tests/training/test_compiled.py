"""``compile``: where torch.compile fails, at once or at the first batch, the run says so in one
sentence and goes on uncompiled with the same outputs."""

from __future__ import annotations

import torch

from kd_core.models import create_model
from kd_core.models.features import extract_features
from kd_core.training.compiled import CompiledExtract
from kd_core.training.run_files import RunFiles
from kd_core.training.trainer import train


def test_a_run_whose_compile_fails_says_so_once_and_trains_uncompiled(
    tmp_path, tiny_config, monkeypatch, capsys
):
    def refuse(*args, **kwargs):
        raise RuntimeError("no C compiler here\nand more detail")

    monkeypatch.setattr(torch, "compile", refuse)
    tiny_config.compile, tiny_config.epochs = True, 1
    train(tiny_config, tmp_path)
    status = RunFiles(tmp_path).read_status()
    assert status["state"] == "finished"
    sentence = (
        "torch.compile of the student resnet8 failed (RuntimeError: no C compiler here); the "
        "run goes on uncompiled."
    )
    assert status["compile_fallback"] == sentence
    assert capsys.readouterr().err.strip() == sentence


def test_a_compiled_pass_that_fails_at_its_first_batch_falls_back_to_the_same_outputs(
    monkeypatch,
):
    def compiled_that_fails(module):
        def call(images):
            raise torch.fx.proxy.TraceError("cannot trace this")

        return call

    monkeypatch.setattr(torch, "compile", compiled_that_fails)
    notes = []
    model = create_model("resnet8", num_classes=10).eval()
    extract = CompiledExtract(model, "teacher", notes.append)
    images = torch.randn(2, 3, 32, 32)
    for _ in range(2):  # the second call goes straight to the eager pass
        outputs = extract(images)
    expected = extract_features(model, images)
    assert torch.equal(outputs.logits, expected.logits)
    assert torch.equal(outputs.pooled, expected.pooled)
    assert outputs.stages.keys() == expected.stages.keys()
    assert all(torch.equal(outputs.stages[k], expected.stages[k]) for k in expected.stages)
    assert notes == [
        "torch.compile of the teacher failed (TraceError: cannot trace this); the run goes on "
        "uncompiled."
    ]
