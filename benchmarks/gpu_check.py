"""One prepared GPU run: the toolkit's GPU paths measured in at most 8 minutes, in one command.

Sections, each in its own process with its own time budget (a failure or a timeout is recorded
with its one-line error, and the next section runs; the reports are rewritten, atomically,
whenever a measurement finishes, so a killed run still leaves everything that finished):

1. ``env``: GPU, driver, torch, CUDA and cuDNN versions; the toolkit's dependencies there.
2. ``tests``: the pytest tests whose outcome depends on CUDA (bf16 AMP tolerance, device
   refusals, pinned memory).
3. ``training``: training-step throughput (img/s) of ResNet-20, -56 and -110: fp32, bf16
   autocast, bf16 + channels_last (``train``'s CUDA default) and torch.compile of that.
4. ``sweeps``: the sweep engine against the naive loop (``bench_engine.run_case``): every single
   deletion of ResNet-110 on 10,000 images, k-block deletions, all 2^n sub-networks.
5. ``gradients``: the exact path-length decomposition of ResNet-110 on 128 and 1,024 images
   (time, peak memory) against the ordinary gradient and the paper's sampled estimator.
6. ``paper``: ``reproduce``'s analyses of a trained ResNet-110 without training, end to end.

Data for sections 3-5 are random tensors already on the device (timing only); section 6 uses
the depth series' ResNet-110 checkpoint and Fashion-MNIST when they are there (see
``benchmarks/README.md``, "GPU check"), else says what it used instead.

    python3 benchmarks/gpu_check.py --out DIR            # on the GPU machine (bash gpu_run.sh)
    python3 benchmarks/gpu_check.py --dry-run --out DIR  # every section at toy sizes on the CPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(ROOT), str(HERE)):  # the package and the sibling benchmark scripts
    if _p not in sys.path:
        sys.path.insert(0, _p)

SECTIONS = ("env", "tests", "training", "sweeps", "gradients", "paper")
TITLES = {
    "env": "Environment",
    "tests": "CUDA tests",
    "training": "Training throughput",
    "sweeps": "Sweep engine against the naive loop",
    "gradients": "Gradients by path length",
    "paper": "The whole paper without training",
}
#: Tests only: "SECTION:crash" or "SECTION:hang" makes that section's process die or hang.
FAULT_ENV = "GPU_CHECK_FAULT"
CARRY = ROOT / ".gpu_carry"  # what benchmarks/gpu_prepare.sh vendors for the GPU machine
SYNTHETIC_NOTE = (
    "Sections training, sweeps and gradients time random images (3x32x32, already on the "
    "device) and untrained networks with randomised BatchNorm: speed only, no accuracy."
)

#: The pytest tests whose outcome depends on CUDA being there (grep tests/ for cuda and amp):
#: run on the GPU they check bf16 autocast within its tolerance on CUDA, and that the refusals
#: meant for machines without CUDA step aside (they skip there: expected).
TEST_FILES = (
    "tests/test_faults.py",
    "tests/test_checkpoints.py",
    "tests/test_bad_input.py",
    "tests/test_data.py",
)
TEST_SELECTION = "amp_stays or resolve_device or cuda or make_loader_is_deterministic"
TEST_MUST_COLLECT = (
    "test_amp_stays_within_the_documented_tolerance_of_fp32",
    "test_resolve_device",
)


# ----------------------------------------------------------------------------------------------
# Sizes: the GPU run and the CPU dry run differ only here


@dataclass(frozen=True)
class Sizes:
    budget_s: float  # the whole run
    budgets: dict[str, float]  # each section's own share
    train_models: tuple[str, ...]
    train_batch: int
    train_image: int
    train_warmup: int
    train_min_steps: int
    train_min_seconds: float
    compile_backend: str
    sweep_depth: int
    sweep_images: int
    sweep_batch: int
    sweep_repeats: int
    multi_images: int
    multi_max_k: int
    multi_samples: int
    naive_exhaustive_depth: int
    naive_exhaustive_images: int
    exhaustive_depths: tuple[int, ...]
    exhaustive_images: int
    grad_depth: int
    grad_images: tuple[int, ...]
    sampled_images: tuple[int, ...]
    sampled_probe: int
    sampled_full: int
    paper_depth: int
    paper_scale: dict[str, Any]
    test_files: tuple[str, ...]
    test_selection: str


GPU = Sizes(
    budget_s=470,
    budgets={"env": 20, "tests": 60, "training": 80, "sweeps": 110, "gradients": 60, "paper": 140},
    train_models=("resnet20", "resnet56", "resnet110"),
    train_batch=128,
    train_image=32,
    train_warmup=5,
    train_min_steps=20,
    train_min_seconds=2.0,
    compile_backend="inductor",
    sweep_depth=110,
    sweep_images=10_000,
    sweep_batch=256,
    sweep_repeats=1,  # after a warm-up, on a GPU of its own: time goes to 10,000 images instead
    multi_images=2_000,
    multi_max_k=10,
    multi_samples=4,
    naive_exhaustive_depth=26,  # n = 12
    naive_exhaustive_images=256,
    exhaustive_depths=(26, 32, 38),  # n = 12, 15, 18 (built-in CIFAR ResNets have 3m blocks)
    exhaustive_images=1_024,
    grad_depth=110,
    grad_images=(128, 1_024),
    sampled_images=(8, 128),
    sampled_probe=10,
    sampled_full=1_000,
    paper_depth=110,
    # The paper's scale (reproduce without --quick) on 10,000 test images, except the sampled
    # estimator: 100 paths per length here (section gradients times it at 1,000).
    paper_scale={"test_images": 10_000, "samples_per_length": 100},
    test_files=TEST_FILES,
    test_selection=TEST_SELECTION,
)

DRY = Sizes(
    budget_s=115,
    budgets={"env": 8, "tests": 35, "training": 15, "sweeps": 20, "gradients": 12, "paper": 25},
    train_models=("resnet8",),
    train_batch=4,
    train_image=16,
    train_warmup=1,
    train_min_steps=2,
    train_min_seconds=0.0,
    compile_backend="eager",  # dynamo traces the model, no C++ build: seconds, not minutes
    sweep_depth=8,
    sweep_images=32,
    sweep_batch=16,
    sweep_repeats=1,
    multi_images=32,
    multi_max_k=1,  # ResNet-8 has one block that does not downsample
    multi_samples=2,
    naive_exhaustive_depth=8,
    naive_exhaustive_images=8,
    exhaustive_depths=(8, 14),
    exhaustive_images=8,
    grad_depth=8,
    grad_images=(2, 4),
    sampled_images=(2,),
    sampled_probe=1,
    sampled_full=3,
    paper_depth=8,
    paper_scale={
        "test_images": 16,
        "max_k": 2,
        "max_swaps": 2,
        "samples": 1,
        "gradient_images": 2,
        "samples_per_length": 1,
        "sign_draws": 2,
        "subnetwork_images": 8,
        "subnetwork_samples": 8,
        "max_exhaustive": 3,
    },
    # pytest's start-up costs most here; the AMP test's two CPU sweeps take 20 s more. The dry
    # run checks that the GPU selection's tests still exist, and runs one.
    test_files=("tests/test_checkpoints.py",),
    test_selection="resolve_device",
)


# ----------------------------------------------------------------------------------------------
# Small helpers (standard library only: the parent process imports nothing else)


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    line = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------------------------
# The child side: one section, its measurements saved one by one


@dataclass
class Section:
    """A running section: each ``item`` is one measurement, saved as soon as it ends."""

    name: str
    partial: Path
    deadline: float
    sizes: Sizes
    device: str
    options: dict[str, Any]
    items: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    running: str | None = None

    def left(self) -> float:
        return self.deadline - time.time()

    def save(self, **extra: Any) -> None:
        state = {"items": self.items, "notes": self.notes, "running": self.running, **extra}
        write_atomic(self.partial, json.dumps(state, indent=1, default=_jsonable))

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.save()

    def item(self, name: str, fn: Callable[[], dict[str, Any]], need: float = 0.0) -> Any:
        """Run one measurement unless the section's time would run out first (``need``: its
        expected seconds); a failure is recorded and the section goes on."""
        left = self.left()
        if need > left:
            self.items.append(
                {
                    "name": name,
                    "status": "skipped",
                    "error": f"needs about {need:.0f} s, {left:.0f} s left",
                }
            )
            self.save()
            return None
        self.running = name
        self.save()
        print(f"[{self.name}] {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        entry: dict[str, Any] = {"name": name}
        try:
            values = fn()
            entry.update(status="ok", values=values)
        except Exception as err:  # noqa: BLE001 - every failure is a result here
            entry.update(status="failed", error=one_line(err))
            traceback.print_exc(file=sys.stderr)
            _free_cuda()
        entry["seconds"] = round(time.perf_counter() - start, 3)
        self.items.append(entry)
        self.running = None
        self.save()
        print(
            f"[{self.name}] {name}: {entry['status']} ({entry['seconds']:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        return entry.get("values")


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "__dict__"):
        return vars(obj)
    return str(obj)


def _free_cuda() -> None:
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], device: str) -> tuple[Any, float]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


# -- 1. environment ----------------------------------------------------------------------------


def _requirements() -> list[tuple[str, str]]:
    """(name, minimum version) of the toolkit's dependencies, read from pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies\s*=\s*\[(.*?)\]", text, re.S | re.M)
    found = re.findall(
        r'"([A-Za-z0-9_.\-]+)\s*(?:>=\s*([0-9.]+))?', block.group(1) if block else ""
    )
    test = re.search(r"^test\s*=\s*\[(.*?)\]", text, re.M)
    found += re.findall(r'"([A-Za-z0-9_.\-]+)\s*(?:>=\s*([0-9.]+))?', test.group(1) if test else "")
    return [(name, low) for name, low in found if name != "ruff"]  # ruff lints; not needed there


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", v.split("+")[0])[:3])


