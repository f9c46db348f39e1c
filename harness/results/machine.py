"""The machine fingerprint: CPU, RAM, GPUs, OS; and a stable machine id derived from it."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import socket
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                  capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def _physical_cores() -> int:
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
        if n:
            return int(n)
    except ImportError:
        pass
    return os.cpu_count() or 1


def _ram_gb() -> float:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return round(pages / 2**30, 1)


def gpus() -> list[dict[str, Any]]:
    """NVIDIA GPUs through NVML (name, memory, driver), else nvidia-smi; Apple GPU on macOS."""
    found: list[dict[str, Any]] = []
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
            driver = driver.decode() if isinstance(driver, bytes) else driver
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                name = pynvml.nvmlDeviceGetName(h)
                name = name.decode() if isinstance(name, bytes) else name
                mem = pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**20
                found.append({"index": i, "name": name, "memory_mb": round(mem),
                              "driver": driver, "vendor": "nvidia"})
        finally:
            pynvml.nvmlShutdown()
        return found
    except Exception:  # noqa: BLE001 - NVML absent or broken: fall back below
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=index,name,memory.total,driver_version",
                 "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
            for line in out.stdout.strip().splitlines():
                idx, name, mem, driver = [p.strip() for p in line.split(",")]
                found.append({"index": int(idx), "name": name, "memory_mb": float(mem),
                              "driver": driver, "vendor": "nvidia"})
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    if not found and platform.system() == "Darwin" and platform.machine() == "arm64":
        found.append({"index": 0, "name": f"Apple {_cpu_model()} GPU", "memory_mb": None,
                      "driver": platform.mac_ver()[0], "vendor": "apple"})
    return found


@lru_cache(maxsize=1)
def fingerprint() -> dict[str, Any]:
    """What this machine is, as recorded in machine.json and every result row."""
    gpu_list = gpus()
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_cores": _physical_cores(),
        "cpu_threads": os.cpu_count() or 1,
        "ram_gb": _ram_gb(),
        "gpu_name": gpu_list[0]["name"] if gpu_list else "",
        "gpu_count": len(gpu_list),
        "gpu_driver": gpu_list[0]["driver"] if gpu_list else "",
        "gpus": gpu_list,
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "python_version": platform.python_version(),
    }
    info["machine_id"] = machine_id(info)
    return info


def machine_id(info: dict[str, Any]) -> str:
    """`<hostname>-<8 hex>`: readable, and different when the hardware differs."""
    key = "|".join(str(info.get(k, "")) for k in
                   ("hostname", "cpu_model", "cpu_threads", "ram_gb", "gpu_name", "gpu_count"))
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(info.get("hostname", "host")))[:40] or "host"
    return f"{host}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def load_avg_1m() -> float | None:
    """The 1-minute load average, or None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def harness_commit() -> str:
    """Git commit of the harness source, '+dirty' when it has local changes; '' if unknown."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return ""
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""
