"""A failing run as a space-time diagram: one line per process, its last events
left to right, each message an arrow from its sender's line to its receiver's,
faults in red. A small standalone SVG in an HTML page (the cluster view's
diagram draws one order's three services in the browser; this one draws every
process of the simulation)."""

from __future__ import annotations

import html

from bookstore.simulation.runner import Result

LANES = (
    "orchestrator", "transaction-verification", "fraud-detection", "suggestions", "queue",
    "payment", "db1", "db2", "db3", "x1", "x2", "x3", "x4",
)  # fmt: skip
SHOWN = 160
LEFT, STEP, TOP, GAP = 190, 14, 40, 34


def _lane_y(name: str) -> int:
    return TOP + LANES.index(name) * GAP


def svg(result: Result) -> str:
    events = result.trace[-SHOWN:]
    width = LEFT + STEP * (len(events) + 2)
    height = TOP + GAP * len(LANES)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        ' font-family="monospace" font-size="11">',
        '<defs><marker id="a" markerWidth="6" markerHeight="6" refX="5" refY="3" orient="auto">'
        '<path d="M0,0 L6,3 L0,6 z" fill="#555"/></marker></defs>',
    ]
    for name in LANES:
        y = _lane_y(name)
        out.append(f'<text x="8" y="{y + 4}">{name}</text>')
        out.append(f'<line x1="{LEFT}" y1="{y}" x2="{width}" y2="{y}" stroke="#ccc"/>')
    for i, line in enumerate(events):
        x = LEFT + STEP * (i + 1)
        _, _, what = line.partition(" ")
        title = f"<title>{html.escape(line)}</title>"
        src, arrow, rest = what.partition(">")
        dst = rest.split(" ", 1)[0]
        if arrow and src in LANES and dst in LANES:
            y1, y2 = _lane_y(src), _lane_y(dst)
            out.append(
                f'<line x1="{x - STEP}" y1="{y1}" x2="{x}" y2="{y2}" stroke="#555"'
                f' marker-end="url(#a)">{title}</line>'
            )
        elif what.startswith(("fault", "restart", "resume", "heal")):
            out.append(
                f'<rect x="{x - 3}" y="{TOP - 20}" width="6" height="{height - TOP}"'
                f' fill="#d33" opacity="0.35">{title}</rect>'
            )
    out.append("</svg>")
    return "\n".join(out)


def page(result: Result, text: str) -> str:
    return (
        "<!doctype html><meta charset='utf-8'>"
        f"<title>bookstore simulate: seed {result.seed}</title>"
        f"<h1>Seed {result.seed}</h1><pre>{html.escape(text)}</pre>"
        f"<p>The last {min(SHOWN, len(result.trace))} events of the failing prefix"
        " (hover for each one):</p>"
        f"{svg(result)}"
    )