def section_env(sec: Section) -> None:
    def versions() -> dict[str, Any]:
        import importlib.metadata as md

        import torch

        out: dict[str, Any] = {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "cuda_runtime": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "cuda_available": torch.cuda.is_available(),
            "tf32_conv": getattr(torch.backends.cudnn, "allow_tf32", None),
            "tf32_matmul": getattr(torch.backends.cuda.matmul, "allow_tf32", None),
        }
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            out.update(
                gpu=p.name,
                gpu_count=torch.cuda.device_count(),
                capability=f"{p.major}.{p.minor}",
                sms=p.multi_processor_count,
                gpu_memory_gib=round(p.total_memory / 2**30, 1),
            )
        deps, problems = {}, []
        for name, low in _requirements():
            try:
                have = md.version(name)
            except md.PackageNotFoundError:
                deps[name] = None
                problems.append(f"{name} missing")
                continue
            deps[name] = have
            if low and _version_tuple(have) < _version_tuple(low):
                problems.append(f"{name} {have} < {low}")
        out["dependencies"] = deps
        out["dependency_problems"] = problems
        commit = CARRY / "commit.txt"
        if commit.exists():
            out["commit"] = commit.read_text().strip()
        else:
            with contextlib.suppress(Exception):
                out["commit"] = subprocess.run(
                    ["git", "rev-parse", "HEAD"],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=True,
                ).stdout.strip()
        return out

    def smi() -> dict[str, Any]:
        query = "name,driver_version,memory.total,clocks.max.sm,power.limit"
        res = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return {"nvidia_smi": res.stdout.strip()}

    sec.item("versions", versions)
    if sec.device.startswith("cuda"):
        sec.item("nvidia-smi", smi)
        sec.item("bf16 matmul 8192^3", lambda: _matmul_probe(sec.device))


def _matmul_probe(device: str) -> dict[str, Any]:
    """What the chip gives on the easiest work (a sanity check of the clocks, not the toolkit)."""
    import torch

    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _, t = _timed(lambda: [a @ b for _ in range(10)], device)
    return {"tflops": round(10 * 2 * 8192**3 / t / 1e12, 1)}


