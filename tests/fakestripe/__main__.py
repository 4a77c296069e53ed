"""Run the fake Stripe API as a daemon: prints its base URL (STRIPE_API_BASE) on the first stdout line once
listening; stops on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import sys

from tests.fakecloud.__main__ import _address, serve_until_signalled

from .server import FakeStripe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakestripe", description=__doc__)
    parser.add_argument("--listen", type=_address, default=("127.0.0.1", 0), help="HOST:PORT (port 0: any free port)")
    parser.add_argument("--state", help="JSON file keeping the account across restarts")
    parser.add_argument("--key", action="append", help="accept only this secret key (repeatable; default: any)")
    args = parser.parse_args(argv)
    fake = FakeStripe(state_file=args.state, keys=set(args.key) if args.key else None, listen=args.listen)
    return serve_until_signalled(fake)


if __name__ == "__main__":
    sys.exit(main())
