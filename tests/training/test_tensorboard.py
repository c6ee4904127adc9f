"""TensorBoard event files of a run, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from kd_core.training.run_files import RunFiles
from kd_core.training.trainer import train, train_group


def accumulate(run_dir) -> EventAccumulator:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def test_a_run_writes_every_term_accuracy_rate_speed_and_its_config(
    tmp_path, tiny_config, teacher_checkpoint
):
    config = tiny_config.with_overrides(
        {"teacher": teacher_checkpoint, "objective": {"ce": 1.0, "amd": 1000.0}}
    )
    train(config, tmp_path)
    events = accumulate(tmp_path)
    scalars = set(events.Tags()["scalars"])
    assert {"loss/total", "loss/ce", "loss/amd", "lr", "top1/train", "top1/test", "top5/test",
            "loss/test", "speed/images_per_second", "epoch", "attention/cosine_to_teacher",
            "hparam/best_top1", "hparam/last_top1"} <= scalars  # fmt: skip
    metrics = list(RunFiles(tmp_path).read_metrics())
    steps = [r for r in metrics if r["kind"] == "step"]
    epochs = [r for r in metrics if r["kind"] == "epoch"]
    assert [e.step for e in events.Scalars("loss/total")] == [r["step"] for r in steps]
    assert [e.value for e in events.Scalars("top1/test")] == pytest.approx(
        [r["test_top1"] for r in epochs]
    )
    assert events.Scalars("hparam/best_top1")[-1].value == pytest.approx(
        max(r["test_top1"] for r in epochs)
    )
    assert "config/text_summary" in events.Tags()["tensors"]
    assert "amd" in events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()


def test_a_resumed_run_continues_its_curves_without_duplicate_steps(tmp_path, tiny_config):
    calls = {"count": 0}

    def kill_in_the_second_epoch() -> bool:
        calls["count"] += 1
        if calls["count"] > 3 + 1:  # 3 steps per epoch: die after a step of epoch 2
            raise KeyboardInterrupt
        return False

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config, tmp_path, should_stop=kill_in_the_second_epoch)
    train(tiny_config, tmp_path, resume=True)
    events = accumulate(tmp_path)
    steps = [e.step for e in events.Scalars("loss/total")]
    assert steps == sorted(set(steps)) == list(range(1, 7))
    assert [e.step for e in events.Scalars("top1/test")] == [3, 6]


def test_each_student_of_a_group_has_its_own_events(tmp_path, tiny_config):
    other = tiny_config.with_overrides({"lr": 0.01, "name": "b"})
    train_group([tiny_config, other], [tmp_path / "a", tmp_path / "b"])
    lrs = [accumulate(tmp_path / name).Scalars("lr")[0].value for name in ("a", "b")]
    assert lrs[0] != lrs[1]
