"""The set-up scripts a newcomer meets: the browser install never runs sudo unasked."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "install_chromium.sh"


@pytest.fixture
def machine(tmp_path):
    """A PATH with no browser, a fake apt-get and sudo that log their calls, and ``id -u`` set by the test."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "calls.log"
    for name in ("apt-get", "sudo"):
        (bin_ / name).write_text(f"#!/bin/sh\necho {name} \"$@\" >> {log}\n")
    for tool in ("cat", "sh"):
        (bin_ / tool).symlink_to(shutil.which(tool))

    def run(uid: int):
        (bin_ / "id").write_text(f"#!/bin/sh\necho {uid}\n")
        for f in bin_.iterdir():
            f.chmod(0o755)
        env = {"PATH": str(bin_), "HOME": str(tmp_path), "CHROMIUM": ""}
        result = subprocess.run([shutil.which("bash"), str(SCRIPT)], env=env, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL)
        calls = log.read_text().splitlines() if log.exists() else []
        return result, calls

    return run


def test_without_a_browser_a_non_root_run_never_calls_sudo_unasked(machine):
    result, calls = machine(uid=1000)
    assert result.returncode == 1 and calls == []
    assert "does not run unasked" in result.stderr and "make test SKIP_BROWSER=1" in result.stderr


def test_as_root_it_installs_debians_chromium(machine):
    result, calls = machine(uid=0)
    assert result.returncode == 0
    assert calls == ["apt-get update -qq", "apt-get install -y -qq --no-install-recommends chromium"]


def test_skip_browser_skips_loudly():
    root = SCRIPT.parents[1]
    result = subprocess.run(["make", "--no-print-directory", "-s", "check-html", "SKIP_BROWSER=1"], cwd=root,
                            capture_output=True, text=True, env={**os.environ})
    assert result.returncode == 0 and "SKIPPED: the browser check" in result.stderr
