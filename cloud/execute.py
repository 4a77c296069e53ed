"""Run the steps of a plan: phase by phase; in a phase, each target's steps in order, targets concurrently."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor, wait

from .api import BootstrapError, describe
from .plan import Context, Step

MAX_WORKERS = 32
_print_lock = threading.Lock()


def _report(step: Step, out) -> None:
    with _print_lock:
        print(f"  done  {step.kind:<7} {step.resource} {step.name}: {step.detail}".rstrip(": "), file=out, flush=True)


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
        if errors:
            more = f" (and {len(errors) - 1} more failures)" if len(errors) > 1 else ""
            raise BootstrapError(f"{describe(errors[0], ctx.settings.hcloud_endpoint)}{more}; run apply again to finish") from errors[0]
