"""One read per host in every mode, offline: tests/snapshot_deploy.py (built like deploy.py) run by the real
pyinfra CLI on @local against a temporary directory. Once it converged, `-y`, the default mode and `--dry` each
read the host's snapshot once (pyinfra -v logs every fact it loads) and run nothing else; the default mode says
there is nothing to do and does not prompt; with a change and no terminal it fails with one line.
(tests/test_e2e.py counts the reads of the whole platform on the testbed.)"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = Path(sys.executable).parent / "pyinfra"
MODES = {"-y": ["-y"], "default": [], "--dry": ["--dry"]}


def deploy(workdir: Path, *options: str, line: str = "converged") -> subprocess.CompletedProcess:
    """Run outside the repository (the project's group_data/ is not this deploy's)."""
    return subprocess.run([str(PYINFRA), "-v", *options, "--data", f"workdir={workdir}", "--data", f"line={line}",
                           "@local", str(ROOT / "tests/snapshot_deploy.py")], cwd=workdir, stdin=subprocess.DEVNULL,
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120)


def reads(done: subprocess.CompletedProcess) -> int:
    return (done.stdout + done.stderr).count("Loaded fact tasks.facts.HostSnapshot")


@pytest.fixture(scope="module")
def converged(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("snapshot-reads")
    first = deploy(workdir, "-y")
    assert first.returncode == 0, first.stdout + first.stderr
    assert (workdir / "followed").is_file(), "the follow-up ran after the template was written"
    return workdir


@pytest.mark.parametrize("mode", MODES)
def test_a_converged_host_is_read_once_in_every_mode(converged, mode):
    done = deploy(converged, *MODES[mode])
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert reads(done) == 1, output
    assert "Loaded fact" not in output.replace("Loaded fact tasks.facts.HostSnapshot", ""), "a no-op asks pyinfra nothing"
    assert "Press enter" not in output and "Traceback" not in output and "EOFError" not in output


def test_the_default_mode_on_a_converged_host_says_so_without_prompting(converged):
    done = deploy(converged)
    assert "--> No changes: the 1 host(s) are as deploy.py describes them; nothing to run" in done.stdout + done.stderr
    assert "Beginning operation run" not in done.stdout + done.stderr


def test_the_dry_run_of_a_converged_host_plans_nothing(converged):
    done = deploy(converged, "--dry")
    rows = (done.stdout + done.stderr).partition("--> Detected changes:")[2]
    assert "Render app.conf" in rows and "Follow app.conf" in rows and "(@local)" not in rows, rows


def test_changes_without_a_terminal_fail_with_one_line(converged):
    done = deploy(converged, line="edited")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "EOFError" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: changes planned on @local and no terminal to confirm them; preview them with "
                      "`pyinfra --dry --diff inventory.py deploy.py`, apply them with `pyinfra -y inventory.py "
                      "deploy.py`"], done.stderr
    assert (converged / "data/app.conf").read_text().endswith("line = converged\n"), "nothing was applied"


def test_a_change_is_planned_with_its_follow_up_and_applied_with_y(converged):
    planned = deploy(converged, "--dry", line="edited")
    table = (planned.stdout + planned.stderr).partition("--> Detected changes:")[2]
    changing = [line.split()[0:2] for line in table.splitlines() if "(@local)" in line]
    assert changing == [["Render", "app.conf"], ["Follow", "app.conf"]], table
    applied = deploy(converged, "-y", line="edited")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert reads(applied) == 2, "read again once, after the operation that changed the host"
    assert (converged / "data/app.conf").read_text().endswith("line = edited\n")
    assert len((converged / "followed").read_text().splitlines()) == 2
    again = deploy(converged, line="edited")
    assert again.returncode == 0 and reads(again) == 1, again.stdout + again.stderr
