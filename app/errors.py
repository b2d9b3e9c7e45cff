"""Errors on a page: one ``st.error`` line, never a traceback.

``show_error(exc, context="")``: one line for StructureError / DataError / ModelLoadError /
ValueError (their message is already one line); anything else becomes "Unexpected error ..." and
its traceback goes to the server log, never to the page.  ``with page_guard("..."):`` wraps a
page's work with show_error.
"""

from __future__ import annotations

import contextlib
import logging

import streamlit as st

from etgnn_core.data import DataError
from etgnn_core.registry import ModelLoadError
from etgnn_core.structure import StructureError

log = logging.getLogger("etgnn_studio")

_EXPECTED = (StructureError, DataError, ModelLoadError, ValueError)  # WorkerCrashed is a ValueError


def show_error(exc: BaseException, context: str = "") -> None:
    """Show ``exc`` as one ``st.error`` line; log the traceback (never shown in the page)."""
    prefix = f"{context}: " if context else ""
    if isinstance(exc, _EXPECTED):
        msg = " ".join(str(exc).split()) or exc.__class__.__name__
        log.info("%s%s", prefix, msg, exc_info=exc)
        st.error(prefix + msg, icon=":material/error:")
    else:
        log.error("%sunexpected %s", prefix, exc.__class__.__name__, exc_info=exc)
        detail = " ".join(str(exc).split())[:300]
        st.error(
            f"{prefix}Unexpected error ({exc.__class__.__name__}: {detail}). The rest of the app keeps "
            "working; the details are in the server log.",
            icon=":material/error:",
        )


@contextlib.contextmanager
def page_guard(context: str = ""):
    """``with page_guard(): ...`` -- any exception in the block becomes a :func:`show_error` line."""
    try:
        yield
    except Exception as exc:  # Streamlit's stop / rerun are BaseExceptions and pass through
        show_error(exc, context)
