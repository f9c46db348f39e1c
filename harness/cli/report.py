"""`harness report`: one self-contained HTML page from result files."""

from __future__ import annotations

import argparse
import os
from datetime import UTC
from pathlib import Path

from harness.analysis.compare import attach_repetitions, clean_rows
from harness.analysis.report.report import build_report
from harness.errors import UserError
from harness.results.files import atomic_write_text, load_frame, read_request_records

HELP = "write a self-contained HTML report (machines, charts, break-even) from results"
DESCRIPTION = """\
Read result CSV files or folders (from any number of machines) and write one HTML file
that works offline (inline CSS and SVG; no scripts, fonts or network): the machines'
metadata, output throughput against concurrency, TTFT/TPOT percentiles, energy per
output token, the break-even plot against API prices and a comparison with the first
run. Rows from synthetic (random-weight) models are marked as such everywhere.

examples:
  harness report results/ -o report.html
  harness report results/reference results/my-box -o compare.html --title "CPU vs H100"
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", metavar="RESULT",
                   help="result CSV files or folders (searched recursively)")
    p.add_argument("-o", "--output", type=Path, default=Path("report.html"),
                   help="HTML file to write (default report.html)")
    p.add_argument("--title", default="LLM inference report", help="page title")


def run(args: argparse.Namespace) -> int:
    from datetime import datetime


    if args.output.exists() and args.output.is_dir():
        raise UserError(f"-o {args.output}: is a folder; give a file name like report.html")
    frame = load_frame(args.results)
    rows = clean_rows(frame.to_dict("records"))
    sources = sorted({str(r["source_file"]) for r in rows if r.get("source_file")})
    # the comparison's significance over repetitions, as `harness compare` tests it
    attach_repetitions(rows, {s: read_request_records(s) for s in sources})
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    html = build_report(rows, title=args.title, generated_utc=now, sources=sources)
    try:
        atomic_write_text(args.output, html)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(args.output, 0o666 & ~umask)  # readable like any other file, not 0600
    except OSError as exc:
        raise UserError(f"-o {args.output}: cannot write ({exc.strerror or exc})") from None
    print(f"harness report: wrote {args.output} ({len(html) // 1024} KiB, {len(rows)} rows, "
          f"{len(sources)} file(s))")
    return 0
