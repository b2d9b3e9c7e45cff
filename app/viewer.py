"""A 3Dmol.js page (:func:`etgnn_core.viz.viewer_html`) in which clicking an atom reports its index."""

from __future__ import annotations

import hashlib
import json

import streamlit as st

_PICK_SCRIPT = """<script>
(function () {
  var v = window.etgnnViewer;
  if (!v) return;
  v.getModel(0).setClickable({}, true, function (atom) {
    try { window.parent.postMessage({etgnnPick: atom.index, etgnnView: %(view)s}, "*"); } catch (err) {}
  });
  v.render();
})();
</script>
"""

_PICKER_JS = """
export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let frame = parentElement.querySelector("iframe");
  if (!frame) {
    frame = document.createElement("iframe");
    frame.setAttribute("title", "3D structure: click an atom to inspect it");
    frame.style.border = "0";
    frame.style.width = "100%";
    parentElement.appendChild(frame);
  }
  frame.style.height = data.height + "px";
  if (frame.dataset.etgnnHash !== data.hash) {  // same page: keep the iframe (and the camera)
    frame.dataset.etgnnHash = data.hash;
    frame.srcdoc = data.html;
  }
  const onMessage = (ev) => {
    if (ev.source !== frame.contentWindow || !ev.data || ev.data.etgnnView !== data.view) return;
    if (Number.isInteger(ev.data.etgnnPick)) setTriggerValue("picked", ev.data.etgnnPick);
  };
  window.addEventListener("message", onMessage);
  return () => window.removeEventListener("message", onMessage);
}
"""

_picker = None


def clickable_viewer(html: str, *, view_id: str, height: int, key: str, on_pick=None):
    """Show a page of :func:`etgnn_core.viz.viewer_html` (built with ``view_id``) in a small custom
    component where clicking an atom reports its index (plotly cannot pick points in 3D).

    ``on_pick(index)`` is called (before the rerun's script) when the user clicks an atom; the return
    value's ``picked`` is that index in the run that follows a click, else None.  The camera is kept
    while ``html`` is unchanged, and restored by the viewer itself when the page changes.
    """
    global _picker
    if _picker is None:
        _picker = st.components.v2.component("etgnn_atom_picker", js=_PICKER_JS)
    page = html.replace("</body>", _PICK_SCRIPT % {"view": json.dumps(view_id)} + "</body>", 1)
    digest = hashlib.sha1(page.encode()).hexdigest()

    def changed():
        value = st.session_state.get(key)
        picked = getattr(value, "picked", None) if value is not None else None
        if picked is None and isinstance(value, dict):
            picked = value.get("picked")
        if picked is not None and on_pick is not None:
            on_pick(int(picked))

    return _picker(key=key, data={"html": page, "hash": digest, "height": height, "view": view_id},
                   height=height, on_picked_change=changed)
