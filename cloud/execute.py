"""Run the steps of a plan: phase by phase; in a phase, each target's steps in order, targets concurrently.

When the answer to a mutating request is lost (ResponseLost), nothing is re-sent: once the phase is over,
the actions still running on our resources are waited for, the project is read again (by labels, as at the
start) and a new plan continues from what exists: the path an apply takes after a crash, within one run.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable

from .api import MAX_RETRIES, BootstrapError, ResponseLost, describe, settle
from .observe import observe
from .steps import Context, Step, refuse_conflicts

MAX_WORKERS = 32
_print_lock = threading.Lock()


def _say(line: str, out) -> None:
    with _print_lock:
        print(line, file=out, flush=True)


def _report(step: Step, out) -> None:
    _say(f"  done  {step.kind:<7} {step.resource} {step.name}: {step.detail}".rstrip(": "), out)


def _run_target(ctx: Context, steps: list[Step], out, stopping: threading.Event) -> None:
    for step in steps:
        if stopping.is_set():
            return
        step.run(ctx)
        _report(step, out)


def execute(ctx: Context, steps: list[Step], out=sys.stdout) -> None:
    """Every target of a phase is finished (or has failed) before the next phase starts."""
    runnable = [step for step in steps if step.run]
    for phase in sorted({step.phase for step in runnable}):
        targets: dict[str, list[Step]] = {}
        for step in runnable:
            if step.phase == phase:
                targets.setdefault(step.target or step.name, []).append(step)
        stopping = threading.Event()
        with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(targets))) as pool:
            futures = [pool.submit(_run_target, ctx, target_steps, out, stopping) for target_steps in targets.values()]
            try:
                wait(futures)
            except KeyboardInterrupt:  # the steps under way finish, no new one starts: then the lock is released
                stopping.set()
                raise
        errors = [future.exception() for future in futures if future.exception()]
        failures = [error for error in errors if not isinstance(error, ResponseLost)]
        if failures:
            more = f" (and {len(errors) - 1} more failures)" if len(errors) > 1 else ""
            raise BootstrapError(f"{describe(failures[0], ctx.settings.hcloud_endpoint)}{more}; "
                                 "run apply again to finish") from failures[0]
        if errors:
            raise errors[0]


def converge(ctx: Context, steps: list[Step], replan: Callable[[Context], list[Step]], out=sys.stdout) -> None:
    """execute, continuing from what exists after lost answers (at most MAX_RETRIES times in a row)."""
    for recovery in range(MAX_RETRIES + 1):
        try:
            return execute(ctx, steps, out)
        except ResponseLost as lost:
            if recovery == MAX_RETRIES:
                raise BootstrapError(f"{lost}, {MAX_RETRIES + 1} times in a row; run the command again when the "
                                     "connection to the API is stable") from lost
            _say(f"  lost  {lost}: reading the project again to continue from what exists", out)
            _settle_our_actions(ctx, observe(ctx.client, ctx.settings, ctx.keys))
            ctx.observed = observe(ctx.client, ctx.settings, ctx.keys)
            steps = replan(ctx)
            refuse_conflicts(steps, "the run stops here; run it again once that is resolved")


def _settle_our_actions(ctx: Context, observed) -> None:
    """Wait for the actions running on our resources (a lost answer may have started one): a plan made
    while they run would meet `locked` resources."""
    collections = {"server": (ctx.client.servers, observed.servers), "volume": (ctx.client.volumes, observed.volumes),
                   "firewall": (ctx.client.firewalls, observed.firewalls),
                   "network": (ctx.client.networks, observed.networks)}
    for kind, (collection, ours) in collections.items():
        ids = {resource.id for resource in ours.values()}
        if ids:
            settle(action for action in collection.actions.get_all(status=["running"])
                   if any(resource["type"] == kind and resource["id"] in ids for resource in action.resources or []))
