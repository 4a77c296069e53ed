"""The local proving ground: a Hetzner-like cloud on one machine (`python -m tests.testbed up|down`)."""
