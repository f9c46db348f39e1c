"""The HTML report: one self-contained file (inline CSS and SVG, no scripts, no fonts, no
network) with the machines, throughput against concurrency, latency percentiles, latency
against throughput across each concurrency sweep, energy per output token, the break-even
plot and a comparison against the first run.

`build_report(rows)` is pure: every chart is drawn with matplotlib
(`harness.analysis.report.charts`, the break-even plot `harness.analysis.breakeven.plot`)
and inlined as SVG; where matplotlib is absent the report says so and keeps its tables.
Rows imported from other tools (`source_tool`) are named with the tool that measured them.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from html import escape
from typing import Any

import pandas as pd

from harness import __version__
from harness.analysis import compare as cmp
from harness.analysis.breakeven.model import Assumptions, analyse, select_measurements
from harness.analysis.breakeven.plot import cost_plot_svg
from harness.analysis.breakeven.text import format_text
from harness.analysis.prices import load_catalog
from harness.analysis.report.charts import (
    BarGroup,
    Panel,
    Series,
    color,
    hbar_chart,
    inline_svg,
    line_chart,
    missing,
    xy_chart,
)
from harness.format import fmt

PERCENTILE_COLORS = {"p50": "#0072B2", "p90": "#E69F00", "p99": "#D55E00"}


@dataclass
class Run:
    """One run (machine + run id) in the report, with its letter and colour."""

    label: str
    rows: list[dict[str, Any]]
    color: str

    @property
    def first(self) -> dict[str, Any]:
        return self.rows[0]

    @property
    def synthetic(self) -> bool:
        return any(cmp.is_synthetic(r) for r in self.rows)

    def name(self, with_model: bool) -> str:
        """Legend name: 'A · host (GPU or CPU)', with the model when runs differ in it."""
        r = self.first
        hw = (f"{r.get('gpu_count') or 1}x {r['gpu_name']}" if r.get("gpu_name")
              else short_cpu(r.get("cpu_model")))
        text = f"{self.label} · {r.get('hostname') or r.get('machine_id') or '?'} ({hw})"
        if r.get("source_tool"):
            text += f" via {r['source_tool']}"
        if with_model:
            text += f" · {cmp.model_label(r)}"
        elif self.synthetic:
            text += " [synthetic]"
        return text


def short_cpu(model: Any) -> str:
    """A CPU model without the marketing noise: 'Intel Xeon Platinum 8480+'."""
    text = re.sub(r"\((R|TM)\)|CPU|Processor|@.*$", "", str(model or "CPU"), flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", text).strip() or "CPU"


def _num(v: Any) -> float | None:
    v = cmp.clean(v)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _cell(row: dict[str, Any], column: str, unit: str) -> str:
    """A row's figure for a table cell, through the one formatter."""
    return fmt(_num(row.get(column)), unit)


def make_runs(rows: list[dict[str, Any]]) -> list[Run]:
    """Rows grouped by run, lettered A, B, ... in the order given."""
    labels = cmp.side_letters()
    return [Run(next(labels), group, color(i))
            for i, group in enumerate(cmp.split_runs(rows))]


def _scenarios(runs: list[Run], mode: str) -> OrderedDict[tuple[str, str], None]:
    found: OrderedDict[tuple[str, str], None] = OrderedDict()
    for run in runs:
        for r in run.rows:
            if (r.get("load_mode") or "closed") == mode:
                found[(str(r.get("workload")), str(r.get("scenario")))] = None
    return found


def _rows_of(run: Run, workload: str, scenario: str, mode: str) -> list[dict[str, Any]]:
    return [r for r in run.rows if str(r.get("workload")) == workload
            and str(r.get("scenario")) == scenario and (r.get("load_mode") or "closed") == mode]


def _figure(svg: str, kind: str, caption: str = "") -> str:
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    wide = " wide" if kind.endswith(" wide") else ""
    return (f'<figure class="chart{wide}" data-kind="{kind.removesuffix(" wide")}">'
            f"{svg}{cap}</figure>")


