"""A run worker's CPU priority (:mod:`kd_core.training.priority`): lowered by
``$KD_CORE_RUN_NICENESS`` (default 10), so the app stays quick beside training; bad values fall
back to the default with a sentence saying so.

Each case runs in a child process: a niceness once raised cannot be lowered again without
privileges, and the test process must keep its own."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kd_core.training import priority
from kd_core.training.priority import NICENESS_ENV, autogroup_niceness, set_autogroup_niceness

ROOT = Path(__file__).resolve().parents[2]
LOWER = (
    "import os; from kd_core.training.priority import autogroup_niceness, lower_priority; "
    "print(lower_priority()); print(os.nice(0)); group = autogroup_niceness(); "
    "print('-' if group is None else group)"
)
"""What the worker does as it starts, then its niceness and its autogroup's ("-" if none)."""
PROBE_AUTOGROUP = (
    "from kd_core.training.priority import autogroup_niceness, set_autogroup_niceness; "
    "ours = autogroup_niceness(); print(ours is not None and set_autogroup_niceness(ours))"
)
"""Whether this process may set its autogroup's niceness (writes its group's value back)."""


def _child(code: str, value: str | None = None, new_session: bool = False) -> list[str]:
    """The output lines of ``code`` run in a child process with ``$KD_CORE_RUN_NICENESS`` at
    ``value`` (unset for ``None``), leading a new session (as a worker does) or in ours."""
    env = {k: v for k, v in os.environ.items() if k != NICENESS_ENV}
    if value is not None:
        env[NICENESS_ENV] = value
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        check=True, start_new_session=new_session,
    ).stdout.splitlines()  # fmt: skip


def _autogroups_can_be_set() -> bool:
    """Whether a process that leads a new session may set its autogroup's niceness here, probed
    as the worker does it, in such a process."""
    return _child(PROBE_AUTOGROUP, new_session=True) == ["True"]


def _lowered(value: str | None, new_session: bool = False) -> tuple[str, int, str]:
    """The worker's log sentence, its niceness minus ours and its autogroup's niceness ("-"
    without autogroups), with the variable at ``value``, in a new session or in ours."""
    sentence, niceness, group = _child(LOWER, value, new_session)
    return sentence, int(niceness) - os.nice(0), group


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
    monkeypatch.setattr(priority, "AUTOGROUP", limited)
    assert set_autogroup_niceness(10) and limited.nice == 10 and limited.writes == 4
    denied = _RateLimitedAutogroup(refusals=1, errno_=errno.EPERM)
    monkeypatch.setattr(priority, "AUTOGROUP", denied)
    assert not set_autogroup_niceness(10) and denied.nice == 0 and denied.writes == 1
