"""Nightly on a new kind of machine: `harness compare --new-hardware-baseline DIR` keeps a
run whose hardware has no baseline as that hardware's baseline (exit 0, said plainly), and
the next run on that hardware is compared against it."""

from __future__ import annotations

import json
from pathlib import Path

from harness.cli.main import main
from tests.support.result_factory import run_rows, write_csv

EPYC = {"machine_id": "epyc-5e6f7a8b", "hostname": "epyc", "cpu_model": "AMD EPYC 7B13"}


def _nightly(out: Path, reference: Path, baseline: Path | None = None) -> list[str]:
    return ["compare", str(out), "--baseline", str(baseline or reference), "--same-hardware",
            "--new-hardware-baseline", str(reference), "--fail-on-regression", "10",
            "--format", "md"]


def _run(folder: Path, run_id: str, scale: float = 1.0, **machine) -> Path:
    rows = run_rows("cpu", run_id, scale=scale, **machine)
    csv = write_csv(folder / rows[0]["machine_id"] / f"{run_id}_smoke.csv", rows)
    (csv.parent / "machine.json").write_text(json.dumps(
        {k: rows[0][k] for k in ("machine_id", "hostname", "cpu_model")}))
    (csv.parent / f"{run_id}_smoke.requests.jsonl").write_text("")
    return csv


def test_a_run_on_new_hardware_becomes_its_baseline_and_the_next_night_compares(tmp_path,
                                                                                capsys):
    reference = tmp_path / "reference"
    _run(reference, "20260101T000000Z-xeon00")  # the committed Intel Xeon reference
    night1 = tmp_path / "nightly" / "1"
    _run(night1, "20260201T000000Z-epyc01", **EPYC)

    assert main(_nightly(night1, reference)) == 0
    out = capsys.readouterr().out
    kept = reference / "amd-epyc-7b13"
    assert "no baseline from this hardware (AMD EPYC 7B13)" in out
    assert f"kept as that hardware's baseline in {kept}/" in out
    machine_dir = kept / EPYC["machine_id"]
    assert sorted(p.name for p in machine_dir.iterdir()) == [
        "20260201T000000Z-epyc01_smoke.csv", "20260201T000000Z-epyc01_smoke.requests.jsonl",
        "machine.json"]
    assert (night1 / "new-baseline.txt").read_text().strip() == str(kept)
    assert (reference / "cpubox-1a2b3c4d").is_dir()  # the Xeon reference is untouched

    # the next night on the EPYC compares against the kept run: 30% slower fails
    night2 = tmp_path / "nightly" / "2"
    _run(night2, "20260202T000000Z-epyc02", scale=0.7, **EPYC)
    assert main(_nightly(night2, reference)) == 1
    captured = capsys.readouterr()
    assert "REGRESSION" in captured.out and "kept as" not in captured.out
    assert not (night2 / "new-baseline.txt").exists()
    # and the same speed passes
    night3 = tmp_path / "nightly" / "3"
    _run(night3, "20260203T000000Z-epyc03", **EPYC)
    assert main(_nightly(night3, reference)) == 0


def test_the_first_night_ever_with_no_reference_folder_keeps_the_run(tmp_path, capsys):
    reference = tmp_path / "reference"  # does not exist yet
    night = tmp_path / "nightly" / "1"
    _run(night, "20260201T000000Z-epyc01", **EPYC)
    assert main(_nightly(night, reference)) == 0
    assert (reference / "amd-epyc-7b13" / EPYC["machine_id"]).is_dir()
    assert "kept as that hardware's baseline" in capsys.readouterr().out


def test_without_the_flag_other_hardware_still_stops_and_a_missing_baseline_is_an_error(
        tmp_path, capsys):
    reference = tmp_path / "reference"
    _run(reference, "20260101T000000Z-xeon00")
    night = tmp_path / "nightly" / "1"
    _run(night, "20260201T000000Z-epyc01", **EPYC)
    assert main(["compare", str(night), "--baseline", str(reference), "--same-hardware"]) == 2
    assert "no baseline results from the hardware" in capsys.readouterr().err
    # a baseline path outside the reference folder that does not exist: a typo, exit 2
    assert main(_nightly(night, reference, baseline=tmp_path / "typo")) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert not (reference / "amd-epyc-7b13").exists()


def test_gpu_hardware_folder_names_count_and_model():
    from harness.analysis.compare import hardware_slug

    assert hardware_slug({"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": 8}) == \
        "8x-nvidia-h100-80gb-hbm3"
    assert hardware_slug({"cpu_model": "Intel(R) Xeon(R) Processor"}) == "intel-xeon-processor"