# -- 2. CUDA tests -----------------------------------------------------------------------------


def section_tests(sec: Section) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    if sec.device == "cpu":
        env["OMP_NUM_THREADS"] = "1"  # as child_main: tiny work, maybe a busy machine
    base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts="]
    base += sec.sizes.test_files
    selection = sec.sizes.test_selection

    def selection_check() -> dict[str, Any]:
        """The tests this section exists for are still there (a rename would silently shrink
        the selection; the dry run runs one cheap test but still checks them all)."""
        text = "".join((ROOT / f).read_text() for f in TEST_FILES)
        missing = [t for t in TEST_MUST_COLLECT if f"def {t}(" not in text]
        if missing:
            raise RuntimeError(f"tests renamed or gone: {missing}; update TEST_MUST_COLLECT")
        return {"files": list(TEST_FILES), "selection": selection}

    def run() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            xml = Path(tmp) / "junit.xml"
            res = subprocess.run(
                [*base, "-q", "-k", selection, f"--junitxml={xml}"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=max(5, sec.left() - 3),
            )
            tests = _junit(xml) if xml.exists() else []
        summary = (res.stdout.strip().splitlines() or [""])[-1]
        failed = [t for t in tests if t["outcome"] == "failed"]
        if res.returncode != 0 or failed:
            first = failed[0] if failed else {"id": "pytest", "message": summary}
            sec.items.append({"name": "test results", "status": "ok", "values": {"tests": tests}})
            raise RuntimeError(f"{len(failed)} failed ({first['id']}: {first['message']})")
        return {"summary": summary, "tests": tests}

    def refusal() -> dict[str, Any]:
        """The refusal a machine WITH CUDA can give (the pytest cases cover those without):
        a GPU index past the last one, in one line, exit 1, before any work."""
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        device = f"cuda:{count}" if count else "cuda"
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "resnet_ensemble",
                "--drop-block",
                "1",
                "--limit",
                "8",
                "--device",
                device,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=max(5, sec.left() - 3),
        )
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        expected = "CUDA device(s)" if count else "CUDA is not available"
        if res.returncode != 1 or len(lines) != 1 or expected not in lines[0]:
            raise RuntimeError(f"--device {device}: exit {res.returncode}, stderr {lines[-2:]}")
        return {"device": device, "exit": res.returncode, "message": lines[0]}

    sec.item("refusal of a missing GPU", refusal)
    if sec.item("selection", selection_check) is not None:
        sec.item("run", run)


def _junit(path: Path) -> list[dict[str, Any]]:
    import xml.etree.ElementTree as ET

    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = "failed" if tag != "skipped" else "skipped"
                message = (node.get("message") or node.text or "").strip().splitlines()[:1]
                message = message[0][:200] if message else ""
        name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        tests.append(
            {
                "id": name,
                "outcome": outcome,
                "seconds": float(case.get("time", 0)),
                "message": message,
            }
        )
    return tests


# -- 3. training throughput --------------------------------------------------------------------

TRAIN_MODES = {  # name: (bf16 autocast, channels_last, torch.compile)
    "fp32": (False, False, False),
    "bf16": (True, False, False),
    "bf16+channels_last": (True, True, False),
    "compiled": (True, True, True),
}


def train_throughput(name: str, mode: str, sizes: Sizes, device: str) -> dict[str, Any]:
    """img/s of SGD training steps (forward, backward, momentum update) on one fixed batch:
    the model's compute alone, no data loading or augmentation."""
    import torch
    import torch.nn.functional as F

    from resnet_ensemble.models import build_builtin

    amp, channels_last, compiled = TRAIN_MODES[mode]
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = device.startswith("cuda")  # as train() does on CUDA
    model = build_builtin(name).to(device).train()
    batch = sizes.train_batch
    size = sizes.train_image
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    forward = torch.compile(model, backend=sizes.compile_backend) if compiled else model
    cast = (
        torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
        if amp
        else contextlib.nullcontext()
    )

    def step() -> Any:
        with cast:
            loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _, first = _timed(step, device)  # compiles, picks cuDNN kernels
    for _ in range(sizes.train_warmup):
        step()
    _sync(device)
    steps, start = 0, time.perf_counter()
    while steps < sizes.train_min_steps or time.perf_counter() - start < sizes.train_min_seconds:
        loss = step()
        steps += 1
        if steps % 10 == 0:
            _sync(device)
    _sync(device)
    elapsed = time.perf_counter() - start
    if not bool(torch.isfinite(loss)):
        raise FloatingPointError(f"loss is {float(loss)} after {steps} steps")
    out = {
        "model": name,
        "mode": mode,
        "batch": batch,
        "image": size,
        "steps": steps,
        "img_per_s": round(steps * batch / elapsed, 1),
        "step_ms": round(1000 * elapsed / steps, 3),
        "first_step_s": round(first, 2),
    }
    if compiled:
        out["compile_backend"] = sizes.compile_backend
    if device.startswith("cuda"):
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def section_training(sec: Section) -> None:
    sz = sec.sizes
    for mode in ("fp32", "bf16", "bf16+channels_last"):
        for name in sz.train_models:
            sec.item(
                f"{name} {mode}", lambda n=name, m=mode: train_throughput(n, m, sz, sec.device)
            )
    for name in sz.train_models:  # compiling costs most; smallest first
        depth = int(name.removeprefix("resnet"))
        need = (10 + 0.5 * depth) if sz.compile_backend == "inductor" else 0
        sec.item(
            f"{name} compiled",
            lambda n=name: train_throughput(n, "compiled", sz, sec.device),
            need=need,
        )


# -- 4. sweep engine ---------------------------------------------------------------------------


