"""Hostile input within bounds (issue 23): each case runs as a real process with its heap held
to 2 GiB (RLIMIT_DATA: torch's libraries still load) and a timeout, and must end with exit 1 or
2, one short error line, no traceback, no MemoryError, and nothing written.

``docs/reliability.md`` lists what is bounded and how.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from resnet_ensemble.models import build_builtin
from resnet_ensemble.models.checkpoints import save_checkpoint
from resnet_ensemble.results import SWEEP_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
HEAP = 2 << 30
TIMEOUT = 60  # seconds; each case needs a few (most of it importing torch)


def _limit_heap() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (HEAP, HEAP))


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    """Every file and folder under ``folder``, with each file's size and modification time (a
    folder's own times change when a writability probe comes and goes)."""
    return sorted(
        (str(p.relative_to(folder)), 0, 0)
        if p.is_dir()
        else (str(p.relative_to(folder)), p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in folder.rglob("*")
    )


def _refused(args: list[str], cwd: Path, status: tuple[int, ...] = (1, 2)) -> str:
    """Run the command line; check that it refused cleanly; return its error line."""
    before = _listing(cwd)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("RESNET_ENSEMBLE_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "resnet_ensemble", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT,
        preexec_fn=_limit_heap,
    )  # fmt: skip
    assert proc.returncode in status, (proc.returncode, proc.stdout[-300:], proc.stderr[-300:])
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert len(line) <= 300, line
    assert _listing(cwd) == before  # nothing written or changed
    return line


@pytest.mark.parametrize(
    ("route", "said"),
    [
        ("3x0", "at least once"),
        ("3x-2", "expected a repeat count"),
        (",,,", "expected a block index"),
        ("٣,0-14", "cannot read"),
        ("０-１４", "cannot read"),
        ("1_0", "unexpected '_0' at character 2"),  # not Python's 1_0 == 10
        ("0x16000000", "runs more than"),
        ("0-1000000000", "too long"),
        ("0-100000000", "runs more than"),
        ("0-10000000000000000000000", "too long"),
    ],
)
def test_a_route_that_means_nothing_is_refused(route: str, said: str, tmp_path: Path) -> None:
    assert said in _refused(["--route", route], tmp_path)


def test_a_fifo_or_a_device_as_model_is_refused_unread(tmp_path: Path) -> None:
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    assert "is a FIFO" in _refused(["--model", str(fifo)], tmp_path)
    assert "device or socket" in _refused(["--model", "/dev/zero"], tmp_path)


def test_a_builtin_name_beyond_a_sane_depth_is_refused(tmp_path: Path) -> None:
    assert "beyond the 2000 layers" in _refused(["blocks", "--model", "resnet360002"], tmp_path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    kwargs = {"num_classes": 10, "in_channels": 1}
    good = folder / "good.pt"
    save_checkpoint(good, build_builtin("resnet8", **kwargs), arch="resnet8", arch_kwargs=kwargs,
                    dataset="embedded", metadata={})  # fmt: skip
    raw = torch.load(good, weights_only=True)
    for name, classes in (("classes_3e7.pt", 30_000_000), ("classes_neg.pt", -5)):
        torch.save({**raw, "arch_kwargs": {**kwargs, "num_classes": classes}}, folder / name)
    torch.save({**raw, "arch": "resnet360014"}, folder / "blocks_60002.pt")
    # A zip whose one entry unpacks to 256 MB of zeros from a few hundred kB.
    with zipfile.ZipFile(folder / "bomb.pt", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", bytes(256 << 20))
    return folder


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("classes_3e7.pt", "num_classes must be a whole number from 1 to 100,000"),
        ("classes_neg.pt", "num_classes must be a whole number from 1 to 100,000, got -5"),
        ("blocks_60002.pt", "beyond the 2000 layers"),
        ("bomb.pt", "zip entries claim 268,435,456 bytes"),
    ],
)
def test_a_checkpoint_that_claims_too_much_is_refused(
    files: Path, name: str, said: str, tmp_path: Path
) -> None:
    before = (files / name).read_bytes()
    assert said in _refused(["blocks", "--model", str(files / name)], tmp_path)
    assert (files / name).read_bytes() == before


# ----------------------------------------------------------------------------------------------
# Every user-given number is checked before it drives an allocation, a loop or a range
# (``bounds.BOUNDS``; click's usage errors exit 2, the library's refusals 1).


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["sweep", "multi", "--samples", "1000000000"], "not in the range 1<=x<=100000"),
        (["sweep", "multi", "--max-k", "99999"], "not in the range 1<=x<=10000"),
        (["sweep", "multi", "--seed", "-1"], "not in the range 0<=x<=4294967295"),
        (["sweep", "multi", "--seed", "9" * 30], "not in the range 0<=x<=4294967295"),
        (["sweep", "single", "--batch-size", "1000000000"], "not in the range 1<=x<=16384"),
        (["sweep", "single", "--limit", "0"], "not in the range 1<=x<=100000000"),
        (["sweep", "single", "--chunk", "10000000"], "not in the range 1<=x<=100000"),
        (["paths", "--blocks", "100000"], "not in the range 0<=x<=1000"),
        (["paths", "--model", "resnet8", "--exhaustive", "--samples", "10" + "0" * 12], "range"),
        (["paths", "--blocks", "54", "--share", "nan"], "is not a finite number"),
        (["gradients", "--samples-per-length", "1000000000"], "not in the range 0<=x<=100000"),
        (["gradients", "--batches", "1000000000"], "not in the range 1<=x<=10000"),
        (["gradients", "--images", "1000000"], "not in the range 1<=x<=16384"),
        (["gradients", "--sign-draws", "1000000000"], "not in the range 0<=x<=100000"),
        (["train", "--epochs", "1000000000"], "not in the range 1<=x<=100000"),
        (["train", "--workers", "100000"], "not in the range 0<=x<=256"),
        (["train", "--batch-size", "1000000000"], "not in the range 1<=x<=16384"),
        (["train", "--lr", "nan"], "is not a finite number"),
        (["train", "--momentum", "inf"], "not in the range"),
        (["train", "--warmup-epochs", "inf"], "not in the range"),
        (["--drop-block", "99999999999999999999"], "has 15 blocks, 0..14"),
        (["blocks", "--model", "resnet8", "--num-classes", "30000000"], "not in the range"),
    ],
)
def test_a_number_out_of_bounds_is_a_usage_error(
    args: list[str], said: str, tmp_path: Path
) -> None:
    assert said in _refused(args, tmp_path, status=(2,))


