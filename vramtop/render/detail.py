"""The detail panel (d / Enter): everything known about the selected process.

Where it sits: ``screen.py`` draws it as an overlay from the selected :class:`ProcView`, the
render process's :class:`Knowledge` and the shm history. Sections whose data comes from actors
that have not reported (enricher, analyzer, deep mode, scraper) say why they are empty and what
would fill them, instead of silently showing nothing. The deep-mode lines are ``deep_panel.py``'s.
"""

from __future__ import annotations

import math
import time

from vramtop.analysis.model import UNKNOWN
from vramtop.config import Config
from vramtop.fmt import size
from vramtop.render.deep_panel import deep_lines
from vramtop.render.grid import Grid, Style, wrap
from vramtop.render.history import History
from vramtop.render.model import Knowledge, ProcView
from vramtop.render.widgets import box, chart, duration, phase_badge, rate, verdict_style
from vramtop.scrape.model import ServerMetrics

LABEL = Style(fg="muted", bg="panel")
TEXT = Style(fg="text", bg="panel")
HEAD = Style(fg="accent", bg="panel", bold=True)
NOTE = Style(fg="muted", bg="panel")

Line = tuple[str, Style]


def _wrap(text: str, width: int) -> list[str]:
    return wrap(text, max(10, width))  # in cells: a CJK path takes two per glyph


def _field(label: str, value: str) -> Line:
    return f"{label:<12}{value}", TEXT


def detail_lines(
    view: ProcView, knowledge: Knowledge, config: Config, width: int, accessible: bool
) -> list[Line]:
    row, e, a = view.row, view.enrichment, view.analysis
    out: list[Line] = [("process", HEAD)]
    start = row.identity.start_time
    age = duration(time.time() - start) if start else "unknown"
    out.append(_field("PID", f"{row.identity.pid}   started {age} ago   GPU {row.gpu_index}"))
    out.append(_field("user", view.user + ("" if row.same_user else "  (another user)")))
    vram = "N/A" if math.isnan(view.vram) else size(view.vram)
    share = "" if math.isnan(view.gpu_fraction) else f"  ({view.gpu_fraction:.1%} of the GPU)"
    kind = view.proc.type_label if view.proc else "?"
    sm = "N/A" if math.isnan(view.sm) else f"{view.sm:.0f}%"
    out.append(_field("memory", f"{vram}{share}   type {kind}   SM {sm}"))
    command = " ".join(e.cmdline) if e is not None and e.cmdline else view.command
    for i, part in enumerate(_wrap(command, width - 12)):
        out.append(_field("command" if i == 0 else "", part))
    out.append(("", TEXT))

    out.append(("where it runs", HEAD))
    if e is None:
        why = (
            "details of other users' processes are not read (security model)"
            if not row.same_user
            else "enricher: not reported for this process yet (framework, container, model files)"
        )
        out.append((why, NOTE))
    else:
        fw = e.framework or "not recognised"
        if e.framework_version:
            fw += f" {e.framework_version}"
        if e.framework_evidence:
            fw += f"   ({e.framework_evidence})"
        out.append(_field("framework", fw))
        c = e.container
        if c is None:
            out.append(_field("container", "none (runs on the host)"))
        else:
            ident = c.short_id or c.pod_uid or "?"
            inner = f"  PID {c.pid_in_container} inside" if c.pid_in_container else ""
            out.append(_field("container", f"{c.runtime} {ident}{inner}"))
        if e.parent_pid:
            out.append(_field("parent", f"PID {e.parent_pid}"))
        if e.model_files:
            for i, mf in enumerate(e.model_files[:6]):
                text = f"{size(mf.size_bytes):>7} {mf.kind:<12} {mf.path}"
                out.append(_field("model files" if i == 0 else "", text[: width - 12]))
            if len(e.model_files) > 6:
                out.append(_field("", f"… and {len(e.model_files) - 6} more"))
        else:
            out.append(_field("model files", "none open or mapped"))
    out.append(("", TEXT))

    out.append(("memory trend", HEAD))
    if a is None:
        why = (
            "analyzer: no verdict yet — it needs "
            f"{config.oom_prediction.min_sustained_samples} samples of this process"
            if knowledge.analysis_at
            else "analyzer: not reporting (phases, rates, verdicts and OOM ETAs come from it)"
        )
        out.append((why, NOTE))
    else:
        err = f" ± {rate(a.trend.rate_stderr_mib_s)}" if a.trend.rate_stderr_mib_s else ""
        shown = (
            "not yet (too few samples)"
            if a.trend.phase == UNKNOWN
            else f"{rate(a.trend.rate_mib_s)}{err}"
        )
        if config.display.phase_indicator:
            badge, _style = phase_badge(a.trend.phase, accessible)
            out.append((f"{'phase':<12}{badge}   rate {shown}", TEXT))
        else:
            out.append(_field("rate", shown))
        out.append(_field("verdict", a.verdict))
        out.append(_field("why", a.reason))
        if a.eta is not None:
            p = a.eta
            out.append(
                _field(
                    "OOM ETA",
                    f"~{duration(p.eta_s)} ({duration(p.eta_low_s)}-{duration(p.eta_high_s)}, "
                    f"confidence {p.confidence:.0%})  {p.rule}",
                )
            )
        else:
            out.append(_field("OOM ETA", "none predicted"))
        if a.segments:
            out.append(("PELT segments", HEAD))
            for seg in a.segments[:6]:
                span = duration(seg.end_ts - seg.start_ts)
                out.append((f"  {seg.label:<12}{span:>8}  {seg.delta_mib:+.0f} MiB", TEXT))
        else:
            # The analyzer says why it has none (ruptures missing); otherwise it has not
            # found a change point in this process's history yet.
            note = a.segments_note or "none found yet"
            out.append(_field("segments", f"PELT change points: {note}"))
    out.append(("", TEXT))
    out.append(("allocator (deep mode)", HEAD))
    out.extend(deep_lines(view, width, accessible))
    out.append(("", TEXT))
    out.append(("inference server", HEAD))
    if not config.scraping.enable:
        out.append(("server metrics: scraping is off (scraping.enable = false)", NOTE))
    elif view.server is not None:
        out.extend(server_lines(view.server))
    else:
        ports = ", ".join(str(p) for p in config.scraping.allowed_ports)
        out.append(
            (f"server metrics: none found (inference servers on localhost ports {ports})", NOTE)
        )
    return out