def throughput_charts(runs: list[Run], with_model: bool) -> list[str]:
    """Output throughput against concurrency (closed loop) and offered rate (open loop)."""
    out = []
    for mode, x_col, x_label in (("closed", "concurrency", "concurrency (requests in flight)"),
                                 ("open", "request_rate_rps", "offered rate (requests/s)")):
        for workload, scenario in _scenarios(runs, mode):
            series = []
            for run in runs:
                pts = []
                synthetic = False
                for r in _rows_of(run, workload, scenario, mode):
                    x, y = _num(r.get(x_col)), _num(r.get("output_throughput_tok_s"))
                    if x is not None and y is not None:
                        pts.append((x, y, _num(r.get("output_throughput_tok_s_std"))))
                        synthetic |= cmp.is_synthetic(r)
                if pts:
                    name = run.name(with_model)
                    if synthetic and "[synthetic]" not in name:
                        name += " [synthetic]"
                    series.append(Series(name, pts, run.color, dashed=synthetic,
                                         marker_note="synthetic weights" if synthetic else ""))
            if series:
                vs = "concurrency" if mode == "closed" else "offered rate"
                out.append(_figure(line_chart(f"{workload}/{scenario}: output tok/s vs {vs}",
                                              series, x_label, "output tokens/s"),
                                   f"throughput-{mode}",
                                   "mean over repetitions, bar = ±1 std; dashed = synthetic "
                                   "weights" if any(s.dashed for s in series) else
                                   "mean over repetitions, bar = ±1 std"))
    return out


def _load_cat(run: Run, r: dict[str, Any]) -> str:
    text = f"{run.label} {cmp.load_label(r)}"
    return text + (" [synthetic]" if cmp.is_synthetic(r) else "")


