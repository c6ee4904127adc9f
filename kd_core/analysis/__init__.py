"""Analysis behind every page: features of a teacher and its students, angular statistics,
attention and attributions, embeddings and similarity. Pure functions on tensors; no Streamlit.
"""