def _count(n: int | None) -> str:
    return "n/a" if n is None else str(n)


def server_lines(s: ServerMetrics, now: float | None = None) -> list[Line]:
    """What the scraper read from this process's inference server, or why nothing."""
    out: list[Line] = [_field("server", f"{s.kind}   model {s.model or 'not reported'}")]
    if not s.url:
        out.append(_field("metrics", f"not read: {s.note}"))
        return out
    if s.read_at:
        kv = "n/a" if s.kv_cache_usage is None else f"{s.kv_cache_usage:.0%} used"
        if s.tokens_total:
            kv += f" of {s.tokens_total:,} tokens"
        if s.shared:
            kv += f"   (the server's figure, for its {len(s.processes)} GPU processes)"
        out.append(_field("KV cache", kv))
        out.append(_field("requests", f"{_count(s.running)} running, {_count(s.waiting)} waiting"))
        rate = "n/a" if s.preemptions_per_s is None else f"{s.preemptions_per_s:.2f}/s"
        out.append(_field("preemptions", rate))
        age = duration(max(0.0, (now or time.time()) - s.read_at))
        out.append(_field("read from", f"{s.url}   {age} ago   (PID {s.server_pid})"))
    else:
        out.append(_field("read from", f"{s.url}   no figures"))
    if s.note:
        out.append(_field("note", s.note))
    return out


def draw_detail(
    grid: Grid,
    view: ProcView | None,
    knowledge: Knowledge,
    config: Config,
    history: History,
    accessible: bool,
) -> None:
    w, h = grid.width, grid.height
    x0, y0 = 2, 1
    bw, bh = w - 4, h - 2
    title = "detail" if view is None else f"PID {view.pid} on GPU {view.row.gpu_index}"
    box(grid, x0, y0, bw, bh, title + "  (Esc closes)", accessible)
    inner = bw - 4
    y = y0 + 1
    if view is None:
        grid.put(x0 + 2, y, "no process selected", NOTE)
        return
    bottom = y0 + bh - 1
    chart_h = 5 if bh >= 26 else 3 if bh >= 18 else 0
    lines = detail_lines(view, knowledge, config, inner, accessible)
    while chart_h and len(lines) > bottom - y - chart_h - 2:
        chart_h = 3 if chart_h == 5 else 0  # text before the chart: it shrinks, then goes
    text_rows = bottom - y - (chart_h + 2 if chart_h else 0)
    for text, style in lines[: max(0, text_rows)]:
        style = verdict_style(text[12:]).but(bg="panel") if text.startswith("verdict") else style
        grid.put(x0 + 2, y, text, style, inner)
        y += 1
    if not chart_h:
        return
    values = history.process_used(view.row.slot, inner - 10)
    cy = bottom - chart_h - 1
    grid.put(x0 + 2, cy, "memory history", HEAD)
    finite = [v for v in values if not math.isnan(v)]
    if len(finite) < 2:
        grid.put(x0 + 18, cy, "no history yet (the sampler's rings fill once a tick)", NOTE)
        return
    grid.put(x0 + 18, cy, f"last {len(values)} samples", NOTE)
    rows = chart(values, inner - 10, chart_h, accessible)
    for i, line in enumerate(rows):
        label = size(max(finite)) if i == 0 else size(min(finite)) if i == len(rows) - 1 else ""
        grid.put(x0 + 2, cy + 1 + i, f"{label:>8} ", LABEL)
        grid.put(x0 + 11, cy + 1 + i, line, Style(fg="used", bg="panel"))
