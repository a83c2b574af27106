"""benchmarks/gpu_check.py: the prepared GPU run. Its dry run (every section at toy sizes on the
CPU) runs here, so that the script cannot rot between the rare sessions that have a GPU; a
crashed or hung section is recorded and the run goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
SECTIONS = ("env", "tests", "training", "sweeps", "gradients", "paper")


def _run(out: Path, *args: str, fault: str | None = None) -> tuple[dict, str, float]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    env.pop("GPU_CHECK_FAULT", None)
    if fault:
        env["GPU_CHECK_FAULT"] = fault
    start = time.monotonic()
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    took = time.monotonic() - start
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    return report, (out / "gpu_check.md").read_text(), took


def test_dry_run_runs_every_section_on_the_cpu(tmp_path: Path) -> None:
    # A generous run-wide budget: on a loaded CI machine a section must not be cut short by the
    # dry run's own tight budgets (how long it takes is measured in benchmarks/README.md, not
    # asserted here).
    report, markdown, _ = _run(tmp_path, "--budget", "1200")
    assert report["mode"].startswith("dry run") and report["options"]["device"] == "cpu"
    assert list(report["sections"]) == list(SECTIONS)
    for name, section in report["sections"].items():
        bad = [i for i in section["items"] if i["status"] != "ok"]
        assert section["status"] == "ok", (name, section.get("error"), bad)
        assert section["items"], name
    env = report["sections"]["env"]["items"][0]["values"]
    assert env["dependency_problems"] == [] and "torch" in env["dependencies"]
    training = [i["values"] for i in report["sections"]["training"]["items"]]
    assert {v["mode"] for v in training} == {"fp32", "bf16", "bf16+channels_last", "compiled"}
    assert all(v["img_per_s"] > 0 for v in training)
    sweeps = {i["name"].split(",")[0]: i for i in report["sections"]["sweeps"]["items"]}
    assert {"single", "multi", "exhaustive", "extrapolation"} <= set(sweeps)
    assert sweeps["single"]["values"]["agree"] and sweeps["single"]["values"]["ratio"] > 0
    assert sweeps["single"]["values"]["strategies"]  # prefix against mask, side by side
    gradients = [i["values"] for i in report["sections"]["gradients"]["items"]]
    assert any(v.get("way") == "exact" and v["peak_gib"] > 0 for v in gradients)
    assert any("sampled_over_exact" in v for v in gradients)
    paper = report["sections"]["paper"]
    assert "RANDOM-INIT" in paper["notes"][0]  # labelled, since no trained network is used
    stages = paper["items"][-1]["values"]["stages"]
    assert {"sweep_single_resnet", "paths", "gradients", "figures"} <= set(stages)
    for title in (
        "Environment",
        "CUDA tests",
        "Training throughput",
        "Sweep engine",
        "Gradients by path length",
        "The whole paper",
    ):
        assert f"## {title}" in markdown
    assert "random images" in markdown  # the synthetic data are said to be synthetic
    assert "could not render" not in markdown


def test_a_crashed_section_is_recorded_and_the_next_one_runs(tmp_path: Path) -> None:
    report, markdown, _ = _run(tmp_path, "--sections", "env,gradients", fault="env:crash")
    env, gradients = report["sections"]["env"], report["sections"]["gradients"]
    assert env["status"] == "failed" and "injected crash in section env" in env["error"]
    assert "\n" not in env["error"]
    assert gradients["status"] == "ok"
    assert "| env | failed |" in markdown


def test_a_hung_section_is_stopped_at_its_budget_and_the_reports_are_written(
    tmp_path: Path,
) -> None:
    report, _, _ = _run(tmp_path, "--sections", "env", "--budget", "6", fault="env:hang")
    env = report["sections"]["env"]
    assert env["status"] == "timed out" and "budget" in env["error"]


def test_killed_from_outside_it_ends_its_section_and_keeps_the_reports(tmp_path: Path) -> None:
    """The run tool's timeout kills the command: no section process may live on."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GPU_CHECK_FAULT": "env:hang"}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(SCRIPT),
            "--dry-run",
            "--out",
            str(tmp_path),
            "--sections",
            "env",
            "--budget",
            "60",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    report = tmp_path / "gpu_check.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the hung section has started
        if report.exists() and "env" in json.loads(report.read_text())["sections"]:
            break
        time.sleep(0.2)
    time.sleep(1)
    proc.terminate()
    proc.communicate(timeout=30)
    assert proc.returncode != 0
    time.sleep(0.5)
    left = [p for p in Path("/proc").glob("[0-9]*") if str(tmp_path) in _cmdline(p)]
    assert not left, "a section's process outlived the run"
    assert json.loads(report.read_text())["sections"]["env"]["status"] == "running"


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
