"""`make nightly` as the Makefile spells it: the dry run compares with the baseline and
fails on a regression, a first night with no reference keeps the run, and a missing
baseline stops with one line before anything is measured. In integration: it runs
`make`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")]


def test_make_nightly_dry_run_compares_with_the_baseline_and_fails_on_regression(tmp_path):
    baseline = tmp_path / "baseline.csv"
    baseline.write_text("schema_version,scenario\n")
    out = subprocess.run(["make", "-n", "nightly", f"BASELINE={baseline}",
                          f"NIGHTLY_OUT={tmp_path / 'n'}", "THRESHOLD=7"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "bench --workload smoke" in text
    assert f'base="{baseline}"' in text and f"report $base {tmp_path / 'n'}" in text
    assert f"--baseline {baseline} --same-hardware" in text
    assert "--new-hardware-baseline results/reference" in text
    assert "--fail-on-regression 7" in text


def test_make_nightly_with_no_reference_yet_goes_on_to_keep_the_run(tmp_path):
    reference = tmp_path / "reference"  # the first night: nothing committed yet
    out = subprocess.run(["make", "-n", "nightly", f"BASELINE={reference}",
                          f"REFERENCE={reference}", f"NIGHTLY_OUT={tmp_path / 'n'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert f"--new-hardware-baseline {reference}" in out.stdout


def test_make_nightly_without_baseline_stops_with_one_line(tmp_path):
    out = subprocess.run(["make", "--no-print-directory", "nightly",
                          f"BASELINE={tmp_path / 'missing'}", "-o", "install",
                          f"NIGHTLY_OUT={tmp_path / 'n'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0
    assert "nightly: no baseline at" in out.stdout
    assert not (tmp_path / "n").exists()
