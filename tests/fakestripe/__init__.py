"""A stateful fake of Stripe's API v1 (webhook endpoints, prices, products), spoken to only through the real
`stripe` library.

In-process: `fake = FakeStripe(state_file=None, keys=None); url = fake.start()` (set STRIPE_API_BASE to it),
`fake.stop()`. As a daemon for the testbed: `python -m tests.fakestripe --listen 127.0.0.1:PORT --state FILE`.
"""

from .server import FakeStripe, decode_form

__all__ = ["FakeStripe", "decode_form"]
