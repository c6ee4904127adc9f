"""Home: what AMD is, its formula, and the geometry of the angular margin.

The first page a server draws: it imports no torch (``tests/pages/test_light_start.py``), so it
is drawn while ``serve.py`` is still loading it."""

import streamlit as st

from app_pages._shared import MARGIN_SLIDER, Workspace, data_table, preload_plotly, workspace
from kd_core.figures.margin import boundary_angle, margin_figure
from kd_core.losses.amd_constants import DEFAULT_LOCAL_WEIGHT, DEFAULT_SCALE
from kd_core.views.home import checkpoint_name, report_problem, workspace_records
from kd_core.workspace import CheckpointEntry, bundled_checkpoints


@st.cache_data(show_spinner=False, max_entries=32)
def _margin_figure(margin: float, scale: float) -> str:
    """The margin figure's SVG, built once per (margin, scale) for every session."""
    return margin_figure(margin, scale)


def _report_file(ws: Workspace) -> str:
    """The workspace's HTML report, built when the button is clicked (the report's modules,
    torch, scipy and the figure builders, are imported then, not on every visit of Home)."""
    from kd_core.report.build import ReportRequest
    from kd_core.report.html import report_file

    request = ReportRequest(ws.teacher, ws.students, ws.dataset, ws.split, ws.samples, ws.data_root)
    return report_file(request)


def _class_count_from_weights(entry: CheckpointEntry) -> int:
    """The class count of ``entry``'s cached model (imports torch: only for a file that records
    no count beside it)."""
    from app_pages._models import load_model

    return load_model(entry).loaded.num_classes


def _report_problem(ws: Workspace) -> str | None:
    """Why the workspace cannot be reported (checked before the button: the report itself is
    built after the click), or ``None``."""
    if not ws.students:
        return "Choose at least one student in the sidebar to make a report of the workspace."
    return report_problem(ws.entries, _class_count_from_weights)


st.title("Angular margin-based distillation (AMD)")
st.markdown(
    "AMD (Jeon et al., *Neurocomputing* 2023, "
    "[arXiv 2302.14130](https://arxiv.org/abs/2302.14130)) is a feature-distillation loss: "
    "the student learns **where** the teacher attends, not the teacher's features themselves. "
    "Each stage output is reduced to an attention map $q$ with unit L2 norm, so $q$ is a "
    "point on a hypersphere and every entry $q_i$ is the cosine of the angle $\\theta_i$ "
    "between that point and the axis of position $i$. Working with angles removes the "
    "overall magnitude of the features (and the channel count, which may differ between "
    "teacher and student); what is left is how the attention is distributed over positions. "
    "An angular margin $m > 1$ then separates strongly attended (positive) positions from "
    "the background (negative) more sharply, and the student is asked to reproduce that "
    "separation."
)

st.header("Your workspace")
ws = workspace()
records = workspace_records(ws.teacher, ws.students)
if records:
    data_table(records, file_name="workspace.csv", key="home_workspace_csv")
    st.caption(
        f"Analyses use {ws.samples:,} images of the {ws.split} split of {ws.dataset}. Change "
        "the teacher, students and data in the sidebar; every page follows."
    )
    problem = _report_problem(ws)
    if problem:
        st.caption(problem)
    else:
        st.download_button(
            "Report of this workspace (HTML)",
            lambda: _report_file(ws),
            file_name="amd_report.html",
            mime="text/html",
            on_click="ignore",
            key="home_report",
            help="One HTML file that opens offline, with no network: this table, the θ "
            "histograms and summaries per stage, the attention maps of 8 images with their "
            "agreement, the 2-D embedding and CKA (and the results table for the bundled "
            "teacher). Built when you click: up to half a minute. The command line makes the "
            "same file: `python -m kd_core report OUT.html`.",
        )
else:
    st.info("No checkpoint yet: upload one in the Checkpoint inspector or train one in Distill.")

bundled = bundled_checkpoints()
if bundled:
    with st.expander(f"The {len(bundled)} bundled checkpoints and their accuracy"):
        data_table(
            [
                {
                    "checkpoint": checkpoint_name(entry),
                    "role": entry.role,
                    "top-1 (%)": entry.top1,
                    "key": entry.key,
                }
                for entry in bundled
            ],
            file_name="bundled_checkpoints.csv",
            key="home_bundled_csv",
        )
        st.caption(
            "Top-1 of each shipped file on the whole `shapes` test split. Every student learnt "
            "from the bundled teacher with the same recipe and seed; pick any of them in the "
            "sidebar. Three seeds of each method, with confidence intervals and what each "
            "student took from its teacher: `docs/results.md` (`make table`)."
        )

