"""Run the fake cloud as a daemon: prints its base URL (ending in /v1) on the first stdout line once listening."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from .server import FakeCloud, Faults


def _hooks(spec: str):
    module_name, _, class_name = spec.partition(":")
    if not class_name:
        raise SystemExit(f"--hooks {spec!r}: use module:Class")
    return getattr(importlib.import_module(module_name), class_name)()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakecloud", description=__doc__)
    parser.add_argument("--listen", type=_address, default=("127.0.0.1", 0), help="HOST:PORT (port 0: any free port)")
    parser.add_argument("--state", help="JSON file keeping the state across restarts")
    parser.add_argument("--hooks", help="module:Class of a tests.fakecloud.hooks.CloudHooks subclass")
    parser.add_argument("--action-latency", type=float, default=0.0, help="seconds every action stays running")
    parser.add_argument("--token", help="accept only this API token (default: any non-empty token)")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests answered 429/503")
    args = parser.parse_args(argv)
    fake = FakeCloud(state_file=args.state, hooks=_hooks(args.hooks) if args.hooks else None,
                     action_latency=args.action_latency, token=args.token,
                     faults=Faults(rate=args.fault_rate), listen=args.listen)
    return serve_until_signalled(fake)


def serve_until_signalled(fake) -> int:
    """Print the fake's URL once it listens, serve until SIGTERM/SIGINT, stop."""
    print(fake.start(), flush=True)
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
