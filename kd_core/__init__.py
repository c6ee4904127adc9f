"""kd_core: the library behind the angular knowledge-distillation workbench.

Everything here works without Streamlit: losses (``kd_core.losses``), figure builders
(``kd_core.figures``) and, as the project grows, models, data, training and analysis.
"""

__version__ = "0.1.0"
