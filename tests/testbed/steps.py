"""The project's own commands, run against the lab: each a subprocess with its output in a log file.

Used by `up --deploy`, the end-to-end gate and the benchmark. A failing step raises StepFailed carrying the
tail of its log, so the first broken step is named together with what it printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.testbed import layout

BIN = Path(sys.executable).parent
PYINFRA = [str(BIN / "pyinfra"), "-y"]
TAIL_LINES = 200


class StepFailed(Exception):
    pass


def apply() -> list[str]:
    return [sys.executable, "bootstrap.py", "apply", "--yes"]


def destroy() -> list[str]:
    return [sys.executable, "bootstrap.py", "destroy", "--yes", "--include-volumes"]


def deploy(*extra: str, deploy_file: str = "deploy.py") -> list[str]:
    return [*PYINFRA, *extra, "inventory.py", deploy_file]


def reboot_roll() -> list[str]:
    return [sys.executable, "maintain.py", "reboot", "--only-if-required"]


def upgrade_roll() -> list[str]:
    return [sys.executable, "maintain.py", "upgrade"]


def backup(*args: str) -> list[str]:
    return [sys.executable, "backup.py", *args]


def host_tests(*paths: str, verbose: bool = False) -> list[str]:
    """The testinfra suite (or some of its files) against the lab; `verbose` names every test with its result."""
    return [sys.executable, "-m", "pytest", "-v" if verbose else "-q", "-p", "no:cacheprovider",
            *(paths or ["tests/hosts"])]


class Runner:
    """Runs steps in the repository with ENV_FILE pointing at the lab's settings; logs under log_dir."""

    def __init__(self, log_dir: Path, env_file: Path = layout.ENV_FILE):
        self.log_dir = log_dir
        self.env = {**os.environ, "ENV_FILE": str(env_file)}
        self.count = 0
        self.started = time.monotonic()
        self.timings: dict[str, float] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def run(self, name: str, argv: list[str], timeout: float = 900, cwd: Path = layout.REPO_ROOT,
            with_stderr: bool = False, echo: bool = False, expect_failure: bool = False,
            settings: dict[str, str] | None = None) -> str:
        """Run one step in cwd; return its stdout (stderr goes to the log too, and into the returned text
        with_stderr). With `echo`, every line is also printed as it comes (stdout and stderr together).
        `settings` override the lab's (the environment wins over ENV_FILE).
        Raise StepFailed when it fails (or, expect_failure, when it succeeds)."""
        return self.start(name, argv, cwd, with_stderr, echo, settings).finish(timeout, expect_failure)

    def start(self, name: str, argv: list[str], cwd: Path = layout.REPO_ROOT, with_stderr: bool = False,
              echo: bool = False, settings: dict[str, str] | None = None) -> Step:
        """Start a step in the background; Step.finish() waits for it."""
        self.count += 1
        log = self.log_dir / f"{self.count:02d}-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.log"
        return Step(self, name, argv, log, cwd, with_stderr, echo, {**self.env, **(settings or {})})


class Step:
    """One running step of a Runner, its output going to its log."""

    def __init__(self, runner: Runner, name: str, argv: list[str], log: Path, cwd: Path, with_stderr: bool,
                 echo: bool, env: dict[str, str]):
        self.runner, self.name, self.log, self.echo = runner, name, log, echo
        self.began = time.monotonic()
        self.handle = open(log, "w")
        self.handle.write(f"$ {' '.join(argv)}\n")
        self.handle.flush()
        stderr = subprocess.STDOUT if with_stderr or echo else self.handle
        # stdin is no terminal: a step never waits for input (a deploy that would ask fails with one line)
        self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=stderr, text=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def finish(self, timeout: float = 900, expect_failure: bool = False) -> str:
        """Wait for the step (at most `timeout` seconds more); its stdout. StepFailed as Runner.run says."""
        with self.handle, self.process:
            stdout, expired = _collect(self.process, timeout, self.echo)
            code = f"timeout after {timeout:.0f}s" if expired else self.process.returncode
            self.handle.write(stdout)
        took = time.monotonic() - self.began
        self.runner.timings[self.name] = took
        if (code == 0) == expect_failure:
            wanted = "succeeded, but it should have failed" if expect_failure else "failed"
            raise StepFailed(f"step '{self.name}' {wanted} ({code}) after {took:.0f}s; log {self.log}:\n"
                             f"{tail(self.log)}")
        print(f"[{time.monotonic() - self.runner.started:6.0f}s] {self.name}: ok ({took:.1f}s)", flush=True)
        return stdout


