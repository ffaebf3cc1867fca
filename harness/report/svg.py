"""Small inline-SVG charts written by hand: no JavaScript, no library, nothing fetched.

Why by hand: the report must open from a CI artifact store or a mail attachment, where
scripts and external assets are blocked.  Four shapes cover every plot we need:
horizontal stacked bars (boot phases), horizontal bars with p10–p90 whiskers (probe
figures), sparklines with a p10–p90 band (history of a figure), and a grid of outcome
cells (history of tests).  Every mark carries a ``<title>`` so hovering shows the number.
No element ids are used, so several charts can share one page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

FONT = "font-family=\"system-ui,-apple-system,'Segoe UI',Roboto,sans-serif\" font-size=\"12\""
LABEL_W = 230
ROW_H = 22
BAR_H = 14

# Okabe–Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999")
VERDICT_COLOURS = {"passed": "#2e7d32", "failed": "#c62828", "error": "#6a1b9a", "skipped": "#9e9e9e"}
FAMILY_COLOURS = {"aesni": "#0072B2", "kl": "#E69F00"}


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.3g}"


def fmt(v: float) -> str:
    """A value for a label: three significant digits, no exponent below a million."""
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(math.ceil(top / step) + 1)]


def _open(width: int, height: int, label: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" {FONT}>',
            f"<title>{escape(label)}</title>"]


def _axis(out: list[str], ticks: list[float], x0: float, scale: float, y_top: float, y_bottom: float,
          unit: str) -> None:
    for t in ticks:
        x = x0 + t * scale
        out.append(f'<line x1="{_num(x)}" y1="{_num(y_top)}" x2="{_num(x)}" y2="{_num(y_bottom)}" '
                   'stroke="#ddd" stroke-width="1"/>')
        out.append(f'<text x="{_num(x)}" y="{_num(y_bottom + 14)}" text-anchor="middle" fill="#555">'
                   f"{escape(fmt(t))}</text>")
    out.append(f'<text x="{_num(x0 + ticks[-1] * scale)}" y="{_num(y_bottom + 28)}" text-anchor="end" '
               f'fill="#555">{escape(unit)}</text>')


def _legend(out: list[str], items: Sequence[tuple[str, str, str]], x: float, y: float) -> None:
    """Legend entries (label, fill, extra rect attributes) in one row starting at (x, y)."""
    for text, colour, extra in items:
        out.append(f'<rect x="{_num(x)}" y="{_num(y - 10)}" width="12" height="12" fill="{colour}" {extra}/>')
        out.append(f'<text x="{_num(x + 16)}" y="{_num(y)}">{escape(text)}</text>')
        x += 28 + 7 * len(text)


def stacked_bars(title: str, rows: Sequence[tuple[str, Sequence[tuple[str, float]]]],
                 colours: Mapping[str, str], *, unit: str = "seconds", width: int = 900) -> str:
    """One horizontal bar per row, made of consecutive segments (e.g. boot phases per guest)."""
    top = max((sum(v for _, v in segs) for _, segs in rows), default=0.0)
    ticks = nice_ticks(top)
    plot_w = width - LABEL_W - 70
    scale = plot_w / ticks[-1]
    y0 = 34
    height = y0 + ROW_H * len(rows) + 40
    out = _open(width, height, title)
    _legend(out, [(k, c, "") for k, c in colours.items()], LABEL_W, 16)
    _axis(out, ticks, LABEL_W, scale, y0 - 4, y0 + ROW_H * len(rows), unit)
    for i, (name, segs) in enumerate(rows):
        y = y0 + i * ROW_H
        out.append(f'<text x="{LABEL_W - 8}" y="{y + BAR_H - 2}" text-anchor="end">{escape(name)}</text>')
        x = float(LABEL_W)
        for seg, v in segs:
            w = v * scale
            out.append(f'<rect x="{_num(x)}" y="{y}" width="{_num(max(w, 0.5))}" height="{BAR_H}" '
                       f'fill="{colours.get(seg, "#999")}"><title>{escape(f"{name}: {seg} {v:.2f} s")}</title></rect>')
            x += w
        total = sum(v for _, v in segs)
        out.append(f'<text x="{_num(x + 4)}" y="{y + BAR_H - 2}" fill="#333">{escape(f"{total:.1f} s")}</text>')
    out.append("</svg>")
    return "\n".join(out)


@dataclass(frozen=True)
class RangeBar:
    group: str  # rows of one group are drawn together under its name
    label: str
    median: float
    p10: float
    p90: float
    colour: str
    faded: bool = False  # e.g. an emulated figure: drawn lighter with a dashed outline
    note: str = ""


def range_bars(title: str, bars: Sequence[RangeBar], *, unit: str, legend: Sequence[tuple[str, str, bool]] = (),
               width: int = 900) -> str:
    """Horizontal bars to the median with a p10–p90 whisker, grouped (e.g. figures per guest).

    The axis ends at twice the largest median at most: a whisker beyond it is cut and ends in an
    arrow, so one long-tailed figure does not squash every bar (its tooltip keeps the numbers).
    """
    top = min(max((max(b.p90, b.median) for b in bars), default=0.0),
              2 * max((b.median for b in bars), default=0.0))
    ticks = nice_ticks(top)
    plot_w = width - LABEL_W - 130
    scale = plot_w / ticks[-1]
    x_end = LABEL_W + plot_w
    rows: list[tuple[str, RangeBar | None]] = []
    group = None
    for bar in bars:
        if bar.group != group:
            rows.append((bar.group, None))
            group = bar.group
        rows.append((bar.label, bar))
    y0 = 34
    height = y0 + ROW_H * len(rows) + 40
    out = _open(width, height, title)
    _legend(out, [(t, c, 'fill-opacity="0.45" stroke="#333" stroke-dasharray="3 2"' if faded else "")
                  for t, c, faded in legend], LABEL_W, 16)
    _axis(out, ticks, LABEL_W, scale, y0 - 4, y0 + ROW_H * len(rows), unit)
    for i, (text, b) in enumerate(rows):
        y = y0 + i * ROW_H
        if b is None:
            out.append(f'<text x="8" y="{y + BAR_H - 2}" font-weight="bold">{escape(text)}</text>')
            continue
        style = 'fill-opacity="0.45" stroke="#333" stroke-dasharray="3 2"' if b.faded else ""
        tip = f"{b.group} {b.label}: median {fmt(b.median)}, p10 {fmt(b.p10)}, p90 {fmt(b.p90)} {unit}"
        tip += f" ({b.note})" if b.note else ""
        out.append(f'<text x="{LABEL_W - 8}" y="{y + BAR_H - 2}" text-anchor="end">{escape(text)}</text>')
        out.append(f'<rect x="{LABEL_W}" y="{y}" width="{_num(max(b.median * scale, 0.5))}" height="{BAR_H}" '
                   f'fill="{b.colour}" {style}><title>{escape(tip)}</title></rect>')
        x10, x90, ym = LABEL_W + b.p10 * scale, min(LABEL_W + b.p90 * scale, x_end), y + BAR_H / 2
        end = (f"M{_num(x90 - 5)} {_num(ym - 4)}L{_num(x90)} {_num(ym)}L{_num(x90 - 5)} {_num(ym + 4)}"
               if b.p90 * scale > plot_w else f"M{_num(x90)} {_num(ym - 4)}V{_num(ym + 4)}")
        out.append(f'<path d="M{_num(x10)} {_num(ym)}H{_num(x90)}M{_num(x10)} {_num(ym - 4)}V{_num(ym + 4)}'
                   f'{end}" stroke="#222" stroke-width="1.2" fill="none"/>')
        out.append(f'<text x="{_num(max(x90, LABEL_W + b.median * scale) + 5)}" y="{y + BAR_H - 2}" fill="#333">'
                   f"{escape(fmt(b.median) + (' ' + b.note if b.note else ''))}</text>")
    out.append("</svg>")
    return "\n".join(out)


def sparkline(points: Sequence[tuple[float, float, float] | None], *, colour: str = "#0072B2",
              width: int = 180, height: int = 34, label: str = "") -> str:
    """A series of (median, p10, p90), oldest first: the median as a line over its p10–p90 band; gaps for None."""
    values = [v for p in points if p is not None for v in p]
    out = _open(width, height, label or "trend")
    if not values:
        out.append("</svg>")
        return "\n".join(out)
    lo, hi = min(values), max(values)
    span = (hi - lo) or abs(hi) or 1.0
    pad = 3
    n = max(len(points) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return pad + i * (width - 2 * pad) / n, height - pad - (v - lo) / span * (height - 2 * pad)

    segments: list[list[tuple[int, tuple[float, float, float]]]] = [[]]
    for i, p in enumerate(points):
        if p is None:
            segments.append([])
        else:
            segments[-1].append((i, p))
    for seg in (s for s in segments if s):
        upper = [xy(i, p[2]) for i, p in seg]
        lower = [xy(i, p[1]) for i, p in reversed(seg)]
        band = " ".join(f"{_num(x)},{_num(y)}" for x, y in upper + lower)
        out.append(f'<polygon points="{band}" fill="{colour}" fill-opacity="0.18" stroke="none"/>')
        line = " ".join(f"{_num(x)},{_num(y)}" for x, y in (xy(i, p[0]) for i, p in seg))
        out.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        for i, (m, p10, p90) in seg:
            x, y = xy(i, m)
            out.append(f'<circle cx="{_num(x)}" cy="{_num(y)}" r="2" fill="{colour}">'
                       f"<title>{escape(f'run {i + 1}: median {fmt(m)} (p10 {fmt(p10)}, p90 {fmt(p90)})')}</title>"
                       "</circle>")
    out.append("</svg>")
    return "\n".join(out)


def outcome_grid(title: str, runs: Sequence[str], rows: Sequence[tuple[str, Sequence[str | None]]], *,
                 cell: int = 16, label_w: int = 420) -> str:
    """Tests (rows) × runs (columns, oldest first), each cell coloured by the test's outcome in that run."""
    top = 30
    width = label_w + cell * max(len(runs), 1) + 20
    height = top + cell * len(rows) + 10
    out = _open(width, height, title)
    _legend(out, [(k, c, "") for k, c in VERDICT_COLOURS.items()] + [("absent", "#fff", 'stroke="#bbb"')], 8, 16)
    for i, (name, outcomes) in enumerate(rows):
        y = top + i * cell
        shown = name if len(name) <= 64 else "…" + name[-63:]
        out.append(f'<text x="{label_w - 6}" y="{y + cell - 4}" text-anchor="end"><title>{escape(name)}</title>'
                   f"{escape(shown)}</text>")
        for j, o in enumerate(outcomes):
            fill = VERDICT_COLOURS.get(o or "", "#fff")
            tip = escape(f"{runs[j]}: {o or 'absent'}")
            out.append(f'<rect x="{label_w + j * cell}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{fill}" '
                       f'stroke="#bbb" stroke-width="0.5"><title>{tip}</title></rect>')
    out.append("</svg>")
    return "\n".join(out)