def latency_charts(runs: list[Run]) -> list[str]:
    """TTFT and TPOT percentiles per scenario, one bar block per run and load level."""
    out = []
    scenarios = OrderedDict((k, None) for mode in ("closed", "open")
                            for k in _scenarios(runs, mode))
    for workload, scenario in scenarios:
        cats: list[str] = []
        picked: list[dict[str, Any]] = []
        for run in runs:
            for r in run.rows:
                if str(r.get("workload")) == workload and str(r.get("scenario")) == scenario:
                    cats.append(_load_cat(run, r))
                    picked.append(r)
        for metric, name in (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT")):
            groups = [BarGroup(p, [_num(r.get(f"{metric}_{p}")) for r in picked],
                               PERCENTILE_COLORS[p]) for p in ("p50", "p90", "p99")]
            if not any(v is not None for g in groups for v in g.values):
                continue
            out.append(_figure(hbar_chart(f"{workload}/{scenario}: {name} percentiles",
                                          cats, groups, f"{name} (ms)"),
                               f"latency-{metric}"))
    return out


def latency_throughput_charts(runs: list[Run], with_model: bool) -> list[str]:
    """TTFT p99 and TPOT p99 against aggregate output throughput across each closed-loop
    concurrency sweep: one line per run (machine and engine), points in rising
    concurrency, labelled c=N. Where the line bends up, more concurrency buys latency,
    not throughput."""
    out = []
    for workload, scenario in _scenarios(runs, "closed"):
        panels = [Panel("TTFT p99 (ms)", []), Panel("TPOT p99 (ms)", [])]
        for run in runs:
            rows = sorted((r for r in _rows_of(run, workload, scenario, "closed")
                           if _num(r.get("output_throughput_tok_s")) is not None),
                          key=lambda r: _num(r.get("concurrency")) or 0)
            synthetic = any(cmp.is_synthetic(r) for r in rows)
            name = run.name(with_model)
            if synthetic and "[synthetic]" not in name:
                name += " [synthetic]"
            for panel, col in zip(panels, ("ttft_ms_p99", "tpot_ms_p99")):
                pts = [(r, _num(r.get(col))) for r in rows]
                pts = [(r, y) for r, y in pts if y is not None]
                if pts:
                    panel.series.append(Series(
                        name, [(_num(r["output_throughput_tok_s"]) or 0.0, y, None)
                               for r, y in pts], run.color, dashed=synthetic,
                        marker_note="synthetic weights" if synthetic else "",
                        labels=[cmp.load_label(r) for r, _ in pts]))
        panels = [p for p in panels if p.series]
        if not panels:
            continue
        if len(panels) == 2 and [s.name for s in panels[0].series] != \
                [s.name for s in panels[1].series]:
            panels = panels[:1]  # one legend for both panels needs the same runs in each
        out.append(_figure(xy_chart(f"{workload}/{scenario}: p99 latency vs output tok/s",
                                    panels, "output tokens/s (all streams)"),
                           "latency-throughput wide",
                           "each point one concurrency level (c=N), rising along the line; "
                           "up and to the left is worse"))
    return out


def energy_charts(runs: list[Run], with_model: bool) -> list[str]:
    """Joules per output token against concurrency (closed loop) or offered rate (open
    loop), per scenario, for the rows that have an energy figure."""
    out = []
    for mode, x_col, x_label in (("closed", "concurrency", "concurrency (requests in flight)"),
                                 ("open", "request_rate_rps", "offered rate (requests/s)")):
        for workload, scenario in _scenarios(runs, mode):
            series = []
            for run in runs:
                pts, methods = [], set()
                for r in _rows_of(run, workload, scenario, mode):
                    x, j = _num(r.get(x_col)), _num(r.get("j_per_output_token"))
                    if x is not None and j is not None:
                        pts.append((x, j, None))
                        methods.add(f"{r.get('power_method') or '?'} via "
                                    f"{r.get('power_source') or '?'}")
                if not pts:
                    continue
                estimated = any("estimated" in m for m in methods)
                synthetic = any(cmp.is_synthetic(r) for r in run.rows)
                name = run.name(with_model) + (" (est.)" if estimated else "")
                if synthetic and "[synthetic]" not in name:
                    name += " [synthetic]"
                series.append(Series(name, pts, run.color, dashed=synthetic,
                                     marker_note=", ".join(sorted(methods))))
            if series:
                out.append(_figure(line_chart(f"{workload}/{scenario}: J per output token",
                                              series, x_label, "joules per output token"),
                                   "energy", "from the hardware energy counter over the "
                                   "measured window, lower is better; (est.) = estimated, "
                                   "not measured"))
    return out


def breakeven_section(rows: list[dict[str, Any]]) -> tuple[str | None, str | None, str]:
    """(plot SVG, text table, note) of the break-even model; None parts when not drawn."""
    try:
        catalog = load_catalog()
        measurements, notes = select_measurements(pd.DataFrame(rows))
        assumptions = Assumptions(
            electricity_usd_per_kwh=catalog.defaults.electricity_usd_per_kwh,
            pue=catalog.defaults.pue)
        result = analyse(measurements, catalog, assumptions, notes=notes)
    except Exception as exc:  # noqa: BLE001 - the rest of the report stays useful
        return None, None, f"break-even not computed: {exc}"
    text = None
    try:
        text = format_text(result)
    except Exception:  # noqa: BLE001
        text = None
    try:
        svg = cost_plot_svg(result)
    except Exception as exc:  # noqa: BLE001 - e.g. matplotlib missing
        return None, text, f"break-even plot not drawn: {exc}"
    return inline_svg(svg, "break-even: monthly cost against monthly volume"), text, ""


# ---------------------------------------------------------------- tables


def _table(headers: list[str], body: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body)
    return (f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


SYN_BADGE = '<span class="badge syn" title="random-weight model">synthetic</span>'


def machines_table(runs: list[Run]) -> str:
    """One line per run: hardware, OS, engine, model, when, power meter."""
    headers = ["run", "host", "CPU", "RAM", "GPU", "OS", "engine", "model", "workloads",
               "started (UTC)", "harness", "power"]
    body = []
    for run in runs:
        r = run.first
        gpu = (f"{r.get('gpu_count') or 1}× {escape(str(r['gpu_name']))}"
               + (f"<br><small>driver {escape(str(r['gpu_driver']))}</small>"
                  if r.get("gpu_driver") else "") if r.get("gpu_name") else "none")
        cpu = (f"{escape(short_cpu(r.get('cpu_model')))}<br><small>{r.get('cpu_cores') or '?'} "
               f"cores / {r.get('cpu_threads') or '?'} threads</small>")
        models = sorted({cmp.model_label(x) for x in run.rows})
        model = "<br>".join(escape(m.replace(" [synthetic]", "")) for m in models)
        if run.synthetic:
            model += " " + SYN_BADGE
        engine = escape(" ".join(str(v) for v in (r.get("backend"), "·", r.get("engine"),
                                                 r.get("engine_version")) if v))
        workloads = ", ".join(sorted({str(x.get("workload")) for x in run.rows}))
        started = min(str(x.get("started_at_utc") or "") for x in run.rows)
        power = escape(f"{r.get('power_method') or '?'} ({r.get('power_source') or '-'})")
        if r.get("source_tool"):
            engine += f"<br><small>measured by {escape(str(r['source_tool']))}</small>"
        body.append([
            f'<span class="swatch" style="background:{run.color}"></span><b>{run.label}</b>',
            escape(str(r.get("hostname") or r.get("machine_id") or "?"))
            + f"<br><small>{escape(str(r.get('machine_id') or ''))}</small>",
            cpu, escape(f"{fmt(_num(r.get('ram_gb')), 'gb')} GB"), gpu, escape(str(r.get("os") or "?")),
            engine, model, escape(workloads), escape(started.replace("T", " ")[:19]),
            escape(f"{r.get('harness_version') or '?'} {r.get('harness_commit') or ''}"),
            power,
        ])
    return _table(headers, body, "machines")


def results_table(runs: list[Run]) -> str:
    """Every row's headline figures."""
    headers = ["run", "workload/scenario", "load", "ok/req", "out tok/s", "total tok/s",
               "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "E2E p50", "J/out tok", "flags"]
    body = []
    for run in runs:
        for r in run.rows:
            flags = []
            if cmp.is_synthetic(r):
                flags.append(SYN_BADGE)
            if cmp.clean(r.get("noisy")):
                flags.append('<span class="badge warn">busy machine</span>')
            if r.get("status") == "partial":
                flags.append('<span class="badge warn">partial</span>')
            if cmp.clean(r.get("errors")):
                flags.append(f'<span class="badge warn">{r["errors"]} failed</span>')
            if r.get("source_tool"):
                flags.append(f'<span class="badge imp" title="{escape(str(r.get("notes") or ""))}'
                             f'">{escape(str(r["source_tool"]))}</span>')
            req = cmp.clean(r.get("requests")) or 0
            err = cmp.clean(r.get("errors")) or 0
            std = _num(r.get("output_throughput_tok_s_std"))
            out = _cell(r, "output_throughput_tok_s", "tok_s")
            out += f" ±{fmt(std, 'tok_s')}" if std else ""
            body.append([
                f'<span class="swatch" style="background:{run.color}"></span>{run.label}',
                escape(f"{r.get('workload')}/{r.get('scenario')}"), escape(cmp.load_label(r)),
                f"{req - err}/{req}", out, _cell(r, "total_throughput_tok_s", "tok_s"),
                _cell(r, "ttft_ms_p50", "ms"), _cell(r, "ttft_ms_p99", "ms"),
                _cell(r, "tpot_ms_p50", "ms"), _cell(r, "tpot_ms_p99", "ms"),
                _cell(r, "e2e_ms_p50", "ms"), _cell(r, "j_per_output_token", "j"),
                " ".join(flags),
            ])
    return _table(headers, body, "results num")


def imported_notes(runs: list[Run]) -> str:
    """The notes of imported rows, once per run and text: where the tool's definitions
    differ from ours."""
    items = []
    for run in runs:
        for note in dict.fromkeys(str(r.get("notes") or "") for r in run.rows
                                  if r.get("source_tool")):
            if note:
                items.append(f"<li><b>{run.label}</b> ({escape(str(run.first['source_tool']))})"
                             f": {escape(note)}</li>")
    return (f'<details open><summary>notes of imported rows</summary><ul class="notes">'
            f'{"".join(items)}</ul></details>' if items else "")


def comparison_section(rows: list[dict[str, Any]]) -> str:
    """The `harness compare` table against the first run, or why there is none."""
    warnings: list[str] = []
    try:
        sides = cmp.build_sides(rows, None, warnings)
        c = cmp.compare(sides, cmp.DEFAULT_METRICS, skip_empty=True)
    except ValueError as exc:
        return f'<p class="note">No comparison: {escape(str(exc))}</p>'
    headers, body = cmp.table_rows(c)
    cells = []
    for r in body:
        out = []
        for h, v in zip(headers, r):
            cls = {"REGRESSION": "bad", "better": "good"}.get(v, "")
            text = escape(v).replace("[synthetic]", SYN_BADGE) if h == "model" else escape(v)
            out.append(f'<span class="{cls}">{text}</span>' if cls else text)
        cells.append(out)
    notes = "".join(f"<li>{escape(w)}</li>" for w in warnings + c.warnings + c.notes)
    synthetic = (f"<p>{SYN_BADGE} rows come from random-weight models.</p>"
                 if c.any_synthetic else "")
    return (f"<p>Each run against <b>{c.sides[0].label}</b> (the first run): ratio and "
            f"verdict; a REGRESSION is worse by more than {c.threshold_pct:g}% and significant "
            "(Welch's t-test on mean, std and count, p &lt; 0.05); noise = not significant; "
            "? = no spread to test. ↑ higher is better, ↓ lower is better.</p>"
            + synthetic + _table(headers, cells, "compare num")
            + (f'<ul class="notes">{notes}</ul>' if notes else ""))


# ---------------------------------------------------------------- page

CSS = """
:root { --fg:#1d1d1f; --muted:#5f6368; --line:#dcdcdc; --bg:#fff; --accent:#0072B2; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial,
       sans-serif; color: var(--fg); background: var(--bg); margin: 0; }
main { max-width: 1240px; margin: 0 auto; padding: 20px 24px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid
     var(--line); }
p.meta, small, .note { color: var(--muted); }
.banner { background: #fff4e5; border: 1px solid #f0b45b; padding: 8px 12px; border-radius: 6px;
          margin: 12px 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left;
         vertical-align: top; }
th { background: #f6f7f9; font-weight: 600; white-space: nowrap; }
table.num td { white-space: nowrap; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
          margin-right: 5px; vertical-align: baseline; }
.badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 9px;
         white-space: nowrap; }
.badge.syn { background: #ffe2c6; color: #8a3b00; border: 1px solid #f0a060; }
.badge.warn { background: #fdecea; color: #8a1c10; }
.badge.imp { background: #e7f0fa; color: #0b4f8a; }
.bad { color: #b3261e; font-weight: 700; }
.good { color: #137333; font-weight: 600; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr));
        gap: 16px 24px; }
figure.chart { margin: 0; padding: 8px; border: 1px solid var(--line); border-radius: 8px; }
figure.chart.wide { grid-column: 1 / -1; }
figcaption { font-size: 12px; color: var(--muted); margin-top: 2px; }
pre { background: #f6f7f9; padding: 10px; overflow-x: auto; font-size: 12px; }
ul.notes { color: var(--muted); font-size: 13px; }
details summary { cursor: pointer; color: var(--accent); }
"""


def build_report(rows: list[dict[str, Any]], title: str = "LLM inference report",
                 generated_utc: str = "", sources: list[str] | None = None) -> str:
    """The whole HTML page for these result rows."""
    rows = cmp.clean_rows(rows)
    runs = make_runs(rows)
    with_model = len({cmp.model_label(r).replace(" [synthetic]", "") for r in rows}) > 1
    parts: list[str] = []
    parts.append(f"<h1>{escape(title)}</h1>")
    src = f"{len(sources)} result file(s)" if sources else f"{len(rows)} row(s)"
    parts.append(f'<p class="meta">{len(runs)} run(s) on '
                 f'{len({r.get("machine_id") for r in rows})} machine(s), {len(rows)} scenario '
                 f'row(s) from {escape(src)} · generated {escape(generated_utc)} by harness '
                 f'{escape(__version__)} · works offline: no scripts, no fonts, no network</p>')
    if any(cmp.is_synthetic(r) for r in rows):
        parts.append(f'<div class="banner">{SYN_BADGE} Some rows were measured on '
                     "<b>synthetic (random-weight) models</b>: their speed is real for the "
                     "model's shape and quantization, their output text is meaningless. They "
                     "are marked synthetic in every table and chart (dashed lines).</div>")
    parts.append("<h2>Machines</h2>" + machines_table(runs))
    if any(r.get("source_tool") for r in rows):
        tools = ", ".join(sorted({str(r["source_tool"]) for r in rows if r.get("source_tool")}))
        parts.append(f'<p class="note">Some runs were measured by other tools ({escape(tools)}) '
                     "and imported: their figures are the tools' own, and where a tool defines "
                     "a figure differently the row's notes say how (table below).</p>")
    no_charts = missing()
    if no_charts:
        parts.append(f'<div class="banner">Charts not drawn: {escape(no_charts)}. The tables '
                     "below hold every figure.</div>")
    parts.append("<h2>Throughput against concurrency</h2>")
    thr = [] if no_charts else throughput_charts(runs, with_model)
    parts.append(f'<div class="grid">{"".join(thr)}</div>' if thr else
                 '<p class="note">No throughput chart for these results.</p>')
    parts.append("<h2>Latency against throughput</h2>")
    lt = [] if no_charts else latency_throughput_charts(runs, with_model)
    parts.append(f'<div class="grid">{"".join(lt)}</div>' if lt else
                 '<p class="note">No closed-loop sweep with latency and throughput figures.</p>')
    parts.append("<h2>Latency percentiles</h2>")
    lat = [] if no_charts else latency_charts(runs)
    parts.append(f'<div class="grid">{"".join(lat)}</div>' if lat else
                 '<p class="note">No latency chart for these results.</p>')
    parts.append("<h2>Energy per token</h2>")
    energy = [] if no_charts else energy_charts(runs, with_model)
    if energy:
        parts.append(f'<div class="grid">{"".join(energy)}</div>')
    elif no_charts:
        parts.append('<p class="note">See the J/out tok column of the table below.</p>')
    else:
        methods = sorted({str(r.get("power_method") or "none") for r in rows})
        parts.append('<p class="note">No energy figures: no row has a measured or estimated '
                     f"energy (power_method: {escape(', '.join(methods))}). Run "
                     "<code>harness bench --power auto</code> on a machine with a meter "
                     "(NVML, RAPL, Apple).</p>")
    parts.append("<h2>Break-even against API prices</h2>")
    svg, text, note = breakeven_section(rows)
    if svg:
        parts.append(_figure(svg, "breakeven wide", "monthly cost against monthly token volume; "
                             "from `harness breakeven` with the catalog's default prices"))
    if note:
        parts.append(f'<p class="note">{escape(note)}</p>')
    if text:
        parts.append(f"<details><summary>break-even table</summary><pre>{escape(text)}"
                     "</pre></details>")
    parts.append("<h2>Comparison</h2>" + (comparison_section(rows) if len(runs) > 1 else
                 '<p class="note">One run only: nothing to compare.</p>'))
    parts.append("<h2>All rows</h2>" + results_table(runs) + imported_notes(runs))
    if sources:
        parts.append("<details><summary>result files</summary><ul>"
                     + "".join(f"<li><code>{escape(s)}</code></li>" for s in sources)
                     + "</ul></details>")
    parts.append('<p class="note">Definitions: TTFT = first content − send; TPOT = (E2E − '
                 "TTFT) / (N_out − 1); output throughput = Σ output tokens / (last completion − "
                 "first send), mean ± std over repetitions; percentiles over all measured "
                 "requests. Times in ms.</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")
