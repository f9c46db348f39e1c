"""`make nightly` for real on a machine whose hardware has no baseline: the committed
reference holds another machine's results (results/reference/vm-776ad074, an Intel Xeon),
the run (against the loopback fake OpenAI server, so no model is needed) is kept as this
hardware's baseline with exit 0, and the next night compares against it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results.machine import fingerprint

ROOT = Path(__file__).resolve().parents[2]
OTHER = ROOT / "results" / "reference" / "vm-776ad074"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")]


@pytest.fixture
def fake_server():
    proc = subprocess.Popen([sys.executable, "-m", "harness.servers.fake", "--port", "0",
                             "--ttft-ms", "20", "--itl-ms", "2"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _make_nightly(base_url: str, reference: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-o", "install", "nightly", f"BASELINE={reference}",
         f"REFERENCE={reference}", f"NIGHTLY_OUT={out}", f"HARNESS={sys.executable} -m harness",
         f"ARGS=--backend openai --base-url {base_url} --model fake-model"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_first_night_on_new_hardware_keeps_the_run_and_the_next_compares(tmp_path,
                                                                        fake_server):
    reference = tmp_path / "reference"
    shutil.copytree(OTHER, reference / OTHER.name)
    other_cpu = json.loads((OTHER / "machine.json").read_text())["cpu_model"]
    here = fingerprint()
    if here["cpu_model"] == other_cpu:
        # on the reference's own kind of machine: make the copy another machine's
        other_cpu = "Other CPU 9999 (test)"
        for f in (reference / OTHER.name).iterdir():
            if f.suffix in (".csv", ".json"):
                f.write_text(f.read_text().replace("Intel(R) Xeon(R) Processor", other_cpu))

    first = _make_nightly(fake_server, reference, tmp_path / "n1")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    kept = Path((tmp_path / "n1" / "new-baseline.txt").read_text().strip())
    assert kept.parent == reference and kept.name != OTHER.name
    assert "kept as that hardware's baseline" in first.stdout
    csvs = list(kept.rglob("*_smoke.csv"))
    assert len(csvs) == 1 and (csvs[0].parent / "machine.json").is_file()
    this_cpu = json.loads((csvs[0].parent / "machine.json").read_text())["cpu_model"]
    assert this_cpu != other_cpu  # it really was another kind of machine
    assert (tmp_path / "n1" / "report.html").is_file()

    second = _make_nightly(fake_server, reference, tmp_path / "n2")
    # a regression verdict depends on the machine's noise; either way it was compared
    assert second.returncode in (0, 1), second.stdout[-3000:] + second.stderr[-3000:]
    compare_md = (tmp_path / "n2" / "compare.md").read_text()
    assert "kept as" not in compare_md and "output_throughput_tok_s" in compare_md
    assert not (tmp_path / "n2" / "new-baseline.txt").exists()
    assert (tmp_path / "n2" / "report.html").is_file()
