"""QR codes drawn as inline SVG on the server (no script, no third-party request)."""

from __future__ import annotations

import io
import re

import segno
from markupsafe import Markup


def qr_svg(data: str, *, scale: int = 5) -> Markup:
    """The QR code with its quiet zone, drawn white on any page background.

    segno's `omitsize` writes a viewBox, so CSS can scale the drawing to any box without
    cropping it; width and height are then put back, equal to the viewBox, as the natural
    size for anything that ignores CSS.
    """
    buffer = io.BytesIO()
    segno.make(data, error="m").save(
        buffer,
        kind="svg",
        scale=scale,
        border=4,
        light="#fff",
        dark="#000",
        omitsize=True,
        xmldecl=False,
        svgns=True,
        title="QR code for your authenticator app",
        nl=False,
    )
    svg = buffer.getvalue().decode()
    size = re.search(r'viewBox="0 0 (\d+) (\d+)"', svg)
    if size is None:  # pragma: no cover - segno always writes it with omitsize
        raise RuntimeError("segno wrote no viewBox")
    svg = svg.replace("<svg ", f'<svg width="{size[1]}" height="{size[2]}" ', 1)
    # segno draws the SVG from the URI alone; no user text is interpolated as HTML.
    return Markup(svg)  # noqa: S704  # nosec B704
