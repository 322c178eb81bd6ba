"""Fault injection through the command-line tools, as a user meets the faults: exit code 2, one
``error:`` line naming the file, and nothing left that a reader would take as complete."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, env=None, cwd=ROOT):
    full = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=full)


def _error_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


def test_data_bound_tests_skip_without_the_samples_and_fail_when_required(tmp_path):
    missing = tmp_path / "nowhere"
    proc = _run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_flat_composites.py",
                env={"HOFAM_SHARED_DATA": str(missing), "HOFAM_REQUIRE_DATA": "0"})
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "6 skipped" in proc.stdout
    proc = _run("-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_flat_composites.py",
                "-k", "round_trip", env={"HOFAM_SHARED_DATA": str(missing), "HOFAM_REQUIRE_DATA": "0"})
    assert "HOFAM_SHARED_DATA" in proc.stdout and str(missing) in proc.stdout
    proc = _run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_flat_composites.py",
                "-k", "round_trip", env={"HOFAM_SHARED_DATA": str(missing), "HOFAM_REQUIRE_DATA": "1"})
    assert proc.returncode == 1 and "forbids skipping" in proc.stdout
