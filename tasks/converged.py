"""A converged platform says so: pyinfra 3.10's default mode (no -y) asks "Press enter to execute" even when
nothing will change (without a terminal that prompt dies with an EOFError traceback), and `-y` runs every no-op
operation.

deploy.py declares its tasks with snapshot.declare(tasks, check=check_first()): in the default mode and with -y
every host's tasks are first checked against the snapshots, and when nothing would change on any host none is
declared. It then calls `finish_planning()` for every host. When the last host is declared:
- nothing will change on any host (the check, or pyinfra's change detection in a default-mode `--diff` run): the
  run says so and ends there, exit 0, before the prompt or any operation, as `terraform apply` does with nothing
  to do; but when a host failed (it did not connect, or its planning failed, and the operator chose to go on at
  pyinfra's "continue?"), one line naming it and exit 1, as pyinfra itself ends a run with a failed host;
- something will change and stdin is no terminal (the default mode): one line naming the hosts, exit 1 (apply
  with -y).
Otherwise pyinfra goes on as usual: -y with changes, --dry and --json (those never prompt, and --dry, --diff and
--json show every operation).

pyinfra's other prompt in the default mode, "One of more hosts failed, continue?" (a host that did not connect or
whose planning failed), dies the same way without a terminal: inventory.py calls `no_failure_prompt_without_terminal()`
(pyinfra installs that prompt before it loads the inventory), so there the failure stops the run with pyinfra's
one-line error.
"""

from __future__ import annotations

import sys

import pyinfra
from pyinfra import host, logger
from pyinfra.context import ctx_host, ctx_state

from tasks import snapshot

DRY_RUN = "pyinfra --dry --diff inventory.py deploy.py"
APPLY = "pyinfra -y inventory.py deploy.py"


def _cli_option(name: str) -> bool:
    """A flag of this run's pyinfra command line (false when pyinfra runs through its API), parsed by pyinfra's own
    click command: its click context is not visible here (click keeps it thread-local, and gevent gives each
    host's greenlet its own)."""
    if not pyinfra.is_cli:
        return False
    from pyinfra_cli.cli import cli  # here: importing pyinfra_cli patches the process for gevent (inventory.py's users)

    with cli.make_context("pyinfra", sys.argv[1:], resilient_parsing=True) as context:
        return bool(context.params.get(name))


def will_change(run, member) -> bool:
    """Whether any operation of host `member` will change something, asked in the host's order up to the first that
    does (pyinfra's `will_change`: the answer of its change detection, or, with -y, the operation asked now). An
    `_if` operation counts as a change, as in pyinfra's prompt; the tasks have none (ops.on_change). Also the
    deploy lock's question (tasks/lock.py)."""
    with ctx_host.use(member):
        return any(data.operation_meta.will_change for data in run.ops.get(member, {}).values())


def check_first() -> bool:
    """Whether snapshot.declare checks every host's tasks before declaring them, to end a run with nothing to do
    before pyinfra declares an operation: the default mode and -y; not --dry, --diff or --json (they show every
    operation), nor a run through pyinfra's API."""
    return pyinfra.is_cli and not (ctx_state.get().config.DIFF or _cli_option("dry") or _cli_option("json_output"))


def finish_planning() -> None:
    run = ctx_state.get()
    if _cli_option("dry") or _cli_option("json_output") or not (run.check_for_changes or snapshot.converged()):
        return
    if not hasattr(run, "mindroom_planned"):
        run.mindroom_planned = set()
    run.mindroom_planned.add(host.name)
    active = list(run.inventory.get_active_hosts())
    if not {member.name for member in active} <= run.mindroom_planned:
        return
    changing = [member.name for member in active if will_change(run, member)]
    failed = sorted(member.name for member in run.failed_hosts)
    if not changing and failed:
        sys.exit(f"error: {', '.join(failed)} failed (see above); nothing will change on the other {len(active)} "
                 "host(s)")
    if not changing:
        logger.info(f"--> No changes: the {len(active)} host(s) are as deploy.py describes them; nothing to run")
        raise SystemExit(0)
    if not sys.stdin.isatty():
        sys.exit(f"error: changes planned on {', '.join(changing)} and no terminal to confirm them; "
                 f"preview them with `{DRY_RUN}`, apply them with `{APPLY}`")


def no_failure_prompt_without_terminal() -> None:
    """Without a terminal, a host that fails stops the run (pyinfra's "Over 0% of hosts failed"), instead of
    pyinfra's "continue?" prompt dying with an EOFError traceback. Nothing changes at a terminal, with -y or --json
    (pyinfra installs no such prompt there), or outside pyinfra's CLI."""
    run = ctx_state.get()
    if run is not None and run.should_raise_failed_hosts is not None and not sys.stdin.isatty():
        run.should_raise_failed_hosts = lambda _run: True
