"""Result rows and CSV files for tests, built from the schema (no real run needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.results.files import rows_to_csv
from harness.results.schema import empty_row

MACHINES = {
    "cpu": {"machine_id": "cpubox-1a2b3c4d", "hostname": "cpubox",
            "cpu_model": "Intel Xeon 8480", "cpu_cores": 2, "cpu_threads": 2, "ram_gb": 24.0,
            "gpu_name": "", "gpu_count": 0, "os": "Linux 6.1", "device": "cpu",
            "power_method": "unavailable", "power_source": "none"},
    "h100": {"machine_id": "gpubox-9f8e7d6c", "hostname": "gpubox",
             "cpu_model": "AMD EPYC 9454", "cpu_cores": 16, "cpu_threads": 32, "ram_gb": 128.0,
             "gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": 1, "gpu_driver": "550.54",
             "os": "Linux 5.15", "device": "cuda", "power_method": "measured",
             "power_source": "nvml"},
}


def row(machine: str = "cpu", run_id: str = "20260101T000000Z-aaaaaa",
        scenario: str = "decode", concurrency: int = 1, throughput: float = 100.0,
        throughput_std: float = 1.0, repetitions: int = 3, ttft_ms: float = 50.0,
        ttft_std: float = 2.0, tpot_ms: float = 10.0, tpot_std: float = 0.2,
        requests: int = 12, weights: str = "real", settings: dict[str, Any] | None = None,
        workload: str = "smoke", energy: float | None = None, **extra: Any) -> dict[str, Any]:
    """One complete scenario row with plausible, self-consistent figures."""
    r = empty_row()
    r.update(MACHINES[machine])
    r.update(
        run_id=run_id, started_at_utc=run_id[:15], status="complete", backend="llamacpp",
        engine="llama.cpp", engine_version="0.3.36", model="Gemma 3 270m", quant="Q4_K_M",
        model_sha256="ab" * 32, weights=weights, workload=workload, scenario=scenario,
        load_mode="closed", concurrency=concurrency, input_tokens_target=16,
        output_tokens_target=32, repetitions=repetitions, warmup_requests=1,
        settings_json=json.dumps(settings or {"n_ctx": 512, "n_threads": 2}, sort_keys=True),
        requests=requests, errors=0, output_tokens=requests * 32, input_tokens=requests * 16,
        output_throughput_tok_s=throughput, output_throughput_tok_s_std=throughput_std,
        total_throughput_tok_s=throughput * 1.5, total_throughput_tok_s_std=throughput_std * 1.5,
        request_throughput_rps=throughput / 32, decode_tok_s=1000 / tpot_ms,
        ttft_ms_mean=ttft_ms, ttft_ms_std=ttft_std, ttft_ms_p50=ttft_ms,
        ttft_ms_p90=ttft_ms * 1.2, ttft_ms_p99=ttft_ms * 1.4,
        tpot_ms_mean=tpot_ms, tpot_ms_std=tpot_std, tpot_ms_p50=tpot_ms,
        tpot_ms_p90=tpot_ms * 1.1, tpot_ms_p99=tpot_ms * 1.3,
        e2e_ms_mean=ttft_ms + 31 * tpot_ms, e2e_ms_std=ttft_std, e2e_ms_p50=ttft_ms + 31 * tpot_ms,
        e2e_ms_p90=(ttft_ms + 31 * tpot_ms) * 1.1, e2e_ms_p99=(ttft_ms + 31 * tpot_ms) * 1.2,
        noisy=0,
    )
    if energy is not None:
        r.update(j_per_output_token=energy, energy_j=energy * requests * 32,
                 avg_power_w=energy * throughput)
    r.update(extra)
    return r


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows as a result CSV (creating folders) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rows_to_csv(rows), encoding="utf-8")
    return path


def run_rows(machine: str = "cpu", run_id: str = "20260101T000000Z-aaaaaa", scale: float = 1.0,
             **kw: Any) -> list[dict[str, Any]]:
    """The rows of a small sweep: prefill and decode at concurrency 1 and 4; `scale`
    multiplies throughput and divides latencies (a faster or slower machine)."""
    rows = []
    for scenario, base_tps, ttft in (("prefill", 40.0, 300.0), ("decode", 120.0, 40.0)):
        for conc in (1, 4):
            tps = base_tps * scale * (1 + 0.6 * (conc > 1))
            rows.append(row(machine, run_id, scenario=scenario, concurrency=conc,
                            throughput=tps, throughput_std=tps * 0.01,
                            ttft_ms=ttft / scale * (1 + 0.5 * (conc > 1)),
                            ttft_std=ttft / scale * 0.02, tpot_ms=9.0 / scale,
                            tpot_std=0.1 / scale, **kw))
    return rows
