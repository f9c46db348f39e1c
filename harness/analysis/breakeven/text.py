"""Text for break-even results: terminal tables, Markdown, and the short summary that
ends `harness bench`. Formats what `harness.analysis.breakeven.model.analyse` computed; no arithmetic
beyond rounding, no I/O.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.analysis.breakeven.model import analyse_frame, as_float
from harness.analysis.prices import Catalog, load_catalog
from harness.format import fmt, render

# ------------------------------------------------------------------ text output

def usd(x: float | None) -> str:
    """Dollars for reading, by the one formatter: $1,234 / $12.35 / $0.0123."""
    return fmt(x, "usd")


def mtok(x: float | None) -> str:
    """Millions of tokens for reading, by the one formatter: 1,234 M / 12.3 M."""
    return fmt(x, "mtok")


def _machine_line(o: dict[str, Any]) -> str:
    hw = o["hardware"]
    if hw is None:
        return "not priced"
    if hw["kind"] == "rented":
        return f"{hw['name']}: rented ${hw['rent_usd_per_hour']:g}/h x 720 h"
    return (f"{hw['name']}: ${hw['purchase_usd']:,.0f} over {hw['amortize_months']:g} months")


def _power_text(o: dict[str, Any]) -> str:
    if o["load_power_w"] is None:
        return "-"
    idle = "-" if o["idle_power_w"] is None else f"{o['idle_power_w']:.4g}"
    return f"{o['load_power_w']:.4g}/{idle} ({o['power_origin']})"


def _compared(o: dict[str, Any], api: str) -> str:
    """How the option's local model compares with the API's: same model, same class, or
    CROSS-CLASS (the label `analyse` made)."""
    return (o.get("api_comparison") or {}).get(api, {}).get("label") or "-"


def format_text(result: dict[str, Any], markdown: bool = False) -> str:
    """The break-even result as terminal tables (or Markdown)."""
    lines: list[str] = []

    def table(headers: list[str], rows: list[list[Any]], title: str) -> None:
        if markdown:
            lines.append(f"**{title}**\n")
            lines.append("| " + " | ".join(headers) + " |")
            lines.append("|" + "|".join("---" for _ in headers) + "|")
            lines.extend("| " + " | ".join(str(c) for c in r) + " |" for r in rows)
        else:
            lines.append(render(headers, [[str(c) for c in r] for r in rows], title))
        lines.append("")

    a = result["assumptions"]
    head = [f"month: {a['month']}; volume: {a['volume']}",
            (f"utilization {a['utilization']:g}, electricity ${a['electricity_usd_per_kwh']:g}"
            f"/kWh, PUE {a['pue']:g}, operations {usd(a['ops_usd_per_month'])}/month")]
    title = "Break-even: measured throughput priced against APIs"
    lines += ([f"## {title}", ""] + [f"- {h}" for h in head] if markdown
              else [title] + [f"  {h}" for h in head])
    lines.append("")
    table(["api", "serves", "class", "input $/M", "output $/M", "cached in $/M", "date",
           "source"],
          [[x["name"], x.get("model") or "(closed)", x.get("model_class") or "?",
            f"{x['input_usd_per_mtok']:g}", f"{x['output_usd_per_mtok']:g}",
            "-" if x["cached_input_usd_per_mtok"] is None
            else f"{x['cached_input_usd_per_mtok']:g}", x["date"], x["source"]]
           for x in result["apis"]], "API prices")
    opts = result["options"]
    table(["#", "measured", "tok/s", "in:out", "power W load/idle", "machine",
           "M tok/month @100%", "$/M @100%", "$/M @util"],
          [[i + 1, o["label"], f"{o['total_tok_s']:,.4g}",
            f"{o['input_share'] * 100:.0f}:{(1 - o['input_share']) * 100:.0f}",
            _power_text(o),
            _machine_line(o), mtok(o["capacity_mtok_per_month_full"]),
            usd(o.get("cost_per_mtok_full")), usd(o.get("cost_per_mtok_at_utilization"))]
           for i, o in enumerate(opts)], "Machines (one per measured row and price)")
    table(["#", "rule", "served by", "c", "out tok/s", "file", "row used and why"],
          [[i + 1, o["selection"] or "-", o.get("served_by") or "-",
            "-" if o.get("concurrency") is None else o["concurrency"],
            "-" if o.get("output_tok_s") is None else f"{o['output_tok_s']:,.4g}",
            o.get("source_file") or "-", o.get("selection_reason") or "-"]
           for i, o in enumerate(opts)], "Rows used")
    be_rows = []
    for i, o in enumerate(opts):
        if not o["priced"]:
            for api, p in o["api_usd_per_mtok"].items():
                be_rows.append([i + 1, api, _compared(o, api), usd(p), "-", "-",
                                (f"not priced; a full machine replaces "
                                f"{usd(o['api_value_of_full_machine_usd'][api])}/month of API "
                                "spend")])
            continue
        for v in o["versus"]:
            be_rows.append([i + 1, v["api"], _compared(o, v["api"]),
                            usd(v["api_usd_per_mtok"]),
                            mtok(v["break_even_mtok_per_month"]),
                            v["machines"] if v["machines"] else "-",
                            v["reason"] or "-"])
    table(["#", "api", "compared (like for like first)", "api $/M at mix",
           "break-even tok/month", "machines", "why"], be_rows, "Break-even volume")
    for i, o in enumerate(opts):
        if not o["priced"]:
            continue
        apis = list(o["api_usd_per_mtok"])
        ref = apis[0]
        table(["volume/month", "machines", "local"] + apis + [f"hybrid (+{ref})"],
              [[mtok(r["volume_mtok"]), r["machines"], usd(r["local_usd"])]
               + [usd(r["api_usd"][k]) for k in apis]
               + [(f"{usd(r['hybrid'][ref]['usd'])} ({r['hybrid'][ref]['machines']} local, "
                  f"{mtok(r['hybrid'][ref]['api_mtok'])} API)")]
               for r in o["cost_table"]],
              f"#{i + 1} monthly cost, USD ({_machine_line(o)})")
        table(["parameter", "value", "$/M @util"] + [f"break-even vs {k}" for k in apis],
              [[s["parameter"], s["value"] or "(as given)", usd(s["cost_per_mtok_at_utilization"])]
               + [mtok(s["break_even_mtok_per_month"][k]) if s["break_even_mtok_per_month"][k]
                  is not None else "none" for k in apis]
               for s in o["sensitivity"]],
              f"#{i + 1} sensitivity (one input changed at a time)")
    for n in result["notes"]:
        lines.append(f"note: {n}")
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------ bench summary

def bench_summary_text(rows: list[dict[str, Any]], catalog: Catalog | None = None) -> str:
    """A few lines for the end of `harness bench`: each scenario's capacity, what it is
    worth at API prices, and the break-even where the catalog prices this machine; when
    it does not, how to give a price. Never raises, never asks."""
    try:
        return _bench_summary(rows, catalog)
    except Exception as exc:  # noqa: BLE001 - a summary must not break a finished run
        return f"break-even: not computed ({exc})"


def _bench_summary(rows: list[dict[str, Any]], catalog: Catalog | None) -> str:

    # Rows with an API cost ran on a priced hosted API: not a machine to price.
    usable = [r for r in rows if (as_float(r.get("total_throughput_tok_s")) or 0) > 0
              and r.get("status") != "partial" and as_float(r.get("api_cost_usd")) is None]
    if not usable:
        return ""
    result = analyse_frame(pd.DataFrame(usable), catalog or load_catalog())
    lines = [("break-even (30-day month, 100% utilization; `harness breakeven RESULTS` for "
             "tables, plot and sensitivity):")]
    unpriced: dict[str, str] = {}
    for o in result["options"]:
        synthetic = " [SYNTHETIC weights]" if o["synthetic_weights"] else ""
        rule = f" [{o['selection']}]" if o.get("selection") else ""
        head = (f"  {o['scenario']} c={o['concurrency']}{synthetic}{rule}: "
                f"{o['total_tok_s']:,.4g} tok/s -> {mtok(o['capacity_mtok_per_month_full'])} "
                "tokens/month per machine")
        if not o["priced"]:
            worth = ", ".join(f"{usd(o['api_value_of_full_machine_usd'][k])} at {k} "
                              f"({usd(p)}/M) [{_compared(o, k)}]"
                              for k, p in o["api_usd_per_mtok"].items())
            lines.append(f"{head}; worth at most {worth} per month")
            unpriced[o["machine"]] = o["machine_id"]
            continue
        bits = []
        for v in o["versus"]:
            vs = f"vs {v['api']} [{_compared(o, v['api'])}]"
            if v["break_even_mtok_per_month"] is not None:
                bits.append(f"{vs}: break-even {mtok(v['break_even_mtok_per_month'])}"
                            f" tokens/month")
            else:
                bits.append(f"{vs}: none ({v['reason'].split(':')[0]})")
        lines.append(f"{head}; {_machine_line(o)} -> {usd(o['cost_per_mtok_full'])}/M tokens; "
                     + "; ".join(bits))
    for name, machine_id in sorted(unpriced.items()):
        lines.append(f"  no price known for this machine ({name}). Give one with:")
        lines.append("    harness breakeven <this run's CSV> --hardware-price USD "
                     "[--amortize-months 36]   (or --rent-usd-per-hour X, or --hardware NAME)")
        lines.append(f"    or a [[hardware]] entry with match = [\"{machine_id or name}\"] in a "
                     "TOML file passed as --prices FILE or HARNESS_PRICES=FILE "
                     "(README: Break-even)")
    if any(o["synthetic_weights"] for o in result["options"]):
        lines.append("  SYNTHETIC weights: the speed is real, the answers are not")
    lines.extend(f"  {n}" for n in result["notes"] if "refused" in n)
    return "\n".join(lines)