def _collect(process: subprocess.Popen, timeout: float, echo: bool) -> tuple[str, bool]:
    """The process's output until it ends, and whether it was killed for running over `timeout` seconds."""
    expired = threading.Event()
    timer = threading.Timer(timeout, lambda: (expired.set(), process.kill()))
    timer.start()
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if echo:
                print(line, end="", flush=True)
        process.wait()
    finally:
        timer.cancel()
    return "".join(lines), expired.is_set()


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def json_totals(stdout: str) -> dict:
    """The totals of `pyinfra --json`: success counts operations that ran commands (changed something),
    error those that failed; failed_hosts lists hosts that could not be reached."""
    start = stdout.find("{")
    if start < 0:
        raise StepFailed(f"pyinfra --json printed no JSON:\n{stdout[-2000:]}")
    payload = json.loads(stdout[start:])
    results = payload.get("results") or {}
    totals = dict(results.get("totals") or {})
    totals["failed_hosts"] = results.get("failed_hosts", [])
    totals["changed"] = [{"name": op["name"], "hosts": op["success"]}
                         for op in results.get("operations", []) if op.get("success")]
    return totals


DEPLOY_MODES = {"-y": ["-y"], "default": [], "--dry": ["--dry"]}  # pyinfra's three ways to run deploy.py


def deploy_in_mode(mode: str, *extra: str, deploy_file: str = "deploy.py") -> list[str]:
    """deploy.py (or another deploy file) in one of DEPLOY_MODES."""
    return [str(BIN / "pyinfra"), *DEPLOY_MODES[mode], *extra, "inventory.py", deploy_file]


_FACT_LOADED = re.compile(r"^\s*\[(?P<host>[^\]]+)\]\s+Loaded fact (?P<fact>\S+)", re.MULTILINE)


def facts_loaded(output: str) -> dict[str, list[str]]:
    """Host -> the facts a `pyinfra -v` run loaded on it, in order (each one a round trip)."""
    loaded: dict[str, list[str]] = {}
    for match in _FACT_LOADED.finditer(output):
        loaded.setdefault(match["host"], []).append(match["fact"])
    return loaded


def dry_run() -> list[str]:
    """`pyinfra --dry --diff`: change detection only (no -y, which would skip it), nothing is executed."""
    return [str(BIN / "pyinfra"), "--dry", "--diff", "inventory.py", "deploy.py"]


_CHANGE_ROW = re.compile(r"^ {4}(?P<op>\S.*?) {2,}(?P<change>-|\d+ \(.*?\)) {2,}(?P<conditional>\S.*?)\s*$")


def planned_changes(stdout: str) -> list[str]:
    """The operations a dry run's "Detected changes" table says will change (its Change column is not "-")."""
    table = stdout.partition("--> Detected changes:")[2]
    if not table:
        raise StepFailed(f"the dry run printed no 'Detected changes' table:\n{stdout[-2000:]}")
    rows = [row for row in map(_CHANGE_ROW.match, table.splitlines()) if row]
    if not rows:
        raise StepFailed(f"no operation rows in the dry run's 'Detected changes' table:\n{table[:2000]}")
    return [row["op"] for row in rows if row["change"] != "-"]


def assert_no_changes(totals: dict) -> None:
    """A second deploy must change nothing, fail nothing, and still reach every host."""
    if totals.get("success") or totals.get("error") or totals.get("failed_hosts") or not totals.get("no_change"):
        raise StepFailed(f"second deploy is not a no-op: {json.dumps(totals, indent=1)}")
