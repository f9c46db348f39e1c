"""The break-even plot: monthly cost against monthly token volume (log-log), one line per
machine option and API, with break-even points and one-machine capacity limits marked.

Draws from a result of `harness.analysis.breakeven.model.analyse` (no re-computation of prices beyond
evaluating the same cost model on a finer volume grid). Needs matplotlib (`plot` extra).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from harness.analysis.breakeven.model import MTOK, CostModel, hybrid_plan, local_monthly_usd


def _model(o: dict[str, Any]) -> CostModel:
    return CostModel(capacity_full_tok=o["capacity_mtok_per_month_full"] * MTOK,
                     utilization=o["utilization"],
                     machine_fixed_usd=o["machine_fixed_usd_per_month"],
                     marginal_usd_per_mtok=o["marginal_energy_usd_per_mtok"],
                     ops_usd=o["ops_usd_per_month"], hardware_usd=o["hardware_usd_per_month"],
                     idle_energy_usd=o["idle_energy_usd_per_month"])


def _short(i: int, o: dict[str, Any]) -> str:
    hw = o["hardware"]["name"] if o["hardware"] else o["machine"]
    conc = f" c={o['concurrency']}" if o["concurrency"] is not None else ""
    syn = " SYNTHETIC" if o["synthetic_weights"] else ""
    return f"#{i + 1} {hw} · {o['scenario']}{conc}{syn}"


def cost_figure(result: dict[str, Any]) -> Any:
    """A matplotlib Figure of the result (nothing shown)."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    options = [o for o in result["options"] if o["priced"]]
    vols = list(result.get("volumes_mtok") or [5, 500])
    lo = min([*vols, 1.0])
    hi = max(vols) * 2
    for o in options:
        lo = min(lo, o["capacity_mtok_per_month"] / 2)
        for v in o["versus"]:
            if v["break_even_mtok_per_month"]:
                hi = max(hi, v["break_even_mtok_per_month"] * 2)
                lo = min(lo, v["break_even_mtok_per_month"] / 2)
    grid = [lo * (hi / lo) ** (i / 400) for i in range(401)]
    fig = Figure(figsize=(9, 5.5), dpi=100)
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    colors = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
    api_colors = ["#d62728", "#ff7f0e", "#7f7f7f", "#000000"]
    # One line per API and price: rows with different input:output mixes blend an API's
    # input and output prices differently.
    api_lines: dict[tuple[str, float], list[int]] = {}
    for i, o in enumerate(options or result["options"]):
        for k, p in o["api_usd_per_mtok"].items():
            api_lines.setdefault((k, round(p, 6)), []).append(i + 1)
    names = list(dict.fromkeys(k for k, _ in api_lines))
    mixes = len({tuple(o["api_usd_per_mtok"].values()) for o in options}) > 1
    styles = ["-", "-.", ":", (0, (5, 1))]
    seen: dict[str, int] = {}
    for (name, p), which in api_lines.items():
        j = seen[name] = seen.get(name, -1) + 1
        label = f"API {name} (${p:.3g}/M"
        label += f" at the mix of #{', #'.join(map(str, which))})" if mixes else ")"
        kinds = {((options or result["options"])[i - 1].get("api_comparison") or {})
                 .get(name, {}).get("kind") for i in which}
        if "cross-class" in kinds:
            label += " CROSS-CLASS"
        ax.plot(grid, [p * v for v in grid], color=api_colors[names.index(name) % 4],
                linewidth=1.8, linestyle=styles[j % len(styles)], label=label)
    for i, o in enumerate(options):
        model = _model(o)
        color = colors[i % len(colors)]
        cost = [local_monthly_usd(model, v * MTOK)[1] for v in grid]
        ax.plot(grid, cost, color=color, linewidth=1.8, drawstyle="steps-post",
                label=_short(i, o))
        ref = next(iter(o["api_usd_per_mtok"]))
        hyb = [hybrid_plan(model, o["api_usd_per_mtok"][ref], v * MTOK).usd for v in grid]
        api_cost = [o["api_usd_per_mtok"][ref] * v for v in grid]
        if any(h < min(c, a) * (1 - 1e-6) for h, c, a in zip(hyb, cost, api_cost)):
            ax.plot(grid, hyb, color=color, linewidth=1, linestyle="--",
                    label=f"#{i + 1} hybrid with {ref}")
        cap = model.capacity_tok / MTOK
        if lo <= cap <= hi:
            ax.axvline(cap, color=color, linestyle=":", linewidth=1)
            ax.annotate(f"#{i + 1} one machine full\n{cap:,.3g} M", (cap, 0.02),
                        xycoords=("data", "axes fraction"), fontsize=7, color=color,
                        rotation=90, ha="right", va="bottom")
        for v in o["versus"]:
            be = v["break_even_mtok_per_month"]
            if be is None:
                continue
            y = v["api_usd_per_mtok"] * be
            ax.plot([be], [y], marker="o", markersize=7, color=color,
                    markeredgecolor="black", linestyle="none")
            ax.annotate(f"{be:,.3g} M vs {v['api']}", (be, y), textcoords="offset points",
                        xytext=(6, -12), fontsize=7)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("monthly volume, million tokens (input + output, log)")
    ax.set_ylabel("monthly cost, USD (log)")
    title = "Monthly cost vs volume: local machines (steps = machines added) vs APIs"
    if any(o["synthetic_weights"] for o in options):
        title += "\n(SYNTHETIC weights: real speed of the model shape, not real answers)"
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    if not options:
        ax.text(0.5, 0.5, "no machine priced: give --hardware, --hardware-price or "
                "--rent-usd-per-hour", transform=ax.transAxes, ha="center", fontsize=9)
    fig.tight_layout()
    return fig


def cost_plot_svg(result: dict[str, Any]) -> str:
    """The plot as an SVG document (text), for embedding in an offline HTML report;
    text stays text (no embedded glyphs), drawn in the page's sans-serif font."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        cost_figure(result).savefig(buf, format="svg")
    return buf.getvalue().decode("utf-8")


def write_cost_plot(path: Path, result: dict[str, Any]) -> None:
    """Save the plot; the format follows the suffix (.svg, .png, .pdf)."""
    import matplotlib

    fmt = path.suffix.lower().lstrip(".") or "svg"
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        cost_figure(result).savefig(path, format=fmt)

