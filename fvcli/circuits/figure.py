"""The circuit figure: a unit's picture on top, its strongest inputs' pictures below, kernels on the edges.

As in the Circuits thread's figures, each edge joins an input to the unit it feeds; its colour is the sign of the
connection (red excitatory, blue inhibitory: gallery/circuit_section.sign_rgb, the gallery's convention too), its
width the connection's strength relative to the strongest edge of its row, and the small heatmap where it leaves
the input is the expanded-weight kernel (the linear map from that input channel to the unit, over the positions of
the input layer). A deeper figure (`--depth 2`) hangs each input's own strongest inputs below it.

The figure is laid out once as a list of primitives (images, rectangles, lines, text) and drawn twice: as SVG text
(pictures embedded as PNG data URIs, so the file stands alone) and as a PNG with PIL. No plotting dependency.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..gallery.circuit_section import sign_rgb
from ..outputs import png_bytes

PIC = 96  # px of a picture
KER = 40  # px of a kernel heatmap
GAP_X = 18  # px between neighbouring nodes
ROW = PIC + KER + 78  # px from one row's pictures to the next's
TOP = 44  # px above the root picture (title, legend)
MAX_EDGE = 8.0  # px of the strongest edge
MIN_EDGE = 1.0


@dataclass(frozen=True)
class Node:
    """One unit in the figure; `kernel` and `weight` describe the edge to its parent (none for the root)."""

    label: str
    picture: np.ndarray | None  # (H, W, 3) uint8
    weight: float = 0.0
    kernel: tuple[tuple[float, ...], ...] | None = None
    children: tuple[Node, ...] = ()
    note: str = ""  # a second label line (the value)


@dataclass
class _Canvas:
    width: int = 0
    height: int = 0
    items: list[tuple] = field(default_factory=list)  # ("img", x, y, w, h, arr) | ("rect", x, y, w, h, rgb, edge)
    #                                                   | ("line", x1, y1, x2, y2, width, rgb) | ("text", x, y, s, size)


def _leaves(n: Node) -> int:
    return max(1, sum(_leaves(c) for c in n.children))


def _strongest(n: Node, row: int, at: int = 1) -> float:
    """The largest |weight| of the edges into row `row` (each row of edges is scaled on its own: the weights of
    different layers are not on one scale)."""
    if at == row:
        return max([abs(c.weight) for c in n.children] + [0.0])
    return max([_strongest(c, row, at + 1) for c in n.children] + [0.0])


def layout(root: Node, title: str, legend: str) -> _Canvas:
    """Place every node: leaves side by side, each parent centred over its children."""
    cell = PIC + GAP_X
    depth = 0
    level = [root]
    while any(n.children for n in level):
        level = [c for n in level for c in n.children]
        depth += 1
    c = _Canvas(max(_leaves(root) * cell + GAP_X, 520), TOP + depth * ROW + (KER + 16 if depth else 0) + PIC + 34)
    c.items.append(("text", GAP_X, 18, title, 15))
    c.items.append(("text", GAP_X, 34, legend, 11))
    wmax = [_strongest(root, r) or 1.0 for r in range(depth + 1)]
    lines: list[tuple] = []
    boxes: list[tuple] = []

    def place(n: Node, left: int, row: int) -> tuple[float, float]:
        x = left + (_leaves(n) * cell - cell) / 2 + GAP_X  # the picture's left edge
        y = TOP + row * ROW + (KER + 16 if row else 0)
        boxes.append((n, x, y))
        child_left = left
        for ch in n.children:
            cx, cy = place(ch, child_left, row + 1)
            child_left += _leaves(ch) * cell
            top = wmax[row + 1]
            width = MIN_EDGE + (MAX_EDGE - MIN_EDGE) * abs(ch.weight) / top
            rgb = sign_rgb(np.sign(ch.weight) * max(abs(ch.weight), 0.35 * top), top)
            lines.append(("line", x + PIC / 2, y + PIC + 28, cx + PIC / 2, cy - KER - 6, width, rgb))
        return x, y

    place(root, 0, 0)
    c.items.extend(lines)  # under the pictures
    for n, x, y in boxes:
        if n.picture is not None:
            c.items.append(("img", x, y, PIC, PIC, n.picture))
        else:
            c.items.append(("rect", x, y, PIC, PIC, (230, 230, 230), None))
        c.items.append(("text", x, y + PIC + 12, n.label, 11))
        if n.note:
            c.items.append(("text", x, y + PIC + 24, n.note, 10))
        if n.kernel:
            vmax = max((abs(v) for row in n.kernel for v in row), default=0.0)
            h, w = len(n.kernel), max(len(r) for r in n.kernel)
            s = KER / max(h, w)
            kx, ky = x + (PIC - w * s) / 2, y - KER - 6
            for j, row in enumerate(n.kernel):
                for i, v in enumerate(row):
                    c.items.append(("rect", kx + i * s, ky + j * s, s, s, sign_rgb(v, vmax), None))
            c.items.append(("rect", kx, ky, w * s, h * s, None, (150, 150, 150)))
    return c


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def to_svg(c: _Canvas) -> str:
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{c.width}" height="{c.height}" '
           f'viewBox="0 0 {c.width} {c.height}" font-family="sans-serif">',
           f'<rect width="{c.width}" height="{c.height}" fill="white"/>']
    for it in c.items:
        kind = it[0]
        if kind == "img":
            _, x, y, w, h, arr = it
            data = base64.b64encode(png_bytes(arr)).decode()
            out.append(f'<image x="{x:.1f}" y="{y:.1f}" width="{w}" height="{h}" href="data:image/png;base64,{data}"/>')
        elif kind == "rect":
            _, x, y, w, h, fill, edge = it
            f = f"rgb{tuple(fill)}" if fill else "none"
            s = f' stroke="rgb{tuple(edge)}" stroke-width="1"' if edge else ""
            out.append(f'<rect x="{x:.2f}" y="{y:.2f}" width="{w:.2f}" height="{h:.2f}" fill="{f}"{s}/>')
        elif kind == "line":
            _, x1, y1, x2, y2, w, rgb = it
            out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="rgb{tuple(rgb)}" '
                       f'stroke-width="{w:.2f}" stroke-linecap="round"/>')
        else:
            _, x, y, s, size = it
            out.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="#222">{_esc(s)}</text>')
    out.append("</svg>\n")
    return "\n".join(out)


def to_png(c: _Canvas) -> bytes:
    im = Image.new("RGB", (c.width, c.height), "white")
    draw = ImageDraw.Draw(im)
    fonts: dict[int, ImageFont.ImageFont] = {}
    for it in c.items:
        kind = it[0]
        if kind == "img":
            _, x, y, w, h, arr = it
            pic = Image.fromarray(arr)
            if pic.size != (w, h):
                pic = pic.resize((w, h), Image.BILINEAR)
            im.paste(pic, (round(x), round(y)))
        elif kind == "rect":
            _, x, y, w, h, fill, edge = it
            draw.rectangle([round(x), round(y), round(x + w) - 1, round(y + h) - 1], fill=tuple(fill) if fill else None,
                           outline=tuple(edge) if edge else None)
        elif kind == "line":
            _, x1, y1, x2, y2, w, rgb = it
            draw.line([(x1, y1), (x2, y2)], fill=tuple(rgb), width=max(1, round(w)))
        else:
            _, x, y, s, size = it
            if size not in fonts:
                fonts[size] = ImageFont.load_default(size=size)
            draw.text((x, y - size), s, fill=(34, 34, 34), font=fonts[size])
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
