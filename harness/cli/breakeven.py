"""`harness breakeven`: price measured throughput and power against hosted APIs."""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

from harness.analysis.breakeven.model import Assumptions, Economics, analyse, select_measurements
from harness.analysis.breakeven.plot import write_cost_plot
from harness.analysis.breakeven.text import format_text
from harness.analysis.prices import load_catalog
from harness.errors import UserError
from harness.results.files import load_frame

HELP = "cost per million tokens and break-even volume vs APIs, from result CSVs"
DESCRIPTION = """\
Turn measured throughput (in each row's own input:output mix) and power into dollars per
million tokens, and find the monthly volume at which owning or renting the machine beats
an API, or say why there is none. A month is 30 days; volumes are input + output tokens.

Rows that cannot be priced as capacity are refused: interrupted (status=partial), any
failed request, a busy machine (noisy=1), fewer requests in flight than the label says
(capacity_ok=0, or achieved concurrency below 90%). Of the rest, each scenario contributes
its row at --concurrency N, else the fastest row whose p90 TTFT and TPOT meet the SLOs
(--slo-ttft-ms/--slo-tpot-ms, else the row's own slo_ttft_ms/slo_tpot_ms), else the knee
of its sweep (knee=1), else its fastest row; the output says which and why. Machines are priced by
--hardware NAME, --hardware-price USD or --rent-usd-per-hour X; without those, by the
catalog entries whose `match` fits the row's GPU/CPU. Prices: harness/analysis/prices/catalog.toml
plus --prices FILE (same format; entries with the same name replace built-in ones).

examples:
  harness breakeven results/ --hardware mac-studio-m4-ultra-192gb
  harness breakeven results/x.csv --hardware-price 2500 --amortize-months 36 \\
      --electricity-usd-per-kwh 0.30 --api claude-sonnet-4.6 gpt-4o-mini --plot cost.svg
  harness breakeven results/ --rent-usd-per-hour 2.49 --utilization 0.5 --format json
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", metavar="RESULTS",
                   help="result CSV files or folders (searched recursively)")
    g = p.add_argument_group("the machine (one of)")
    g.add_argument("--hardware", default=None, metavar="NAME",
                   help="a hardware entry of the price catalog (owned or rented)")
    g.add_argument("--hardware-price", default=None, metavar="USD",
                   help="purchase price of one machine (owned)")
    g.add_argument("--rent-usd-per-hour", default=None, metavar="X",
                   help="rental price of one machine per hour, paid 24/7 (energy included)")
    g = p.add_argument_group("economics")
    g.add_argument("--amortize-months", default=None, metavar="N",
                   help="months to amortize the purchase over (default: the entry's, or 36)")
    g.add_argument("--electricity-usd-per-kwh", default=None, metavar="X",
                   help="electricity price (default: the catalog's, 0.119 from the article)")
    g.add_argument("--pue", default=None, metavar="X",
                   help="power usage effectiveness, >= 1 (default 1.0)")
    g.add_argument("--ops-usd-per-month", default=None, metavar="X",
                   help="operations/engineering cost per month for the deployment (default 0)")
    g.add_argument("--utilization", default=None, metavar="F",
                   help="share of the month a machine is busy, in (0, 1] (default 1)")
    g.add_argument("--power-w", default=None, metavar="W",
                   help="load power of one machine, replacing the measured figure")
    g.add_argument("--idle-power-w", default=None, metavar="W",
                   help="idle power of one machine, replacing the measured figure")
    g = p.add_argument_group("APIs and volumes")
    g.add_argument("--api", nargs="+", action="extend", default=None, metavar="NAME",
                   help="APIs to compare (catalog names or model ids), like for like first; "
                        "default: the catalog's offers of the measured open model, else of "
                        "its class (else the nearest class), then the catalog's defaults; a "
                        "cross-class comparison is labelled CROSS-CLASS")
    g.add_argument("--cached-input-share", default=None, metavar="F",
                   help="share of input tokens billed at the cached-input price, in [0, 1]")
    g.add_argument("--volumes", nargs="+", action="extend", default=None, metavar="V",
                   help="extra monthly volumes for the cost table: 75M, 2B, 300k, or "
                        "plain numbers in millions (5M 20M 50M 200M 500M are always shown)")
    g.add_argument("--prices", action="append", type=Path, default=None, metavar="FILE",
                   help="a TOML price file adding or replacing catalog entries (repeatable)")
    g = p.add_argument_group("which rows")
    g.add_argument("--concurrency", default=None, metavar="N",
                   help="use the rows at this concurrency")
    g.add_argument("--slo-ttft-ms", default=None, metavar="X",
                   help="use the fastest row whose TTFT p90 is within X ms (default: the "
                        "SLO each row was measured with)")
    g.add_argument("--slo-tpot-ms", default=None, metavar="X",
                   help="use the fastest row whose TPOT p90 is within X ms (default: the "
                        "SLO each row was measured with)")
    g.add_argument("--scenario", default=None, metavar="NAME", help="only this scenario")
    g = p.add_argument_group("output")
    g.add_argument("--format", default="table", metavar="table|json|md",
                   help="table (default), json or md")
    g.add_argument("--plot", type=Path, default=None, metavar="FILE",
                   help="write the cost-vs-volume plot (.svg, .png or .pdf)")


def _number(flag: str, text: str | None, *, minimum: float = 0.0, inclusive: bool = False,
            maximum: float | None = None) -> float | None:
    """A float flag value checked against its range; UserError naming the flag."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    bad = math.isnan(value) or math.isinf(value)
    bad = bad or (value < minimum if inclusive else value <= minimum)
    bad = bad or (maximum is not None and value > maximum)
    if bad:
        rng = f"{'>=' if inclusive else '>'} {minimum:g}"
        if maximum is not None:
            rng = f"in {'[' if inclusive else '('}{minimum:g}, {maximum:g}]"
        raise UserError(f"{flag} {text!r}: must be a number {rng}")
    return value


