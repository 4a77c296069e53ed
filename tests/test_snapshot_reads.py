"""One read per host in every mode, offline: tests/snapshot_deploy.py (built like deploy.py) run by the real
pyinfra CLI on @local against a temporary directory. Once it converged, `-y`, the default mode and `--dry` each
read the host's snapshot once (pyinfra -v logs every fact it loads) and run nothing else; `-y` and the default
mode say there is nothing to do before pyinfra declares an operation, and do not prompt; with a change and no
terminal it fails with one line; `--json` is pyinfra's own; a host that failed is never "no changes".
(tests/test_e2e.py counts the reads of the whole platform on the testbed.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = Path(sys.executable).parent / "pyinfra"
MODES = {"-y": ["-y"], "default": [], "--dry": ["--dry"]}


def deploy(workdir: Path, *options: str, line: str = "converged", inventory: str = "@local",
           stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """Run outside the repository (the project's group_data/ is not this deploy's)."""
    return subprocess.run([str(PYINFRA), "-v", *options, "--data", f"workdir={workdir}", "--data", f"line={line}",
                           inventory, str(ROOT / "tests/snapshot_deploy.py")], cwd=workdir, stdin=stdin,
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120)


def reads(done: subprocess.CompletedProcess) -> int:
    return (done.stdout + done.stderr).count("Loaded fact tasks.facts.HostSnapshot")


def converge(workdir: Path) -> Path:
    first = deploy(workdir, "-y")
    assert first.returncode == 0, first.stdout + first.stderr
    assert (workdir / "followed").is_file(), "the follow-up ran after the template was written"
    return workdir


@pytest.fixture(scope="module")
def converged(tmp_path_factory):
    return converge(tmp_path_factory.mktemp("snapshot-reads"))


@pytest.mark.parametrize("mode", MODES)
def test_a_converged_host_is_read_once_in_every_mode(converged, mode):
    done = deploy(converged, *MODES[mode])
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert reads(done) == 1, output
    assert "Loaded fact" not in output.replace("Loaded fact tasks.facts.HostSnapshot", ""), "a no-op asks pyinfra nothing"
    assert "Press enter" not in output and "Traceback" not in output and "EOFError" not in output
    # --dry is pyinfra's own run (finish_planning steps aside); -y and the default mode end before running anything
    assert ("--> No changes:" in output) == (mode != "--dry"), output
    assert "--> Beginning operation run" not in output, output


NOTHING_TO_RUN = "--> No changes: the 1 host(s) are as deploy.py describes them; nothing to run"
DECLARED = "Adding operation"  # pyinfra's debug line for each operation it declares (pyinfra.api.operation)


@pytest.mark.parametrize("mode", ["-y", "default"])
def test_a_converged_host_says_so_before_any_operation_is_declared(converged, mode):
    done = deploy(converged, "--debug", *MODES[mode])
    output = done.stdout + done.stderr
    assert done.returncode == 0 and NOTHING_TO_RUN in output, output
    assert DECLARED not in output and "Beginning operation run" not in output, output
    assert reads(done) == 1, output


def test_with_diff_every_operation_is_declared_and_the_default_mode_still_ends_before_the_prompt(converged):
    done = deploy(converged, "--debug", "--diff")
    output = done.stdout + done.stderr
    assert done.returncode == 0 and NOTHING_TO_RUN in output and output.count(DECLARED) == 4, output
    assert "Beginning operation run" not in output and reads(done) == 1, output


@pytest.mark.parametrize("mode", ["-y", "default"])
def test_an_operation_that_fails_while_checking_is_reported_by_pyinfra(converged, mode):
    done = deploy(converged, *MODES[mode], line="bell \a")
    output = done.stdout + done.stderr
    assert done.returncode != 0 and NOTHING_TO_RUN not in output, output
    assert "the value of line holds a control character; refusing to render it" in output, output
    assert (converged / "data/app.conf").read_text().endswith("line = converged\n"), "nothing was applied"


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


@pytest.mark.parametrize("line", ["converged", "edited"])
def test_json_is_pyinfras_own_dry_output_whether_or_not_something_changes(tmp_path, line):
    """pyinfra 3.10 (pyinfra_cli/cli.py, _main): --json without -y prints the planned run as JSON and exits, no
    prompt; finish_planning leaves it alone, so stdout stays pure JSON."""
    converged = converge(tmp_path)
    done = deploy(converged, "--json", line=line)
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), dict), done.stdout
    assert "No changes" not in done.stdout + done.stderr and "Press enter" not in done.stderr
    assert (converged / "data/app.conf").read_text().endswith("line = converged\n"), "nothing was applied"


# @local and a host on a closed loopback port; built as inventory.py is (no failure prompt without a terminal)
TWO_HOSTS = ("from tasks import converged\nconverged.no_failure_prompt_without_terminal()\n"
             'hosts = ["@local", ("lost", {"ssh_hostname": "127.0.0.1", "ssh_port": 1, '
             '"ssh_known_hosts_file": "/dev/null"})]\n')


def test_a_failed_host_is_never_reported_as_no_changes(tmp_path):
    """A host that does not connect: pyinfra asks "continue?" at a terminal (its _set_fail_prompts) and, once the
    operator goes on, plans the others. Nothing changes on @local, yet the run fails naming the lost host, as
    pyinfra's own exit does with a failed host. The second host is a closed port on loopback."""
    converged = converge(tmp_path)
    (converged / "two.py").write_text(TWO_HOSTS)
    terminal, answers = os.openpty()
    try:
        os.write(terminal, b"\n")  # "One of more hosts failed to connect, continue?": go on
        done = deploy(converged, inventory="two.py", stdin=answers)
    finally:
        os.close(terminal)
        os.close(answers)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "No changes" not in done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: lost failed (see above); nothing will change on the other 1 host(s)"], done.stderr


