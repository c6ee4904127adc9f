"""The HTML report of the default workspace (prints figures; run with `make bench`).

1. ``build_report`` (bundled teacher, vanilla and AMD students, 1,000 ``shapes`` test images)
   with the features already cached, step by step, then ``report_html``: in-process medians of
   ``--repeats`` runs after one warm-up (which fills the feature cache).
2. ``python -m kd_core report OUT.html`` end to end in a fresh process (imports, loading,
   writing), once, features cached. Target <= 30 s on 2 cores; the file <= 10 MB.

Torch uses its default threads (2 on the reference machine).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.timing import median_seconds
from kd_core.report.build import ReportRequest, build_report
from kd_core.report.html import report_html
from kd_core.workspace import default_selection, find_entry, list_checkpoints

ROOT = Path(__file__).resolve().parents[1]


def default_request() -> ReportRequest:
    entries = list_checkpoints()
    teacher, students = default_selection(entries)
    students_entries = tuple(find_entry(entries, key) for key in students)
    return ReportRequest(find_entry(entries, teacher), students_entries)


def bench_in_process(request: ReportRequest, repeats: int) -> None:
    steps: dict[str, list[float]] = {}
    rendering: list[float] = []

    def step() -> None:
        last = [time.perf_counter(), "loading the checkpoints"]

        def progress(line: str) -> None:
            now = time.perf_counter()
            steps.setdefault(str(last[1]), []).append(now - float(last[0]))
            last[:] = [now, line]

        report = build_report(request, progress=progress)
        progress("done")
        start = time.perf_counter()
        report_html(report)
        rendering.append(time.perf_counter() - start)

    total = median_seconds(step, repeats)
    detail = ", ".join(
        f"{name.lower()} {statistics.median(times[1:]):.2f} s" for name, times in steps.items()
    )
    print(
        f"report of the default workspace in-process, features cached: {total:.2f} s "
        f"({detail}; HTML {statistics.median(rendering[1:]):.2f} s)"
    )


def bench_command() -> None:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "report.html"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "kd_core", "report", str(out)],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        seconds = time.perf_counter() - start
        size = out.stat().st_size / 1e6
    print(
        f"python -m kd_core report, default workspace, features cached: {seconds:.1f} s "
        f"(target <= 30 s), {size:.1f} MB (target <= 10 MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    bench_in_process(default_request(), args.repeats)
    bench_command()


if __name__ == "__main__":
    main()
