"""The real runner and the real llama.cpp backend on the default model, with power
meters around the measured phase: RAPL on a fake sysfs tree (this machine has none),
and the command line's `--power` modes as they behave on this machine."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.power import open_session
from harness.power.session import PowerSession
from tests.support.fake_power import RaplWriter, make_rapl_tree

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

TINY = """
description = "two short requests"
seed = 3
[defaults]
repetitions = 2
warmup_requests = 0
concurrency = 1
[[scenarios]]
name = "tiny"
input_tokens = 16
output_tokens = 8
requests = 1
"""

PKG, DRAM = "intel-rapl:0", "intel-rapl:0:2"
WATTS = {PKG: 30.0, DRAM: 5.0}
BIG = {PKG: 10**12, DRAM: 10**12}


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


async def _run(session: PowerSession, workload_path: Path, out: Path) -> Path:
    from backends.llamacpp import LlamaCppBackend
    from harness.results.files import RunFiles
    from harness.results.machine import fingerprint
    from harness.runner.runner import RunOptions, RunState, new_run_id, run_workload
    from workloads.spec import load_workload

    workload = load_workload(str(workload_path))
    backend = LlamaCppBackend(model=None, n_ctx=256)
    info = await backend.open()
    try:
        run_id = new_run_id()
        files = RunFiles(out, fingerprint(), run_id, workload.name)
        await run_workload(backend, info, workload, files, fingerprint(), run_id, session,
                           RunOptions(quiet=True, idle_power_s=1.0), RunState())
        files.close()
    finally:
        await backend.close()
    (csv_path,) = out.glob("*/*.csv")
    return csv_path


def test_runner_writes_rapl_energy_columns_and_timeline(tmp_path: Path) -> None:
    workload = tmp_path / "tiny.toml"
    workload.write_text(TINY)
    root = make_rapl_tree(tmp_path / "powercap", {
        PKG: {"name": "package-0", "energy_uj": 0, "max": BIG[PKG]},
        DRAM: {"name": "dram", "energy_uj": 0, "max": BIG[DRAM]},
    })
    session = open_session("rapl", rapl_root=root)
    with RaplWriter(root, WATTS, BIG):
        csv_path = asyncio.run(_run(session, workload, tmp_path / "out"))
    (row,) = read_rows(csv_path)
    assert row["status"] == "complete" and int(row["errors"]) == 0
    assert row["power_method"] == "measured"
    assert row["power_source"] == "rapl(cpu-package:0,dram:0)"
    energy, window = float(row["energy_j"]), float(row["power_window_s"])
    assert energy == pytest.approx(35.0 * window, rel=0.05, abs=0.2)
    assert float(row["avg_power_w"]) == pytest.approx(energy / window, rel=1e-3)
    assert float(row["idle_power_w"]) == pytest.approx(35.0, rel=0.25)  # 1 s idle window
    idle_energy = float(row["idle_power_w"]) * window
    assert float(row["energy_above_idle_j"]) == pytest.approx(energy - idle_energy, rel=1e-3,
                                                              abs=0.05)
    n_out, n_in = int(row["output_tokens"]), int(row["input_tokens"])
    assert (n_in, n_out) == (32, 16)
    assert float(row["j_per_output_token"]) == pytest.approx(energy / n_out, rel=1e-3)
    assert float(row["j_per_token"]) == pytest.approx(energy / (n_in + n_out), rel=1e-3)
    assert float(row["tokens_per_kwh"]) == pytest.approx((n_in + n_out) * 3.6e6 / energy,
                                                         rel=1e-3)
    assert float(row["peak_power_w"]) > 0 and float(row["peak_rss_mb"]) > 100
    assert float(row["output_throughput_tok_s"]) > 0
    timeline = [json.loads(x) for x in
                csv_path.with_name(csv_path.name.replace(".csv", ".power.jsonl"))
                .read_text().splitlines()]
    assert {(s["phase"], s["domain"]) for s in timeline} == {
        ("idle", "cpu-package:0"), ("idle", "dram:0"),
        ("measured", "cpu-package:0"), ("measured", "dram:0")}
    assert all(s["scenario"] == "tiny" and s["method"] == "measured" for s in timeline)


def test_a_counter_reset_mid_run_keeps_throughput_and_names_the_domain(
        tmp_path: Path) -> None:
    workload = tmp_path / "tiny.toml"
    workload.write_text(TINY)
    root = make_rapl_tree(tmp_path / "powercap", {
        PKG: {"name": "package-0", "energy_uj": 0, "max": BIG[PKG]},
        DRAM: {"name": "dram", "energy_uj": 0, "max": BIG[DRAM]},
    })
    writer = RaplWriter(root, WATTS, BIG)

    class ResetDuringWindow(PowerSession):
        def start(self) -> None:
            super().start()
            writer.backwards_after_s[DRAM] = 0.0  # the DRAM counter drops, no wrap

    session = ResetDuringWindow(open_session("rapl", rapl_root=root).meters, "")
    with writer:
        csv_path = asyncio.run(_run(session, workload, tmp_path / "out"))
    (row,) = read_rows(csv_path)
    assert int(row["requests"]) == 2 and float(row["output_throughput_tok_s"]) > 0
    assert row["power_method"] == "measured" and row["power_source"] == "rapl(cpu-package:0)"
    assert "went backwards without a wrap" in row["power_note"]
    assert "dram" in row["power_note"]


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)


def test_cli_power_modes_on_this_machine(tmp_path: Path) -> None:
    """No RAPL, no GPU, not a Mac here: auto says unavailable (never estimated), an
    explicit meter that is absent exits 2 with the reason, estimate is labelled."""
    if Path("/sys/class/powercap").is_dir():
        pytest.skip("this machine has RAPL; the test describes one without it")
    workload = tmp_path / "tiny.toml"
    workload.write_text(TINY)
    proc = harness("bench", "--power", "rapl", "--workload", str(workload), "--quiet")
    assert proc.returncode == 2 and "--power rapl: not available here: no RAPL" in proc.stderr
    assert "Traceback" not in proc.stderr

    out = tmp_path / "auto"
    proc = harness("bench", "--workload", str(workload), "--output", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "power: unavailable" in proc.stderr
    assert "energy: not measured (no power meter here" in proc.stdout
    (row,) = read_rows(next(out.glob("*/*.csv")))
    assert row["power_method"] == "unavailable" and row["power_source"] == "none"
    assert row["energy_j"] == "" and row["j_per_output_token"] == ""
    assert "no power meter available" in row["power_note"]
    assert not list(out.glob("*/*.power.jsonl"))

    out = tmp_path / "estimate"
    proc = harness("bench", "--workload", str(workload), "--output", str(out), "--quiet",
                   "--power", "estimate", "--tdp-w", "50", "--idle-power-s", "0.3")
    assert proc.returncode == 0, proc.stderr
    (row,) = read_rows(next(out.glob("*/*.csv")))
    assert row["power_method"] == "estimated" and row["power_source"] == "estimate(cpu)"
    assert 0 <= float(row["avg_power_w"]) <= 50.0
    assert float(row["j_per_output_token"]) == pytest.approx(
        float(row["energy_j"]) / int(row["output_tokens"]), rel=1e-3)
    assert "not a measurement" in row["power_note"]
    assert " est" in proc.stdout and "energy: ESTIMATED, not measured" in proc.stdout