def test_a_task_that_declares_a_pyinfra_operation_itself_is_refused_before_anything_runs(tmp_path):
    """snapshot.declare: such an operation would be declared twice (once while asking); the run stops with one
    pyinfra error naming the host, nothing is read or changed."""
    done = deploy(tmp_path, "-y", "--data", "direct=1")
    assert done.returncode == 1, done.stdout + done.stderr
    [error] = [line for line in done.stderr.splitlines() if "pyinfra error" in line]
    assert error.endswith("@local: a task declared a pyinfra operation directly; call it through tasks/ops.py (a "
                          "snapshot operation) so that asking declares nothing"), error
    assert reads(done) == 0 and list(tmp_path.iterdir()) == []


def test_without_a_terminal_a_failed_host_is_pyinfras_one_line_error_not_its_prompts_traceback(tmp_path):
    """pyinfra 3.10 (pyinfra_cli/cli.py _set_fail_prompts): the default mode asks "One of more hosts failed to connect,
    continue?" with input(), which dies with EOFError without a terminal; converged.no_failure_prompt_without_terminal
    makes the failure raise instead (State.fail_hosts: "Over 0% of hosts failed")."""
    converged = converge(tmp_path)
    (converged / "two.py").write_text(TWO_HOSTS)
    done = deploy(converged, inventory="two.py")
    assert done.returncode == 1 and "Traceback" not in done.stderr and "EOFError" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1] == "--> pyinfra error: Over 0% of hosts failed (50%)", done.stderr


def test_inventory_py_drops_the_failure_prompt_without_a_terminal(tmp_path):
    """What pyinfra's CLI has installed when it loads inventory.py (its prompt, State.should_raise_failed_hosts)
    is replaced by "raise" when stdin is no terminal."""
    (tmp_path / "outputs.json").write_text(json.dumps({"environment": "production", "servers": [
        {"name": "dokku-1", "role": "dokku", "ipv4": "127.0.0.1", "private_ip": "10.0.1.10"}]}))
    (tmp_path / "test.env").write_text(f"DOMAIN=mindroom.test\nOUTPUTS_FILE={tmp_path / 'outputs.json'}\n")
    probe = ("from types import SimpleNamespace\nfrom pyinfra.context import ctx_state\n"
             "run = SimpleNamespace(should_raise_failed_hosts=lambda run: False)\nctx_state.set(run)\n"
             "import inventory\nprint(run.should_raise_failed_hosts(run), inventory.dokku[0][0])\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env={**os.environ, "ENV_FILE": str(tmp_path / "test.env")})
    assert (done.returncode, done.stdout) == (0, "True dokku-1\n"), done.stderr
