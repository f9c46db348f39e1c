"""The nightly CI workflow, the SkyPilot task and `make nightly`: syntax and required keys
(they cannot run here: no GPU runner, no cloud). `make nightly` itself runs in
tests/integration/test_make_nightly.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "nightly-gpu.yml"
SKY_TASK = ROOT / "sky" / "nightly.yaml"
CRON = re.compile(r"^(\S+\s+){4}\S+$")


def _load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), path
    return doc


def test_workflow_runs_make_nightly_on_a_self_hosted_gpu_runner_and_keeps_results():
    doc = _load(WORKFLOW)
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) >= {"schedule", "workflow_dispatch"}
    assert all(CRON.match(s["cron"]) for s in triggers["schedule"])
    job = doc["jobs"]["nightly"]
    assert "self-hosted" in job["runs-on"] and "gpu" in job["runs-on"]
    assert job["timeout-minutes"] <= 360
    steps = job["steps"]
    assert all("uses" in s or "run" in s for s in steps)
    runs = [s for s in steps if "make nightly" in s.get("run", "")]
    assert len(runs) == 1
    assert "${{" not in runs[0]["run"]  # inputs reach the shell through env, not inlined
    upload = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    results = [s for s in upload if s["with"]["path"] == "${{ env.NIGHTLY_OUT }}"]
    assert len(results) == 1 and results[0]["if"] == "always()"
    assert job["env"]["NIGHTLY_OUT"].startswith("results/nightly/")
    # the first night on new hardware hands its baseline back as an artifact to commit
    found = [s for s in steps if "new-baseline.txt" in s.get("run", "")]
    assert len(found) == 1 and "GITHUB_OUTPUT" in found[0]["run"] and found[0]["if"] == "always()"
    back = [s for s in upload if "steps.baseline.outputs.dir" in str(s["with"]["path"])]
    assert len(back) == 1 and back[0]["if"] == "always() && steps.baseline.outputs.dir != ''"


def test_sky_task_runs_make_nightly_on_a_gpu_and_copies_results_to_a_bucket():
    doc = _load(SKY_TASK)
    assert set(doc) >= {"name", "workdir", "resources", "setup", "run", "file_mounts", "envs"}
    assert re.match(r"^[A-Za-z0-9-]+:\d+$", str(doc["resources"]["accelerators"]))
    mount, spec = next(iter(doc["file_mounts"].items()))
    assert spec["mode"] == "MOUNT" and spec["name"]
    assert "make nightly" in doc["run"] and "make install" in doc["setup"]
    assert f"{mount}/nightly" in doc["run"]  # results copied into the mounted bucket
    assert "exit $rc" in doc["run"]  # the task fails when make nightly fails
    assert "new-baseline.txt" in doc["run"] and f"{mount}/reference" in doc["run"]
    for var in re.findall(r"\$\{?([A-Z_]+)\}?", doc["run"] + str(doc["file_mounts"])):
        assert var in doc["envs"] or var in {"PATH", "OUT", "rc", "NEW"}, var
