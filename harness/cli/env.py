"""`harness env`: what this machine has (CPU, RAM, GPUs, backends, power meters)."""

from __future__ import annotations

import argparse
import json

from backends.registry import INSTALL_HINTS, importable_backends
from harness.power import meter_status
from harness.results.machine import fingerprint, load_avg_1m

HELP = "show what this machine has: CPU, RAM, GPUs, importable backends, power meters"
DESCRIPTION = "Print the machine fingerprint recorded with every result, which backends\n" \
              "import here, and which power meters are available (with the reason if not)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["table", "json"], default="table")


def collect() -> dict:

    info = dict(fingerprint())
    info["load_avg_1m"] = load_avg_1m()
    info["backends"] = importable_backends()
    info["backend_install"] = {name: INSTALL_HINTS.get(name, "")
                               for name, status in info["backends"].items() if status != "ok"}
    info["llamacpp_build"] = _llamacpp_build() if info["backends"].get("llamacpp") == "ok" \
        else ""
    info["power_meters"] = meter_status()
    return info


def _llamacpp_build() -> str:
    try:
        import llama_cpp

        return (f"{llama_cpp.__version__}; gpu offload: "
                f"{bool(llama_cpp.llama_supports_gpu_offload())}; "
                + llama_cpp.llama_print_system_info().decode(errors="replace").strip())
    except Exception as exc:  # noqa: BLE001 - a broken install is reported, not raised
        return f"import failed: {exc}"


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.format == "json":
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"machine     {info['machine_id']}")
    print(f"cpu         {info['cpu_model']} ({info['cpu_cores']} cores, "
          f"{info['cpu_threads']} threads, {info['arch']})")
    print(f"ram         {info['ram_gb']} GiB")
    if info["gpus"]:
        for g in info["gpus"]:
            print(f"gpu {g['index']}       {g['name']} ({g.get('memory_mb')} MiB, "
                  f"driver {g.get('driver')})")
    else:
        print("gpu         none found")
    print(f"os          {info['os']} · Python {info['python_version']}")
    print(f"load avg    {info['load_avg_1m']}")
    print("backends:")
    for name, status in info["backends"].items():
        print(f"  {name:10s} {'installed' if status == 'ok' else status}")
    for name, hint in info["backend_install"].items():
        print(f"  to add {name}: {hint}")
    if info["llamacpp_build"]:
        print(f"  llama.cpp  {info['llamacpp_build']}")
    print("power meters:")
    for m in info["power_meters"]:
        mark = "yes" if m["available"] else "no "
        print(f"  {m['name']:10s} {mark}  {m.get('method', ''):9s}  {m['reason']}")
    return 0
