"""The run worker's CPU priority: lowered by ``$KD_CORE_RUN_NICENESS`` (default 10), so the app
stays quick beside training; bad values fall back to the default with a sentence saying so.

Each case runs in a child process: a niceness once raised cannot be lowered again without
privileges, and the test process must keep its own."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kd_core.training import worker
from kd_core.training.worker import autogroup_niceness, set_autogroup_niceness

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import os; from kd_core.training.worker import autogroup_niceness, lower_priority; "
    "print(lower_priority()); print(os.nice(0)); group = autogroup_niceness(); "
    "print('-' if group is None else group)"
)


def _autogroups_can_be_set() -> bool:
    """Whether a process that leads a new session may set its autogroup's niceness here, probed
    as the worker does it, in such a process, by writing its group's current value back."""
    probe = (
        "from kd_core.training.worker import autogroup_niceness, set_autogroup_niceness\n"
        "ours = autogroup_niceness()\n"
        "print(ours is not None and set_autogroup_niceness(ours))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True,
        start_new_session=True,
    ).stdout.strip()  # fmt: skip
    return out == "True"


def _lowered(value: str | None, new_session: bool = False) -> tuple[str, int, str]:
    """The worker's log sentence, its niceness minus ours and its autogroup's niceness ("-"
    without autogroups), with the variable at ``value``, in a new session or in ours."""
    env = {k: v for k, v in os.environ.items() if k != "KD_CORE_RUN_NICENESS"}
    if value is not None:
        env["KD_CORE_RUN_NICENESS"] = value
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
        check=True, start_new_session=new_session,
    ).stdout.splitlines()  # fmt: skip
    return out[0], int(out[1]) - os.nice(0), out[2]


@pytest.mark.parametrize(("value", "expected"), [(None, 10), ("", 10), ("0", 0), (" 3 ", 3)])
def test_priority_is_lowered_by_the_setting(value, expected):
    sentence, lowered, _ = _lowered(value)
    assert lowered == min(expected, 19 - os.nice(0))  # niceness stops at 19
    assert sentence.startswith(f"CPU priority lowered by {expected} (niceness now ")


@pytest.mark.parametrize("value", ["abc", "-5", "20", "1.5"])
def test_bad_settings_use_the_default_and_say_so(value):
    sentence, lowered, _ = _lowered(value)
    assert lowered == min(10, 19 - os.nice(0))
    assert f"got {value!r}, so the default 10 is used" in sentence
    assert "must be an integer from 0 to 19" in sentence


def test_a_session_leader_lowers_its_autogroup_and_a_process_in_ours_does_not():
    """With autogroup scheduling the CPU is shared between sessions first: the worker, which
    leads its own session, lowers its session's group; run from ours, it must leave our
    group (the caller's) alone."""
    ours = "-" if autogroup_niceness() is None else str(autogroup_niceness())
    sentence, _, group = _lowered(None, new_session=True)
    if _autogroups_can_be_set():
        assert group == str(min(os.nice(0) + 10, 19)) and "its session's too" in sentence
    else:  # not Linux, a kernel without autogroups, or a sandbox: the log must not claim it
        assert "session" not in sentence
    sentence, _, group = _lowered(None, new_session=False)
    assert group == ours and "session" not in sentence


class _RateLimitedAutogroup:
    """A stand-in for ``/proc/self/autogroup`` that refuses the first ``refusals`` writes with
    ``errno``, as the kernel's rate limit (``EAGAIN``) or a missing permission (``EPERM``) does."""

    def __init__(self, refusals: int, errno_: int) -> None:
        self.refusals, self.errno, self.nice, self.writes = refusals, errno_, 0, 0

    def read_text(self) -> str:
        return f"/autogroup-7 nice {self.nice}\n"

    def write_text(self, text: str) -> int:
        self.writes += 1
        if self.writes <= self.refusals:
            raise OSError(self.errno, os.strerror(self.errno))
        self.nice = int(text)
        return len(text)


def test_the_kernels_rate_limit_is_waited_out_and_a_refusal_is_not(monkeypatch):
    """Linux allows one autogroup write per 100 ms machine-wide to a process without
    CAP_SYS_ADMIN (EAGAIN between): a worker started just after another must still lower its
    group; a permission refusal is final at once."""
    limited = _RateLimitedAutogroup(refusals=3, errno_=errno.EAGAIN)
    monkeypatch.setattr(worker, "AUTOGROUP", limited)
    assert set_autogroup_niceness(10) and limited.nice == 10 and limited.writes == 4
    denied = _RateLimitedAutogroup(refusals=1, errno_=errno.EPERM)
    monkeypatch.setattr(worker, "AUTOGROUP", denied)
    assert not set_autogroup_niceness(10) and denied.nice == 0 and denied.writes == 1