st.header("The loss of one layer")
st.markdown(
    "For a stage output $F$ of shape $B \\times C \\times H \\times W$, with scale $s$ "
    "and margin $m$ (defaults $s = 64$, $m = 1.35$):"
)
st.latex(
    r"a = \sum_c F_c^2, \qquad q = \frac{a}{\lVert a \rVert_2 + 10^{-6}}, \qquad"
    r"\theta = \arccos q \in [0^\circ, 90^\circ]"
)
st.latex(
    r"\mathrm{pos} = s\cos(m\theta), \qquad \mathrm{neg} = s\,(1 - q), \qquad"
    r"\mathrm{amd} = \mathrm{pos} - \log\!\left(e^{\mathrm{pos}} + e^{\mathrm{neg}}\right)"
    r"= -\operatorname{softplus}(\mathrm{neg} - \mathrm{pos})"
)
st.latex(
    r"L = \frac{1}{3} \sum_{x \in \{\mathrm{amd},\, \mathrm{pos},\, \mathrm{neg}\}}"
    r"\operatorname{mse}\!\left(\hat x_{\mathrm{student}},\, \hat x_{\mathrm{teacher}}\right),"
    r"\qquad \hat x = \frac{x}{\lVert x \rVert_2}"
)
st.markdown(
    "The norms and the MSE run over the $H \\cdot W$ positions of each sample; the teacher "
    "side carries no gradient. One such loss per distilled stage; they are summed and "
    "weighted like attention transfer ($\\beta = 1000$ in the usual CIFAR-100 recipe)."
)
st.subheader("Global + local variant")
st.markdown(
    "The globally normalised map $q$ is also cut into its four $2 \\times 2$ quadrants $Q$ "
    "(not re-normalised), and the same loss is applied to each:"
)
st.latex(
    r"L_{\mathrm{G+L}} = w \cdot \frac{1}{4} \sum_{Q} L_Q + (1 - w)\, L,"
    rf"\qquad w = {DEFAULT_LOCAL_WEIGHT:g}"
)

st.header("The geometry of the margin")
st.markdown(
    "A position is positive where $\\mathrm{pos} > \\mathrm{neg}$, i.e. where "
    "$\\cos(m\\theta) > 1 - \\cos\\theta$. Without a margin the boundary is at 60°; a larger "
    "margin moves it to smaller angles, so fewer, more strongly attended positions count as "
    "positive. The attentive weight $e^{\\mathrm{amd}} = \\sigma(\\mathrm{pos} - \\mathrm{neg})$ "
    "is a soft step at the boundary; the scale $s$ sets how sharp it is."
)
controls, metrics = st.columns([2, 1])
with controls:
    margin = st.slider(
        "Angular margin m",
        **MARGIN_SLIDER,
        help="Multiplies the angle in pos = s·cos(mθ). 1 means no margin; the paper uses 1.35.",
    )
    scale = st.select_slider(
        "Scale s",
        options=[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
        value=DEFAULT_SCALE,
        format_func=lambda value: f"{value:g}",
        help="Multiplies pos and neg; it sharpens σ(pos − neg) but does not move the boundary.",
    )
with metrics:
    angle = boundary_angle(margin)
    no_margin = boundary_angle(1.0)
    st.metric(
        "Boundary angle, chosen margin",
        f"{angle:.1f}°",
        delta=None if round(angle - no_margin, 1) == 0 else f"{angle - no_margin:+.1f}° vs m = 1",
        delta_color="off",
        help="Positions whose angle θ is smaller than this are positive (pos > neg).",
    )
    st.metric(
        "Boundary angle, no margin (m = 1)",
        f"{no_margin:.1f}°",
        help="cos θ = 1 − cos θ, i.e. q = 1/2.",
    )
# An SVG image, not a plotly chart: plotly's JavaScript (4.7 MB) was the slowest thing a new
# session's browser loaded for Home (benchmarks/bench_app.py, README).
figure = _margin_figure(margin, scale)
st.image(figure, width="stretch")
st.download_button(
    "Figure (SVG)",
    figure,
    file_name=f"amd_margin_m{margin:g}_s{scale:g}.svg",
    mime="image/svg+xml",
    on_click="ignore",
    key="home_margin_svg",
    help="The figure above as a vector file, for papers and slides.",
)
preload_plotly()
