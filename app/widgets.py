"""Widgets that keep their value across pages.

Streamlit forgets the state of widgets not drawn on a page; these helpers keep the value in an
``etgnn_*`` session-state key instead:
``st.selectbox(label, options, **keep_widget(widget_key, store_key, options, default))``, or
``**kept(key, default, options)`` for the usual store key ``etgnn_<key>``.
"""

from __future__ import annotations

import streamlit as st


def keep_widget(widget_key: str, store_key: str, options: list | None = None, default=None) -> dict:
    """Keep a widget's value across pages: ``st.selectbox(..., **keep_widget("k", "etgnn_k", options))``.

    Streamlit forgets a widget's state on a page that does not draw it; the value lives in
    ``st.session_state[store_key]`` instead, is given to the widget before it is drawn (falling back
    to ``default`` or the first option when it is not among ``options``), and is copied back by the
    returned ``on_change`` callback.  Returns the widget's ``key``, ``on_change`` and ``args``.
    """
    value = st.session_state.get(store_key, default)
    if options is not None and value not in options:
        value = default if default in options else (options[0] if options else None)
    st.session_state[store_key] = value
    st.session_state[widget_key] = value
    return {"key": widget_key, "on_change": _copy_state, "args": (widget_key, store_key)}


def kept(key: str, default, options: list | None = None) -> dict:
    """Widget kwargs that keep its value across pages (stored as ``etgnn_<key>``)."""
    return keep_widget(key, f"etgnn_{key}", options, default)


def _copy_state(widget_key: str, store_key: str) -> None:
    st.session_state[store_key] = st.session_state.get(widget_key)
