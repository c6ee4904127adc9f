"""A run's CPU priority: its worker process yields the CPU to the app's server and browser.

Called by :mod:`kd_core.training.worker` as it starts. No torch here: a probe of the priority
starts in a fraction of a second.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

NICENESS_ENV = "KD_CORE_RUN_NICENESS"
DEFAULT_NICENESS = 10
"""How much a run's process lowers its CPU priority unless ``$KD_CORE_RUN_NICENESS`` says."""
AUTOGROUP = Path("/proc/self/autogroup")
AUTOGROUP_RETRY_S = 0.5
"""How long a refused write of the autogroup's niceness is retried: Linux lets a process without
``CAP_SYS_ADMIN`` make one such write per 100 ms, machine-wide, and answers ``EAGAIN`` between."""


def autogroup_niceness() -> int | None:
    """The niceness of this process's session group under autogroup scheduling, read from
    ``/proc/self/autogroup`` (``/autogroup-N nice M``); ``None`` where there is none to read (not
    Linux, a kernel or sandbox without autogroups, or a file in another format)."""
    try:
        words = AUTOGROUP.read_text().split()
    except OSError:
        return None
    if len(words) != 3 or words[1] != "nice":
        return None
    try:
        return int(words[2])
    except ValueError:
        return None


def set_autogroup_niceness(niceness: int) -> bool:
    """Set the niceness of this process's session group (``/proc/self/autogroup``); returns
    whether the group now reads ``niceness``. The kernel's rate limit (``EAGAIN``) is waited out
    for up to :data:`AUTOGROUP_RETRY_S`; any other refusal (``EPERM``, no autogroups, not Linux)
    returns at once."""
    deadline = time.monotonic() + AUTOGROUP_RETRY_S
    while True:
        try:
            AUTOGROUP.write_text(str(niceness))
            break
        except OSError as exc:
            if exc.errno != errno.EAGAIN or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
    return autogroup_niceness() == niceness


def lower_priority() -> str:
    """Lower this process's CPU priority (``os.nice``) by ``$KD_CORE_RUN_NICENESS``, an integer
    from 0 (keep it) to 19, default :data:`DEFAULT_NICENESS`; returns the sentence the run's log
    gets.

    A run then takes the CPU only when the app's server and a browser on the same machine do
    not want it: pages stay quick while a group trains beside them (``bench_app.py
    --beside-group``), and the run trains at full speed whenever the app is idle. On a GPU the
    priority only concerns the process's CPU share (data loading, the Python loop).

    Linux with autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``, on by
    default in most distributions) first shares the CPU equally between sessions, whatever the
    niceness of their processes: a worker leads its own session (``RunManager`` starts it with
    ``start_new_session``), so the niceness of its session's group is lowered too
    (``/proc/self/autogroup``). A process that does not lead its session leaves the group alone,
    since the group is its caller's.
    """
    raw = os.environ.get(NICENESS_ENV, "").strip()
    increment = DEFAULT_NICENESS
    note = ""
    if raw:
        try:
            increment = int(raw)
            if not 0 <= increment <= 19:
                raise ValueError
        except ValueError:
            increment = DEFAULT_NICENESS
            note = (
                f"; ${NICENESS_ENV} must be an integer from 0 to 19, got {raw!r}, so the "
                f"default {DEFAULT_NICENESS} is used"
            )
    if not hasattr(os, "nice"):
        return f"this system cannot lower a process's CPU priority (no os.nice){note}"
    niceness = os.nice(increment)
    group = ""
    if os.getsid(0) == os.getpid() and set_autogroup_niceness(niceness):  # where it took effect
        group = ", its session's too"
    return f"CPU priority lowered by {increment} (niceness now {niceness}{group}){note}"
