"""Group training: students in lockstep on the same batches, the teacher's pass shared, each
student ending exactly as it would alone; cancelling or failing one leaves the others."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kd_core.checkpoints import load_training_state
from kd_core.training.config import TrainConfig
from kd_core.training.run_files import RunFiles
from kd_core.training.trainer import RunCancelled, check_group, train, train_group

OBJECTIVES = {
    "vanilla": ({"ce": 1.0}, {}),
    "kd": ({"ce": 0.1, "kd": 0.9}, {"kd": {"temperature": 4.0}}),
    "amd": ({"ce": 1.0, "amd": 1000.0}, {"amd": {"local": True}}),
}


def configs(tiny_config, teacher_checkpoint, names=tuple(OBJECTIVES)) -> list[TrainConfig]:
    made = []
    for name in names:
        objective, params = OBJECTIVES[name]
        teacher = teacher_checkpoint if name != "vanilla" else None
        made.append(
            tiny_config.with_overrides(
                {"objective": objective, "loss_params": params, "teacher": teacher, "name": name}
            )
        )
    return made


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_training_state(RunFiles(run_dir).last)["student"]


def epoch_metrics(run_dir) -> list[tuple[float, float]]:
    records = RunFiles(run_dir).read_metrics()
    return [(r["train_loss"], r["test_top1"]) for r in records if r["kind"] == "epoch"]


def assert_same_run(first, second) -> None:
    a, b = weights(first), weights(second)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5, msg=key)
    for (loss_a, top1_a), (loss_b, top1_b) in zip(
        epoch_metrics(first), epoch_metrics(second), strict=True
    ):
        assert loss_a == pytest.approx(loss_b, rel=1e-5) and top1_a == top1_b


def test_each_student_of_a_group_ends_as_it_would_alone(tmp_path, tiny_config, teacher_checkpoint):
    group = configs(tiny_config, teacher_checkpoint)
    dirs = [tmp_path / "group" / c.name for c in group]
    outcomes = train_group(group, dirs, group="g1")
    assert all(o.epochs_done == 2 for o in outcomes)
    for config, run_dir in zip(group, dirs, strict=True):
        alone = tmp_path / "alone" / config.name
        train(config, alone)
        assert_same_run(run_dir, alone)
        status = RunFiles(run_dir).read_status()
        assert status["state"] == "finished" and status["group"] == "g1"


def test_one_seed_one_initialisation(tmp_path, tiny_config):
    """Two students with the same architecture, seed and objective are the same student."""
    twins = [
        tiny_config.with_overrides({"name": n, "lr": lr}) for n, lr in (("a", 0.05), ("b", 0.05))
    ]
    train_group(twins, [tmp_path / "a", tmp_path / "b"])
    assert_same_run(tmp_path / "a", tmp_path / "b")


def test_cancelling_one_student_leaves_the_others(tmp_path, tiny_config, teacher_checkpoint):
    group = configs(tiny_config, teacher_checkpoint)
    dirs = [tmp_path / c.name for c in group]
    outcomes = train_group(group, dirs, should_stop=lambda index: index == 1)
    assert isinstance(outcomes[1], RunCancelled)
    assert RunFiles(dirs[1]).read_status()["state"] == "cancelled"
    for index in (0, 2):
        assert outcomes[index].epochs_done == 2
        alone = tmp_path / "alone" / group[index].name
        train(group[index], alone)
        assert_same_run(dirs[index], alone)


def test_a_killed_group_resumes_to_the_uninterrupted_result(
    tmp_path, tiny_config, teacher_checkpoint
):
    group = configs(tiny_config, teacher_checkpoint, ("vanilla", "amd"))
    whole = [tmp_path / "whole" / c.name for c in group]
    train_group(group, whole)
    killed = [tmp_path / "killed" / c.name for c in group]
    steps = {"count": 0}

    def kill_in_the_second_epoch(index: int) -> bool:
        steps["count"] += 1
        if steps["count"] > 2 * 3 + 1:  # 3 steps per epoch and student; then mid-epoch 2
            raise KeyboardInterrupt  # not an Exception: nothing of the loop catches it
        return False

    with pytest.raises(KeyboardInterrupt):
        train_group(group, killed, should_stop=kill_in_the_second_epoch)
    assert all(len(epoch_metrics(d)) == 1 for d in killed)
    train_group(group, killed, resume=True)
    for done, resumed in zip(whole, killed, strict=True):
        assert_same_run(done, resumed)


def test_a_student_ahead_waits_for_the_group(tmp_path, tiny_config, teacher_checkpoint):
    """After a kill between two students' checkpoints, one is an epoch ahead: resumed, it sits
    out the epoch the others repeat and ends the same."""
    group = configs(tiny_config, teacher_checkpoint, ("vanilla", "kd"))
    dirs = [tmp_path / c.name for c in group]
    train(group[0], dirs[0])  # finished: 2 epochs
    one_epoch = group[1].with_overrides({"epochs": 1})
    train(one_epoch, dirs[1])
    group[1].save(RunFiles(dirs[1]).config)
    outcomes = train_group(group, dirs, resume=True)
    assert [o.epochs_done for o in outcomes] == [2, 2]
    alone = tmp_path / "alone"
    train(group[0], alone)
    assert_same_run(dirs[0], alone)
    assert RunFiles(dirs[0]).read_status()["last_top1"] == outcomes[0].last_top1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 16}, "must share batch_size.*student 1 has 32, student 2 16"),
        ({"epochs": 3}, "must share epochs"),
        ({"dataset": "cifar10", "data_root": "/nowhere"}, "must share dataset"),
    ],
)
def test_students_that_cannot_share_batches_are_refused(tiny_config, change, message):
    with pytest.raises(ValueError, match=message):
        check_group([tiny_config, tiny_config.with_overrides(change)])


def test_empty_groups_two_teachers_and_shared_folders_are_refused(
    tmp_path, tiny_config, teacher_checkpoint
):
    with pytest.raises(ValueError, match="at least one student"):
        check_group([])
    other = tmp_path / "other.pt"
    other.write_bytes(Path(teacher_checkpoint).read_bytes())
    kd, _ = OBJECTIVES["kd"]
    a = tiny_config.with_overrides({"teacher": teacher_checkpoint, "objective": kd})
    b = tiny_config.with_overrides({"teacher": str(other), "objective": kd})
    with pytest.raises(ValueError, match="one teacher, got 2"):
        check_group([a, b])
    with pytest.raises(ValueError, match="share a run folder"):
        train_group([tiny_config, tiny_config], [tmp_path / "x", tmp_path / "x"])


def test_every_epoch_line_of_a_run_with_a_teacher_probes_the_attention(
    tmp_path, tiny_config, teacher_checkpoint
):
    """The probe sees the group's teacher, so the vanilla student is measured too; a student
    equal to its teacher would score 1 (the probe is the Attention page's cosine)."""
    group = configs(tiny_config, teacher_checkpoint, ("vanilla", "amd"))
    dirs = [tmp_path / c.name for c in group]
    train_group(group, dirs)
    for run_dir in dirs:
        cosines = [r["attention_cosine"] for r in RunFiles(run_dir).read_metrics()
                   if r["kind"] == "epoch"]  # fmt: skip
        assert len(cosines) == 2 and all(0.0 <= c <= 1.0 for c in cosines)
    train(tiny_config, tmp_path / "alone")  # no teacher anywhere: nothing to compare with
    epochs = [r for r in RunFiles(tmp_path / "alone").read_metrics() if r["kind"] == "epoch"]
    assert all("attention_cosine" not in r for r in epochs)
