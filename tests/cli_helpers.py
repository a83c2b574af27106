"""What the command-line tests share: running the CLI in-process and as a real process, reading
the one-line error contract, and killing a real run mid-way.

- ``invoke``: the click command in-process, as ``ensemble-lesion``, without the debug variable
- ``subprocess_env``: the environment for ``python -m resnet_ensemble`` (this tree first on the
  path, no debug variable)
- ``one_error_line``: the contract for a failing command: no traceback, exactly one error line
- ``kill_mid_run``: start ``python -m resnet_ensemble ...`` and SIGKILL it once a condition on
  its output holds
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from resnet_ensemble.cli import cli
from resnet_ensemble.cli.common import DEBUG_ENV

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: str) -> Result:
    """Run the CLI in-process; ``env={DEBUG_ENV: None}`` removes the debug variable during the
    call and restores it after, so the one-line error contract is what is seen."""
    return CliRunner().invoke(cli, list(args), prog_name="ensemble-lesion", env={DEBUG_ENV: None})


def subprocess_env() -> dict[str, str]:
    """The environment of a real ``python -m resnet_ensemble`` process: this tree first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop(DEBUG_ENV, None)
    return env


def one_error_line(failed: str | Result, prefix: str = "error: ") -> str:
    """The contract: no traceback, and exactly one line carrying the error. Given a click
    ``Result``, also that it exited with status 1."""
    if isinstance(failed, Result):
        assert failed.exit_code == 1, failed.output
        failed = failed.stderr
    assert "Traceback" not in failed
    lines = [ln for ln in failed.splitlines() if ln.startswith(prefix)]
    assert len(lines) == 1, failed
    return lines[0]


def kill_mid_run(
    args: list[str], cwd: Path, ready: Callable[[], bool], *, within: float = 120
) -> bool:
    """Start ``python -m resnet_ensemble *args`` and SIGKILL it as soon as ``ready()`` holds
    (polled every few milliseconds; it may assert on what the run has written so far).

    Returns True once the run was killed, False if it finished first (the caller gives it more
    work and tries again). Fails the test if ``ready()`` does not hold within ``within`` s.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "resnet_ensemble", *args],
        cwd=cwd,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if ready():
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=60)
                return proc.returncode == -signal.SIGKILL  # not if it ended just before
            if proc.poll() is not None:
                return False
            time.sleep(0.005)
        pytest.fail(f"the run was not ready to be killed within {within:.0f} s: {args}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
