"""Views: the logic of the app's pages, as plain data and without Streamlit.

One module per page or concern says what a page offers (the choices of its controls, the
forms it turns into configurations), the tables it shows, the keys it caches results by and
the text it offers for download: :mod:`~kd_core.views.angular` (Angular distributions),
:mod:`~kd_core.views.embedding` (Feature embedding), :mod:`~kd_core.views.image_browser`
(browsing a dataset and explaining one image: the Attention maps page),
:mod:`~kd_core.views.distill` (Distill), :mod:`~kd_core.views.runs` (Runs) and
:mod:`~kd_core.views.home` (Home: the workspace table).

This layer sits above the math (:mod:`kd_core.analysis`) and the engine
(:mod:`kd_core.training`), which never import it; the pages (``app_pages/``) only lay out
widgets and call it. ``tests/test_layering.py`` enforces the order.
"""
