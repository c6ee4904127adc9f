"""The workspace as one self-contained HTML file, for a class, a colleague or a paper's
supplement: :mod:`~kd_core.report.build` gathers what the pages show (the workspace table, θ
histograms and summaries per stage, an attention grid with its agreement table, the 2-D
embedding, CKA, the results table of the bundled checkpoints), drawn by the pages' own figure
builders; :mod:`~kd_core.report.html` assembles it (plotly.js inlined once, no request leaves
the file) and writes each figure on its own (HTML, and SVG/PDF when kaleido is installed);
:mod:`~kd_core.report.results` reads the results table of ``docs/results.md``.

Example::

    report = build_report(ReportRequest(teacher_entry, (vanilla_entry, amd_entry)))
    write_report(Path("report.html"), report)

This layer sits above :mod:`kd_core.views` and below the command line.
"""
