"""Benchmark (run by hand): does bootstrap's apply scale with the number of Dokku servers?

    .venv/bin/python bench/bench_bootstrap.py [--latency 2] [--servers 1 10]

Against the fake cloud with every action taking --latency seconds (Hetzner's take seconds to minutes),
it measures the wall time of a first apply for each DOKKU_SERVERS value and the number of requests of a
no-op plan afterwards. Targets: time ratio (largest / smallest) <= 1.3, and equal plan request counts
(resources are listed by label selector, not fetched one by one).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakecloud import FakeCloud  # noqa: E402
from tests.fakecloud.harness import Harness  # noqa: E402


def measure(servers: int, latency: float) -> dict:
    fake = FakeCloud(action_latency=latency)
    fake.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            h = Harness(Path(tmp), fake, DOKKU_SERVERS=str(servers), HCLOUD_POLL_INTERVAL="1",
                        HCLOUD_RETRY_BACKOFF="1")
            start = time.monotonic()
            apply = h.run("apply", "--yes")
            wall = time.monotonic() - start
            if apply.code != 0:
                raise SystemExit(f"apply failed: {apply.err}")
            plan = h.run("plan")
            return {"servers": servers, "wall": wall, "apply_requests": len(apply.requests),
                    "apply_mutations": len(apply.mutations), "plan_requests": len(plan.requests),
                    "plan_code": plan.code}
    finally:
        fake.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=2.0, help="seconds every fake action runs")
    parser.add_argument("--servers", type=int, nargs="+", default=[1, 10], help="DOKKU_SERVERS values")
    args = parser.parse_args()
    print(f"fake cloud action latency {args.latency:g} s, HCLOUD_POLL_INTERVAL 1 s")
    results = [measure(servers, args.latency) for servers in args.servers]
    for r in results:
        print(f"DOKKU_SERVERS={r['servers']:<3} apply {r['wall']:6.1f} s  ({r['apply_requests']} requests, "
              f"{r['apply_mutations']} mutating)   no-op plan: {r['plan_requests']} requests, exit {r['plan_code']}")
    ratio = results[-1]["wall"] / results[0]["wall"]
    plans = [r["plan_requests"] for r in results]
    print(f"apply wall-time ratio {ratio:.2f} (target <= 1.3): {'ok' if ratio <= 1.3 else 'MISSED'}")
    print(f"no-op plan requests {' vs '.join(map(str, plans))} (target: equal): "
          f"{'ok' if len(set(plans)) == 1 else 'MISSED'}")
    return 0 if ratio <= 1.3 and len(set(plans)) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