_VOLUME = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*([kmgbt]?)\s*$", re.IGNORECASE)
_SCALE_MTOK = {"": 1.0, "k": 1e-3, "m": 1.0, "g": 1e3, "b": 1e3, "t": 1e6}


def parse_volume_mtok(text: str) -> float:
    """A monthly volume in millions of tokens from '75M', '2B', '300k' or '75' (millions)."""
    m = _VOLUME.match(text)
    value = float(m.group(1)) * _SCALE_MTOK[m.group(2).lower()] if m else 0.0
    if not m or value <= 0:
        raise UserError(f"--volumes {text!r}: give volumes like 75M, 2B, 300k, or a number of "
                        "millions > 0")
    return value


def run(args: argparse.Namespace) -> int:
    fmt = args.format
    if fmt not in ("table", "json", "md"):
        raise UserError(f"--format {fmt!r}: choose table, json or md")
    chosen = [f for f in ("--hardware", "--hardware-price", "--rent-usd-per-hour")
              if getattr(args, f[2:].replace("-", "_")) is not None]
    if len(chosen) > 1:
        raise UserError(f"{' and '.join(chosen)}: give only one way to price the machine")
    price = _number("--hardware-price", args.hardware_price)
    rent = _number("--rent-usd-per-hour", args.rent_usd_per_hour)
    months = _number("--amortize-months", args.amortize_months)
    if months is not None and rent is not None:
        raise UserError("--amortize-months applies to a purchase, not to --rent-usd-per-hour")
    electricity = _number("--electricity-usd-per-kwh", args.electricity_usd_per_kwh)
    pue = _number("--pue", args.pue, minimum=1.0, inclusive=True)
    ops = _number("--ops-usd-per-month", args.ops_usd_per_month, inclusive=True)
    utilization = _number("--utilization", args.utilization, maximum=1.0)
    power_w = _number("--power-w", args.power_w)
    idle_w = _number("--idle-power-w", args.idle_power_w, inclusive=True)
    cached = _number("--cached-input-share", args.cached_input_share, inclusive=True,
                     maximum=1.0)
    slo_ttft = _number("--slo-ttft-ms", args.slo_ttft_ms)
    slo_tpot = _number("--slo-tpot-ms", args.slo_tpot_ms)
    concurrency = None
    if args.concurrency is not None:
        if not re.fullmatch(r"\s*\d+\s*", args.concurrency) or int(args.concurrency) < 1:
            raise UserError(f"--concurrency {args.concurrency!r}: must be an integer >= 1")
        concurrency = int(args.concurrency)
    volumes = [parse_volume_mtok(v) for v in args.volumes or []]
    if args.plot is not None and args.plot.suffix.lower() not in (".svg", ".png", ".pdf"):
        raise UserError(f"--plot {args.plot}: name a .svg, .png or .pdf file")

    catalog = load_catalog(args.prices)
    d = catalog.defaults
    assumptions = Assumptions(
        electricity_usd_per_kwh=electricity if electricity is not None
        else d.electricity_usd_per_kwh,
        pue=pue if pue is not None else d.pue, ops_usd_per_month=ops or 0.0,
        utilization=utilization if utilization is not None else 1.0,
        amortize_months=months, cached_input_share=cached or 0.0, power_w=power_w,
        idle_power_w=idle_w)
    api_names = args.api  # None: like for like from the catalog, then its defaults
    for name in api_names or list(d.apis):
        catalog.api_named(name)
    hardware = catalog.hardware_named(args.hardware) if args.hardware else None
    economics = None
    common: dict[str, Any] = {
        "electricity_usd_per_kwh": assumptions.electricity_usd_per_kwh, "pue": assumptions.pue,
        "ops_usd_per_month": assumptions.ops_usd_per_month, "utilization": assumptions.utilization,
        "date": "", "source": "command line"}
    if price is not None:
        economics = Economics(name="custom", kind="owned", purchase_usd=price,
                              amortize_months=months or d.amortize_months, **common)
    elif rent is not None:
        economics = Economics(name="custom", kind="rented",
                              rent_usd_per_hour=rent, **common)
    elif months is not None and hardware is not None and hardware.kind == "rented":
        raise UserError(f"--amortize-months: {hardware.name} is rented, nothing to amortize")

    frame = load_frame(args.results)
    measurements, notes = select_measurements(frame, concurrency, slo_ttft, slo_tpot,
                                              args.scenario)
    result = analyse(measurements, catalog, assumptions, api_names, economics=economics,
                     hardware=hardware, volumes_mtok=volumes, notes=notes)
    if not any(o["priced"] for o in result["options"]) and args.plot is not None:
        raise UserError("--plot: no machine is priced, so there is nothing to plot; "
                        "give --hardware NAME, --hardware-price USD or --rent-usd-per-hour X")
    if args.plot is not None:
        try:
            write_cost_plot(args.plot, result)
        except ImportError:
            raise UserError("--plot needs matplotlib: pip install 'llm-harness[plot]'") from None
        except OSError as exc:
            raise UserError(f"--plot {args.plot}: cannot write ({exc.strerror})") from None
        result["plot"] = str(args.plot)
    if fmt == "json":
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        print(format_text(result, markdown=fmt == "md"), end="")
        if args.plot is not None:
            print(f"plot: {args.plot}")
    return 0
