"""Performance figures of the deploy on the local testbed (printed, not a test). Needs root.

    sudo .venv/bin/python bench/bench_deploy.py [--runs 3] [--keep]

P1: a no-op deploy of the whole platform vs an empty pyinfra deploy on the same hosts, in each of pyinfra's modes:
    `-y` (target ≤ 2×), the default mode (change detection; a converged run ends before the prompt) and `--dry`
    (targets ≤ 3×).
P4: a no-op deploy to 3 hosts vs to 1 host (target ≤ 1.3×).
Boot: N guests booted in parallel through the cloud hooks; memory (PSS) per guest after the deploy.
It brings up its own lab with DOKKU_SERVERS=2 (3 hosts) and removes it at the end unless --keep.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.testbed import cloudhooks, guests, lab, layout, steps  # noqa: E402

EMPTY_DEPLOY = "bench/empty_deploy.py"
TARGETS = {"-y": 2, "default": 3, "--dry": 3}
BENCH_SERVER_IDS = range(90001, 90004)


def timed(runner: steps.Runner, name: str, argv: list[str], runs: int) -> float:
    """Median wall time of runs executions of a step."""
    for index in range(runs):
        runner.run(f"{name} #{index + 1}", argv)
    return statistics.median(runner.timings[f"{name} #{index + 1}"] for index in range(runs))


def _tree(pid: int) -> list[int]:
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue += [int(child) for child in (task / "children").read_text().split()]
            except FileNotFoundError:
                pass
    return pids


def pss_mib(pid: int) -> float:
    """Proportional set size of a process tree in MiB (shared pages split between their users)."""
    total = 0
    for member in _tree(pid):
        try:
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return total / 1024


def boot_time(count: int) -> float:
    """Seconds until `count` new guests, created in parallel, all answer on SSH."""
    hooks = cloudhooks.TestbedHooks()
    key = (layout.LAB / "ssh/admin_ed25519.pub").read_text()
    ids = list(BENCH_SERVER_IDS)[:count]
    began = time.monotonic()
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(lambda sid: hooks.server_created(sid, f"bench-{sid}", {}, [key]), ids))
    took = time.monotonic() - began
    for sid in ids:
        hooks.server_deleted(sid)
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per timed deploy (median)")
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = parser.parse_args()
    runner = steps.Runner(layout.CACHE / "bench-logs")
    figures: list[str] = []
    try:
        lab.up(dokku_servers=2)
        runner.run("bootstrap apply (boots 3 guests)", steps.apply())
        for count in (1, 3):
            figures.append(f"boot of {count} new guest(s) in parallel until SSH answers (idle lab): "
                           f"{boot_time(count):.1f}s")
        runner.run("first deploy, 3 hosts", steps.deploy())
        ratios = {}
        for mode in steps.DEPLOY_MODES:
            ratios[mode] = (timed(runner, f"no-op deploy ({mode}), 3 hosts", steps.deploy_in_mode(mode), args.runs),
                            timed(runner, f"empty deploy ({mode}), 3 hosts",
                                  steps.deploy_in_mode(mode, deploy_file=EMPTY_DEPLOY), args.runs))
        noop = ratios["-y"][0]
        singles = {name: timed(runner, f"no-op deploy, 1 host ({name})", steps.deploy("--limit", name), args.runs)
                   for name in ("mindroom-testbed-dokku-1", "mindroom-testbed-platform")}
        slowest = max(singles.values())
        figures += [
            f"P1 {mode} no-op deploy / empty deploy (3 hosts): {mode_noop:.2f}s / {mode_empty:.2f}s = "
            f"{mode_noop / mode_empty:.2f}x (target <= {TARGETS[mode]}x)" for mode, (mode_noop, mode_empty) in ratios.items()]
        figures += [
            f"P4 no-op deploy 3 hosts / slowest single host: {noop:.1f}s / {slowest:.1f}s = {noop / slowest:.2f}x "
            f"(target <= 1.3x; single hosts: {', '.join(f'{n} {t:.1f}s' for n, t in singles.items())})",
            f"first deploy of the platform on 3 fresh hosts: {runner.timings['first deploy, 3 hosts']:.0f}s",
            f"bootstrap apply incl. booting 3 guests: {runner.timings['bootstrap apply (boots 3 guests)']:.1f}s",
        ]
        for server_id in guests.all_ids(layout.LAB):
            state = guests.load(layout.LAB, server_id)
            pid = guests.init_pid(layout.LAB, server_id)
            if pid:
                figures.append(f"memory (PSS) of {state['name']} after the deploy: {pss_mib(pid):.0f} MiB")
        figures.append(f"boot of 3 new guests in parallel beside the deployed platform: {boot_time(3):.1f}s")
    except steps.StepFailed as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            problems = lab.down()
            if problems:
                print("down:", *problems, sep="\n  ", file=sys.stderr)
        print("\n".join(["", "Benchmark (median of %d runs each):" % args.runs, *figures]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