def _case(
    sec: Section,
    case: str,
    depth: int,
    images: int,
    *,
    dtype: str = "fp32",
    max_k: int = 10,
    samples: int = 4,
    compare_mask: bool = True,
    repeats: int | None = None,
) -> dict[str, Any]:
    import bench_engine

    result, strategies = bench_engine.run_case(
        case,
        depth,
        images,
        sec.sizes.sweep_batch,
        repeats or sec.sizes.sweep_repeats,
        sec.device,
        dtype,
        "auto",
        max_k,
        samples,
        compare_mask,
    )
    return {**result.row(), "dtype": dtype, "strategies": strategies}


def subnetworks_time(depth: int, strategy: str, sizes: Sizes, device: str) -> dict[str, Any]:
    """Seconds of ``evaluate_subnetworks`` (what ``paths --exhaustive`` runs) over all 2^n
    subsets of blocks of a ResNet-``depth``, after a warm-up."""
    from bench_engine import _batches, _model

    from resnet_ensemble.core.engine import evaluate_routes
    from resnet_ensemble.studies.subnetworks import evaluate_subnetworks

    n = 3 * ((depth - 2) // 6)
    model = _model(depth, device)
    data = _batches(sizes.exhaustive_images, sizes.sweep_batch, device)
    evaluate_routes(model, data[:1], [list(range(n)), []], strategy=strategy)  # warm-up
    frame, t = _timed(
        lambda: evaluate_subnetworks(model, data, max_exhaustive=n, strategy=strategy), device
    )
    return {
        "n": n,
        "model": f"resnet{depth}",
        "strategy": strategy,
        "subnetworks": len(frame),
        "images": sizes.exhaustive_images,
        "seconds": round(t, 3),
        "images_subnetworks_per_s": round(len(frame) * sizes.exhaustive_images / t),
    }


def exhaustive_series(sec: Section) -> None:
    """All 2^n sub-networks, n rising while the doubling time fits the budget; prefix against
    mask at the first n, then only the faster one. Ends with the time extrapolated to n = 20."""
    sz, device = sec.sizes, sec.device
    strategies = ["prefix", "mask"]
    last: tuple[int, float] | None = None
    for depth in sz.exhaustive_depths:
        n = 3 * ((depth - 2) // 6)
        need = 0.0 if last is None else 1.2 * last[1] * 2 ** (n - last[0])
        times: dict[str, float] = {}
        for strategy in strategies:
            got = sec.item(
                f"all 2^{n} sub-networks, {strategy}",
                lambda d=depth, s=strategy: subnetworks_time(d, s, sz, device),
                need=need,
            )
            if got:
                times[strategy] = got["seconds"]
            _free_cuda()
        if not times:
            break
        best = min(times, key=times.__getitem__)
        strategies = [best]
        last = (n, times[best])
    best_by_n: dict[int, float] = {}
    for v in _ok(sec.items, "all 2^"):
        best_by_n[v["n"]] = min(best_by_n.get(v["n"], float("inf")), v["seconds"])
    if len(best_by_n) >= 2:
        (n1, t1), (n2, t2) = sorted(best_by_n.items())[-2:]
        factor = (t2 / t1) ** (1 / (n2 - n1))
        at20 = t2 * factor ** (20 - n2) * 10_000 / sz.exhaustive_images
        values = {
            "per_block_factor": round(factor, 3),
            "from_n": [n1, n2],
            "n20_10000_images_s": round(at20),
        }
        sec.items.append(
            {"name": "extrapolation", "status": "ok", "seconds": 0.0, "values": values}
        )
        sec.save()


def forward_cost(depth: int, batch: int, device: str) -> float:
    """Seconds per image of one full forward of a ResNet-``depth`` (best of 3, after a warm-up):
    what one route costs the naive loop, to size the cases to the budget before they start."""
    import torch
    from bench_engine import _batches, _model

    model = _model(depth, device)
    x = _batches(batch, batch, device)[0][0]
    with torch.inference_mode():
        model(x)
        return min(_timed(lambda: model(x), device)[1] for _ in range(3)) / batch


def _fit(sec: Section, wanted: int, per_image_s: float, share: float) -> int:
    """The most images, in whole batches and at most ``wanted``, whose predicted time fits
    ``share`` of the section's time left."""
    batch = sec.sizes.sweep_batch
    fits = int(share * sec.left() / max(per_image_s, 1e-12)) // batch * batch
    images = min(wanted, max(batch, fits))
    if images < wanted:
        sec.note(f"{wanted:,} images would not fit the budget: {images:,} instead")
    return images


def section_sweeps(sec: Section) -> None:
    sz, device = sec.sizes, sec.device
    depth, n = sz.sweep_depth, 3 * ((sz.sweep_depth - 2) // 6)
    d_ex = sz.naive_exhaustive_depth
    n_ex = 3 * ((d_ex - 2) // 6)
    costs = sec.item(
        "forward cost probe",
        lambda: {
            f"resnet{d}_s_per_image": forward_cost(d, sz.sweep_batch, device) for d in (depth, d_ex)
        },
    )
    # Predicted seconds per image of each case (best of `repeats`, naive, auto, prefix and mask
    # interleaved, then bench_engine's 6 timed calls per piece for the timed limit); rough, only
    # to keep one case from taking the whole section.
    c = costs[f"resnet{depth}_s_per_image"] if costs else 0.0
    c_ex = costs[f"resnet{d_ex}_s_per_image"] if costs else 0.0
    reps = sz.sweep_repeats
    single = _fit(sec, sz.sweep_images, c * (reps * (n + 1) * 3.5 + 12), 0.5)
    sec.item(
        f"single, resnet{depth}, {single} images",
        lambda: _case(sec, "single", depth, single),
    )
    routes = sz.multi_max_k * sz.multi_samples + 1
    multi = _fit(sec, sz.multi_images, c * (reps * routes * 3.5 + 12), 0.25)
    sec.item(
        f"multi, resnet{depth}, {multi} images",
        lambda: _case(sec, "multi", depth, multi, max_k=sz.multi_max_k, samples=sz.multi_samples),
    )
    ex = _fit(sec, sz.naive_exhaustive_images, c_ex * (reps * 2**n_ex + 12), 0.25)
    sec.item(
        f"exhaustive, resnet{d_ex}, {ex} images",
        lambda: _case(sec, "exhaustive", d_ex, ex, compare_mask=False),
    )
    exhaustive_series(sec)
    done = next((i for i in sec.items if i["name"].startswith("single") and "values" in i), None)
    sec.item(
        f"single bf16, resnet{depth}, {single} images",
        lambda: _case(sec, "single", depth, single, dtype="bf16", compare_mask=False, repeats=1),
        need=0.6 * done["seconds"] / reps if done else 0.0,
    )


# -- 5. gradients ------------------------------------------------------------------------------


def section_gradients(sec: Section) -> None:
    import bench_gradient_memory as bgm
    import torch
    from benchmark_models import randomize_batchnorm

    from resnet_ensemble.core.gradients import path_length_gradients, sample_path_gradients
    from resnet_ensemble.models import cifar_resnet

    sz, device = sec.sizes, sec.device
    depth = sz.grad_depth
    n = 3 * ((depth - 2) // 6)
    sec.item("warm-up", lambda: bgm._measure("ordinary", depth, 2, device))  # CUDA, cuDNN
    done: dict[str, tuple[int, float]] = {}  # way: (images, seconds) of its last measurement
    for images in sz.grad_images:
        for way in ("ordinary", "exact"):
            last = done.get(way)
            got = sec.item(
                f"{way}, resnet{depth}, {images} images",
                lambda w=way, i=images: {
                    "way": w,
                    "images": i,
                    **bgm._measure(w, depth, i, device),
                },
                need=1.2 * last[1] * images / last[0] if last else 0.0,
            )
            if got:
                done[way] = (images, got["seconds"])

    torch.manual_seed(0)
    model = randomize_batchnorm(cifar_resnet(depth)).eval().to(device)
    for images in sz.sampled_images:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(images, 3, 32, 32, generator=g).to(device)
        y = torch.randint(0, 10, (images,), generator=g).to(device)
        exact = sec.item(
            f"exact, {images} images (for the ratio)",
            lambda x=x, y=y: {
                "seconds": _timed(lambda: path_length_gradients(model, x, y), device)[1]
            },
        )
        probe = sec.item(
            f"sampled, {sz.sampled_probe} per length, {images} images",
            lambda x=x, y=y: {
                "seconds": _timed(
                    lambda: sample_path_gradients(model, (x, y), sz.sampled_probe, seed=0), device
                )[1]
            },
        )
        if not probe:
            continue
        predicted = probe["seconds"] * sz.sampled_full / sz.sampled_probe
        full = sec.item(
            f"sampled, {sz.sampled_full} per length, {images} images",
            lambda x=x, y=y: {
                "seconds": _timed(
                    lambda: sample_path_gradients(model, (x, y), sz.sampled_full, seed=0), device
                )[1]
            },
            need=1.2 * predicted,
        )
        seconds = full["seconds"] if full else predicted
        sec.items.append(
            {
                "name": f"ratio, {images} images",
                "status": "ok",
                "seconds": 0.0,
                "values": {
                    "images": images,
                    "n": n,
                    "paths": sz.sampled_full * (n + 1),
                    "sampled_s": round(seconds, 3),
                    "sampled_measured": bool(full),
                    "exact_s": round(exact["seconds"], 3) if exact else None,
                    "sampled_over_exact": round(seconds / exact["seconds"], 1) if exact else None,
                },
            }
        )
        sec.save()


# -- 6. the paper without training -------------------------------------------------------------


def _find_checkpoint(options: dict[str, Any], depth: int) -> Path | None:
    if options.get("checkpoint"):
        return Path(options["checkpoint"])
    name = f"resnet{depth}.pt"
    for where in (
        CARRY / "checkpoints",
        ROOT / "results/depth/checkpoints",
        ROOT / "results/depth/train",
        ROOT / "results/depth",
    ):
        if (where / name).is_file():
            return where / name
    return None


def _rel(path: Path) -> str:
    full = path.resolve()
    return str(full.relative_to(ROOT)) if full.is_relative_to(ROOT) else str(path)


def _fashion_dir(options: dict[str, Any]) -> str | None | bool:
    """A folder with the four Fashion-MNIST files: --data-dir, the carried copy, else None for
    the system folder where that exists; False when there are none."""
    from resnet_ensemble.data.datasets import FASHION_MNIST_SYSTEM_DIR

    if options.get("data_dir"):
        return str(options["data_dir"])
    if (CARRY / "fashion-mnist").is_dir():
        return str(CARRY / "fashion-mnist")
    return None if Path(FASHION_MNIST_SYSTEM_DIR).is_dir() else False


def paper_inputs(sec: Section, tmp: Path) -> dict[str, Any]:
    """The model and data for the paper section, and how to label them."""
    import torch
    from benchmark_models import randomize_batchnorm

    from resnet_ensemble.models import cifar_resnet
    from resnet_ensemble.models.checkpoints import load_checkpoint, save_checkpoint

    depth = sec.sizes.paper_depth
    found = (
        None
        if sec.options.get("dry_run") and not sec.options.get("checkpoint")
        else (_find_checkpoint(sec.options, depth))
    )
    fashion = _fashion_dir(sec.options)
    if found is not None:
        ckpt = load_checkpoint(found)
        dataset = str(ckpt.get("dataset"))
        meta = ckpt.get("metadata") or {}
        label = (
            f"trained {ckpt.get('arch')} from {_rel(found)} "
            f"(epoch {ckpt.get('epoch')}, dataset {dataset}, "
            f"test error {meta.get('final_test_error', meta.get('test_error', '?'))})"
        )
        spec = str(found)
    else:
        dataset = "fashion-mnist"
        torch.manual_seed(0)
        kwargs = {"num_classes": 10, "in_channels": 1}
        model = randomize_batchnorm(cifar_resnet(depth, **kwargs))
        spec = str(tmp / f"random_resnet{depth}.pt")
        save_checkpoint(
            spec,
            model,
            arch=f"resnet{depth}",
            arch_kwargs=kwargs,
            dataset=dataset,
            metadata={"note": "random init, randomised BN"},
        )
        label = (
            f"RANDOM-INIT ResNet-{depth} with randomised BatchNorm (no trained checkpoint "
            "found): timings only, its errors mean nothing"
        )
    data_dir = None
    if dataset == "fashion-mnist":
        if fashion is False or sec.options.get("dry_run"):
            dataset = "embedded"  # the 2,000 Fashion-MNIST test images shipped in the package
            why = "dry run" if sec.options.get("dry_run") else "no Fashion-MNIST files found"
            label += f"; data: the 2,000 embedded Fashion-MNIST test images ({why})"
        else:
            from resnet_ensemble.data.datasets import load_dataset

            data_dir = fashion or None
            sizes = {
                sp: len(load_dataset(dataset, sp, data_dir=data_dir)) for sp in ("test", "train")
            }
            label += (
                f"; data: Fashion-MNIST from {_rel(Path(data_dir)) if data_dir else 'the system'}"
                f", {sizes['test']:,} test images, {sizes['train']:,} training images (the "
                "gradient batches are drawn from these)"
            )
    return {"spec": spec, "dataset": dataset, "data_dir": data_dir, "label": label}


def section_paper(sec: Section) -> None:
    from resnet_ensemble.studies.reproduce import PAPER_SCALE, Reproduction

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        inputs = sec.item("model and data", lambda: paper_inputs(sec, tmp))
        if not inputs:
            return
        sec.note(inputs["label"])
        scale = replace(PAPER_SCALE, **sec.sizes.paper_scale)
        out = tmp / "paper"
        log: list[str] = []

        def progress(line: str) -> None:
            log.append(line)
            print(f"[paper] {line}", file=sys.stderr, flush=True)
            sec.save(stages=_read_json(out / "stages.json"), log_tail=log[-5:])

        def run() -> dict[str, Any]:
            rep = Reproduction(
                out,
                dataset=inputs["dataset"],
                data_dir=inputs["data_dir"],
                scale=scale,
                model=inputs["spec"],
                device=sec.device,
                log=progress,
                command="benchmarks/gpu_check.py (paper section)",
            )
            summary = rep.run()
            return {
                "scale": asdict(scale),
                "stages": _read_json(out / "stages.json"),
                "summary": summary.read_text(),
            }

        sec.item("reproduce, analyses only", run)


# ----------------------------------------------------------------------------------------------
# The parent: sections one after another, reports after every change

RUNNERS: dict[str, Callable[[Section], None]] = {
    "env": section_env,
    "tests": section_tests,
    "training": section_training,
    "sweeps": section_sweeps,
    "gradients": section_gradients,
    "paper": section_paper,
}


def child_main(args: argparse.Namespace) -> int:
    options = json.loads(args.options)
    sizes = DRY if options["dry_run"] else GPU
    sec = Section(
        args.child, Path(args.partial), float(args.deadline), sizes, options["device"], options
    )
    sec.save()
    with contextlib.suppress(Exception):  # Linux: die with the parent, whatever kills it
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    fault = os.environ.get(FAULT_ENV, "")
    if fault == f"{args.child}:crash":
        raise SystemExit(f"RuntimeError: injected crash in section {args.child}")
    if fault == f"{args.child}:hang":
        time.sleep(3600)
    if options["device"] == "cpu":
        import torch

        # Toy sizes: one thread; several would spin at every tiny op's barrier, badly so on a
        # busy machine (measured: 3-5x slower here with 2 threads and a training job beside).
        torch.set_num_threads(1)
    RUNNERS[args.child](sec)
    return 0


class Report:
    def __init__(self, out: Path, mode: str, options: dict[str, Any], sizes: Sizes) -> None:
        self.out, self.mode, self.options, self.sizes = out, mode, options, sizes
        self.started = time.time()
        self.sections: dict[str, dict[str, Any]] = {}

    def payload(self) -> dict[str, Any]:
        env = next(
            (
                i.get("values", {})
                for i in self.sections.get("env", {}).get("items", [])
                if i.get("name") == "versions"
            ),
            {},
        )
        return {
            "tool": "benchmarks/gpu_check.py",
            "mode": self.mode,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
            "elapsed_s": round(time.time() - self.started, 1),
            "machine": env.get("gpu") or platform.processor() or platform.machine(),
            "torch": env.get("torch"),
            "cuda": env.get("cuda_runtime"),
            "commit": env.get("commit"),
            "budget_s": self.sizes.budget_s,
            "data_note": SYNTHETIC_NOTE,
            "options": self.options,
            "sections": self.sections,
        }

    def write(self) -> None:
        payload = self.payload()
        write_atomic(self.out / "gpu_check.json", json.dumps(payload, indent=2, default=str) + "\n")
        write_atomic(self.out / "gpu_check.md", render_markdown(payload))


def run_section(name: str, report: Report, deadline: float, argv0: str) -> None:
    sizes = report.sizes
    later = sum(
        sizes.budgets[s]
        for s in SECTIONS[SECTIONS.index(name) + 1 :]
        if s in report.options["sections"]
    )
    now = time.time()
    timeout = min(deadline - now, max(sizes.budgets[name], deadline - now - later))
    entry: dict[str, Any] = {
        "title": TITLES[name],
        "status": "running",
        "items": [],
        "notes": [],
        "budget_s": round(timeout, 1),
    }
    report.sections[name] = entry
    if timeout < 3:
        entry.update(status="skipped", error="no time left in the run's budget")
        report.write()
        return
    with tempfile.TemporaryDirectory() as tmp:
        partial = Path(tmp) / "partial.json"
        cmd = [
            sys.executable,
            argv0,
            "--child",
            name,
            "--partial",
            str(partial),
            "--deadline",
            str(now + timeout - 2),
            "--options",
            json.dumps(report.options),
        ]
        stderr = Path(tmp) / "stderr.txt"
        with open(stderr, "w") as err_file, open(stderr, errors="replace") as follow:
            # Its own process group (not a session: the run tool's kill must still reach it),
            # so that a timeout ends the section's children (pytest) too.
            proc = subprocess.Popen(
                cmd, cwd=ROOT, stdout=err_file, stderr=subprocess.STDOUT, preexec_fn=os.setpgrp
            )
            _CHILDREN.add(proc.pid)
            seen = 0.0
            timed_out = False
            while proc.poll() is None:
                time.sleep(0.5)
                sys.stderr.write(follow.read())  # the section's progress, live, into the log
                with contextlib.suppress(OSError):
                    mtime = partial.stat().st_mtime
                    if mtime != seen:
                        seen = mtime
                        _merge(entry, partial)
                        report.write()
                if time.time() > now + timeout:
                    timed_out = True
                    _kill(proc.pid)
                    proc.wait()
            _kill(proc.pid)  # whatever it left behind
            _CHILDREN.discard(proc.pid)
            sys.stderr.write(follow.read())
        tail = stderr.read_text(errors="replace")
        _merge(entry, partial)
        entry["seconds"] = round(time.time() - now, 1)
        if timed_out:
            running = entry.get("running")
            entry.update(
                status="timed out",
                error=f"stopped at its {timeout:.0f} s budget"
                + (f" during {running!r}" if running else ""),
            )
        elif proc.returncode != 0:
            lines = [ln for ln in tail.strip().splitlines() if ln.strip()]
            entry.update(
                status="failed", error=(lines[-1] if lines else f"exit {proc.returncode}")[:300]
            )
        else:
            bad = [i for i in entry["items"] if i.get("status") == "failed"]
            entry["status"] = "ok" if not bad else "some failed"
            if bad:
                entry["error"] = f"{bad[0]['name']}: {bad[0].get('error')}"
    report.write()


_CHILDREN: set[int] = set()


def _kill(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _on_signal(signum: int, _frame: Any) -> None:
    """Killed from outside (the run tool's timeout, ^C): end the running section's processes;
    the reports already hold everything that finished."""
    for pgid in list(_CHILDREN):
        _kill(pgid)
    sys.exit(128 + signum)


def _merge(entry: dict[str, Any], partial: Path) -> None:
    state = _read_json(partial)
    if state:
        entry.update(
            {
                k: v
                for k, v in state.items()
                if k in ("items", "notes", "running", "stages", "log_tail")
            }
        )


# ----------------------------------------------------------------------------------------------
# Markdown


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return out


def _ok(items: list[dict[str, Any]], prefix: str = "") -> list[dict[str, Any]]:
    return [
        i["values"]
        for i in items
        if i.get("status") == "ok" and "values" in i and str(i["name"]).startswith(prefix)
    ]


def _md_env(items: list[dict[str, Any]]) -> list[str]:
    lines = []
    for values in _ok(items):
        for k, v in values.items():
            if k == "dependencies":
                v = ", ".join(f"{n} {ver or 'MISSING'}" for n, ver in v.items())
            lines.append(f"- {k}: {v}")
    return lines


def _md_tests(items: list[dict[str, Any]]) -> list[str]:
    tests = [t for v in _ok(items) for t in v.get("tests", [])]
    rows = [[t["id"], t["outcome"], f"{t['seconds']:.1f}", t.get("message", "")] for t in tests]
    rows += [
        [f"`--device {v['device']}` refused", "passed", "", v["message"]]
        for v in _ok(items, "refusal")
    ]
    return _table(["test", "outcome", "s", "message"], rows) if rows else []


def _md_training(items: list[dict[str, Any]]) -> list[str]:
    got: dict[str, dict[str, Any]] = {}
    for v in _ok(items):
        got.setdefault(v["model"], {})[v["mode"]] = v
    rows = []
    for model, modes in got.items():
        fp32 = modes.get("fp32", {}).get("img_per_s")
        row: list[Any] = [model]
        for mode in TRAIN_MODES:
            v = modes.get(mode)
            if not v:
                row.append("—")
                continue
            ratio = f" ({v['img_per_s'] / fp32:.2f}x)" if fp32 and mode != "fp32" else ""
            row.append(f"{v['img_per_s']:,.0f}{ratio}")
        row.append(
            ", ".join(f"{m} {v['first_step_s']} s" for m, v in modes.items() if m == "compiled")
        )
        rows.append(row)
    lines = _table(["model", *[f"{m} img/s" for m in TRAIN_MODES], "first step"], rows)
    first = next((v for m in got.values() for v in m.values()), {})
    shape = f"3x{first.get('image', '?')}x{first.get('image', '?')}"
    return [
        f"Batch of {first.get('batch', '?')} random {shape} images resident on "
        "the device; SGD step (forward, backward, "
        "update); img/s after warm-up, ratio against fp32 in brackets.",
        "",
        *lines,
    ]


def _md_sweeps(items: list[dict[str, Any]]) -> list[str]:
    cases = [v for v in _ok(items) if "naive_s" in v]
    rows = [
        [
            v["case"],
            v["model"],
            v.get("dtype"),
            v["routes"],
            v["images"],
            v["strategy"],
            f"{v['naive_s']:.2f}",
            f"{v['engine_s']:.2f}",
            f"{v['ratio']:.2f}x",
            f"{v['limit']:.2f}x",
            f"{v['timed_limit']:.2f}x",
            "yes" if v["agree"] else "NO",
            f"{v['engine_images_routes_per_s']:,.0f}",
        ]
        for v in cases
    ]
    lines = _table(
        [
            "case",
            "model",
            "dtype",
            "routes",
            "images",
            "engine strategy",
            "naive s",
            "engine s",
            "ratio",
            "limit: block runs",
            "limit: timed pieces",
            "same errors",
            "engine images x routes / s",
        ],
        rows,
    )
    strat = [
        [v["case"], f"{s['prefix']:.2f}", f"{s['mask']:.2f}", f"{s['mask'] / s['prefix']:.2f}x"]
        for v in cases
        if (s := v.get("strategies"))
    ]
    if strat:
        lines += ["", *_table(["case", "prefix s", "mask s", "mask / prefix"], strat)]
    series = [v for v in _ok(items, "all 2^")]
    if series:
        lines += ["", "All 2^n sub-networks (`evaluate_subnetworks`, as `paths --exhaustive`):", ""]
        lines += _table(
            [
                "n",
                "model",
                "strategy",
                "sub-networks",
                "images",
                "seconds",
                "images x sub-networks / s",
            ],
            [
                [
                    v["n"],
                    v["model"],
                    v["strategy"],
                    v["subnetworks"],
                    v["images"],
                    v["seconds"],
                    f"{v['images_subnetworks_per_s']:,}",
                ]
                for v in series
            ],
        )
    for v in _ok(items, "extrapolation"):
        lines += [
            "",
            f"Each extra block multiplies the time by {v['per_block_factor']} "
            f"(n = {v['from_n'][0]} to {v['from_n'][1]}); n = 20 on 10,000 images would "
            f"take about {v['n20_10000_images_s']:,} s.",
        ]
    return lines


def _md_gradients(items: list[dict[str, Any]]) -> list[str]:
    mem = [v for v in _ok(items) if "way" in v]
    lines = _table(
        ["way", "images", "output shape", "seconds", "peak GiB"],
        [
            [
                v["way"],
                v["images"],
                tuple(v["shape"]),
                f"{v['seconds']:.2f}",
                f"{v['peak_gib']:.2f}",
            ]
            for v in mem
        ],
    )
    ratios = _ok(items, "ratio")
    if ratios:
        lines += [
            "",
            *_table(
                [
                    "images",
                    "paths sampled",
                    "sampled s",
                    "measured or extrapolated",
                    "exact s",
                    "sampled / exact",
                ],
                [
                    [
                        v["images"],
                        f"{v['paths']:,}",
                        v["sampled_s"],
                        "measured" if v["sampled_measured"] else "extrapolated",
                        v["exact_s"],
                        f"{v['sampled_over_exact']}x",
                    ]
                    for v in ratios
                ],
            ),
        ]
    return lines


def _md_paper(items: list[dict[str, Any]], entry: dict[str, Any]) -> list[str]:
    done = _ok(items, "reproduce")
    stages = (done[0].get("stages") if done else None) or entry.get("stages") or {}
    lines = _table(["stage", "seconds"], [[k, v.get("seconds")] for k, v in stages.items()])
    total = sum(float(v.get("seconds") or 0) for v in stages.values())
    lines += [
        "",
        f"Stages finished: {len(stages)}, {total:.1f} s in all"
        + ("" if done else " (the run did not finish: see the status above)"),
    ]
    if done:
        scale = done[0]["scale"]
        lines += [
            "",
            f"Scale: `{scale}`",
            "",
            "<details><summary>summary.md</summary>",
            "",
            done[0]["summary"],
            "",
            "</details>",
        ]
    return lines


def render_markdown(p: dict[str, Any]) -> str:
    lines = [
        f"# GPU check: {p['machine']}",
        "",
        f"`benchmarks/gpu_check.py` ({p['mode']}), started {p['started']}, {p['elapsed_s']} s "
        f"of a {p['budget_s']:.0f} s budget; torch {p['torch']}, CUDA {p['cuda']}, "
        f"commit {p.get('commit') or 'unknown'}.",
        "",
        p["data_note"],
        "",
        "| section | status | seconds | error |",
        "|---|---|---:|---|",
    ]
    for name, e in p["sections"].items():
        lines.append(f"| {name} | {e['status']} | {e.get('seconds', '')} | {e.get('error', '')} |")
    renderers: dict[str, Callable[..., list[str]]] = {
        "env": _md_env,
        "tests": _md_tests,
        "training": _md_training,
        "sweeps": _md_sweeps,
        "gradients": _md_gradients,
    }
    for name, e in p["sections"].items():
        lines += ["", f"## {e['title']}", ""]
        lines += [line for n in e.get("notes", []) for line in (f"*{n}*", "")]
        try:
            body = _md_paper(e["items"], e) if name == "paper" else renderers[name](e["items"])
        except Exception as err:  # noqa: BLE001 - a report must always come out
            body = [f"(could not render: {one_line(err)})"]
        lines += body
        other = [i for i in e["items"] if i.get("status") != "ok"]
        if other:
            lines += ["", *[f"- {i['name']}: {i['status']}: {i.get('error', '')}" for i in other]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU")
    parser.add_argument("--device", help="default: cuda (cpu with --dry-run)")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--budget", type=float, help="seconds for the whole run")
    parser.add_argument("--checkpoint", help="the trained ResNet-110 for the paper section")
    parser.add_argument("--data-dir", help="Fashion-MNIST folder for the paper section")
    parser.add_argument("--child", choices=SECTIONS, help=argparse.SUPPRESS)
    parser.add_argument("--partial", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", help=argparse.SUPPRESS)
    parser.add_argument("--options", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args)
    if args.out is None:
        parser.error("--out is required")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    sizes = DRY if args.dry_run else GPU
    if args.budget:
        sizes = replace(sizes, budget_s=args.budget)
    options = {
        "dry_run": args.dry_run,
        "device": args.device or ("cpu" if args.dry_run else "cuda"),
        "sections": sections,
        "checkpoint": args.checkpoint,
        "data_dir": args.data_dir,
        "out": str(args.out),
    }
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    report = Report(args.out, "dry run, CPU, toy sizes" if args.dry_run else "GPU", options, sizes)
    deadline = report.started + sizes.budget_s
    report.write()
    for name in SECTIONS:
        if name in sections:
            run_section(name, report, deadline, str(Path(__file__).resolve()))
            e = report.sections[name]
            print(
                f"== {name}: {e['status']} in {e.get('seconds', 0)} s"
                + (f" ({e['error']})" if e.get("error") else ""),
                file=sys.stderr,
                flush=True,
            )
    print(
        f"wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'} "
        f"in {time.time() - report.started:.0f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