@pytest.mark.parametrize(
    ("args", "said"),
    [
        # Within each option's range, but the product would draw 50 million swaps.
        (["sweep", "reorder", "--max-swaps", "10000", "--samples", "10"], "single swaps, more"),
        # 10,000 batches of 25 samples for each of 16 lengths: 4 million rows.
        (["gradients", "--batches", "10000", "--images", "2"], "sampled paths, more than"),
        # 10,000 batches of 2,000 images of 1x28x28 would hold 58 GiB at once.
        (
            ["gradients", "--batches", "10000", "--images", "2000", "--samples-per-length", "0",
             "--sign-draws", "0"],
            "more than the 4 GiB random batches may hold",
        ),
    ],
)  # fmt: skip
def test_counts_whose_product_would_exhaust_memory_are_refused(
    args: list[str], said: str, tmp_path: Path
) -> None:
    assert said in _refused([*args, "--out", str(tmp_path / "out.csv")], tmp_path, status=(1,))


# ----------------------------------------------------------------------------------------------
# Weights files: safetensors headers and dtypes


def _safetensors(header: dict | bytes, data: bytes = b"", length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A factory module (tinynet:make, and tinynet:leave, which calls sys.exit) and weights
    files for it, good and hostile."""
    folder = tmp_path_factory.mktemp("weights")
    (folder / "tinynet.py").write_text(
        "import sys\nfrom torch import nn\n\n"
        "def make():\n    return nn.Sequential(nn.Conv2d(1, 2, 3, bias=False))\n\n"
        "def leave():\n    sys.exit(0)\n"
    )
    # The header claims 2**40 bytes; the offsets run past the data; the shape needs more
    # bytes than the offsets give.
    (folder / "long_header.safetensors").write_bytes(_safetensors(b"{}", length=1 << 40))
    entry = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
    (folder / "outside.safetensors").write_bytes(
        _safetensors({"w": {**entry, "data_offsets": [0, 1 << 50]}}, bytes(16))
    )
    (folder / "shape.safetensors").write_bytes(
        _safetensors({"w": {**entry, "shape": [1 << 20, 1 << 20]}}, bytes(16))
    )
    torch.save({"0.weight": torch.ones(2, 1, 3, 3, dtype=torch.int64)}, folder / "int.pt")
    fp8 = torch.ones(2, 1, 3, 3).to(torch.float8_e4m3fn)
    torch.save({"0.weight": fp8}, folder / "fp8.pt")
    return folder


def _copy_into(folder: Path, cwd: Path, *names: str) -> None:
    for name in names:
        (cwd / name).write_bytes((folder / name).read_bytes())


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("long_header.safetensors", "its header claims 1,099,511,627,776 bytes"),
        ("outside.safetensors", "tensor 'w' lies at bytes 0-1,125,899,906,842,624, outside"),
        ("shape.safetensors", "needs 4,398,046,511,104 bytes, its offsets give 16"),
    ],
)
def test_a_safetensors_header_that_claims_too_much_is_refused(
    weights: Path, name: str, said: str, tmp_path: Path
) -> None:
    line = _refused(
        ["blocks", "--model", "torchvision:resnet18", "--weights-file", str(weights / name)],
        tmp_path,
        status=(1,),
    )
    assert said in line and name in line


@pytest.mark.parametrize(
    ("name", "said"), [("int.pt", "as int64 (integer"), ("fp8.pt", "as float8_e4m3fn (8-bit float")]
)
def test_integer_and_fp8_weights_are_refused(
    weights: Path, name: str, said: str, tmp_path: Path
) -> None:
    _copy_into(weights, tmp_path, "tinynet.py", name)
    line = _refused(["blocks", "--model", "tinynet:make", "--weights-file", name], tmp_path, (1,))
    assert said in line and "0.weight" in line and name in line


def test_a_factory_that_calls_sys_exit_is_an_error(weights: Path, tmp_path: Path) -> None:
    _copy_into(weights, tmp_path, "tinynet.py")
    line = _refused(["blocks", "--model", "tinynet:leave"], tmp_path, status=(1,))
    assert "tinynet:leave" in line and "sys.exit(0)" in line


# ----------------------------------------------------------------------------------------------
# Text data: special files, size, UTF-8


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from tests.test_text_data import make_lm_folder

    return make_lm_folder(tmp_path_factory.mktemp("lm"))


def test_text_data_that_is_a_fifo_too_large_or_not_utf8_is_refused(
    lm: Path, tmp_path: Path
) -> None:
    base = ["sweep", "single", "--model", f"hf:{lm}", "--out", str(tmp_path / "t.csv")]
    os.mkfifo(tmp_path / "fifo.txt")
    assert "is a FIFO, not a text file" in _refused([*base, "--dataset", "text:fifo.txt"], tmp_path)
    with open(tmp_path / "huge.txt", "wb") as f:  # sparse: no disk used
        f.truncate(65 << 20)
    line = _refused([*base, "--dataset", "text:huge.txt"], tmp_path)
    assert "more than the 64.0 MiB a text file may be" in line
    (tmp_path / "latin1.txt").write_bytes("the caf\u00e9 is open ".encode("latin-1") * 50)
    line = _refused([*base, "--dataset", "text:latin1.txt"], tmp_path, status=(1,))
    assert "latin1.txt is not UTF-8 text: byte 7 (0xe9)" in line


# ----------------------------------------------------------------------------------------------
# plot and depth inputs


def _sweep_table(folder: Path, errors: list[str]) -> Path:
    rows = "\n".join(
        f"m,residual,single,{'baseline' if i == 0 else f'drop={i}'},,{i or ''},1,,,,,False,{e},,10"
        for i, e in enumerate(errors)
    )
    path = folder / "single.csv"
    path.write_text(",".join(SWEEP_COLUMNS) + "\n" + rows + "\n")
    return path


@pytest.mark.parametrize(
    ("errors", "said"),
    [
        (["0.1", "inf", "0.2"], "error must be from 0 to 1, but line 3 holds inf"),
        (["0.1", "0.2", "-0.5", "abc"], "but lines 4, 5 hold -0.5, abc"),
    ],
)
def test_plot_refuses_values_out_of_range_and_writes_nothing(
    errors: list[str], said: str, tmp_path: Path
) -> None:
    table = _sweep_table(tmp_path, errors)
    line = _refused(["plot", str(table), "--out", str(tmp_path / "figs")], tmp_path, (1,))
    assert said in line and "single.csv" in line


def test_plot_refuses_special_and_huge_files_unread(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.csv")
    out = ["--out", str(tmp_path / "figs")]
    assert "is a FIFO" in _refused(["plot", "fifo.csv", *out], tmp_path, (1,))
    assert "device or socket" in _refused(["plot", "/dev/zero", *out], tmp_path, (1,))
    with open(tmp_path / "huge.csv", "wb") as f:  # sparse: no disk used
        f.truncate((1 << 30) + 1)
    assert "more than the 1 GiB" in _refused(["plot", "huge.csv", *out], tmp_path, (1,))


def _depth_root(tmp_path: Path, table: str, sidecar: str | None = None) -> Path:
    tables = tmp_path / "root" / "net" / "tables"
    tables.mkdir(parents=True)
    (tables / "single_resnet.csv").write_text(table)
    if sidecar is not None:
        (tables / "single_resnet.json").write_text(sidecar)
    return tmp_path / "root"


_SINGLE = "config,error,downsampling\nbaseline,0.1,False\ndrop=0,0.3,False\n"


@pytest.mark.parametrize(
    ("table", "sidecar", "said"),
    [
        ("config,err\nbaseline,0.1\n", None, "lacks the columns ['error'"),
        ("config,error,downsampling\ndrop=0,0.3,False\n", None, "has no baseline row"),
        (_SINGLE, '{"num_blocks": 1000000000000}', "num_blocks must be from 0 to 10,000"),
        (_SINGLE, '{"num_blocks": 3,\n', "single_resnet.json is not a readable JSON sidecar"),
        (_SINGLE.replace("0.3", "7"), None, "error must be from 0 to 1, but line 3 holds 7"),
    ],
)
def test_depth_refuses_analyses_it_cannot_read_naming_the_file(
    table: str, sidecar: str | None, said: str, tmp_path: Path
) -> None:
    root = _depth_root(tmp_path, table, sidecar)
    line = _refused(["depth", str(root)], tmp_path, status=(1,))
    assert said in line and "single_resnet" in line


# ----------------------------------------------------------------------------------------------
# A checkpoint's recorded test error: shown, and re-measured on --verify


def test_verify_refuses_a_checkpoint_whose_metadata_do_not_describe_its_weights(
    tmp_path: Path,
) -> None:
    from resnet_ensemble.models.specs import EMBEDDED_CHECKPOINT

    raw = torch.load(EMBEDDED_CHECKPOINT, weights_only=True)
    kwargs = {**raw["arch_kwargs"], "stochastic_depth": 0.5}  # a claim the weights do not fit
    metadata = {**raw["metadata"], "num_test_images": 1000}
    torch.save({**raw, "arch_kwargs": kwargs, "metadata": metadata}, tmp_path / "claims.pt")
    args = ["sweep", "single", "--model", "claims.pt", "--limit", "10", "--verify"]
    line = _refused([*args, "--out", "s.csv"], tmp_path, status=(1,))
    assert "claims.pt records a test error of 6.89% on 1,000 fashion-mnist test images" in line


@pytest.mark.parametrize(
    ("sizes", "said"),
    [
        (
            {"n_layer": 10_000_000},
            "num_hidden_layers must be a whole number from 0 to 10,000, got 10000000",
        ),
        ({"n_layer": 10_000, "n_embd": 65_536}, "implies about 5.15e+14 parameters"),
        ({"vocab_size": -5}, "vocab_size must be a whole number from 0 to 16,777,216, got -5"),
    ],
)
def test_a_hugging_face_config_that_claims_too_much_is_refused(
    sizes: dict, said: str, tmp_path: Path
) -> None:
    pytest.importorskip("transformers")
    folder = tmp_path / "lm"
    folder.mkdir()
    config = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], **sizes}
    (folder / "config.json").write_text(json.dumps(config))
    line = _refused(["blocks", "--model", f"hf:{folder}"], tmp_path, status=(1,))
    assert said in line and "config.json" in line
