"""Lines a deploy prints once at its end, after every host's operations: what it found on the hosts but leaves
to a maintenance command (hosts that need a reboot, Dokku servers that wait for an upgrade)."""

from __future__ import annotations

from collections.abc import Callable

from pyinfra import logger, state
from pyinfra.api.state import BaseStateCallback

_sources: dict[str, Callable[[], list[str]]] = {}


class _AtTheEnd(BaseStateCallback):
    def __init__(self):
        self.reported = False

    def host_disconnect(self, state, host):  # pyinfra disconnects the hosts once every operation ran
        if self.reported:
            return
        self.reported = True
        for lines in _sources.values():
            for line in lines():
                logger.warning(line)


def at_end(key: str, lines: Callable[[], list[str]]) -> None:
    """Print the warnings `lines()` returns once, at the end of the run (one source per key)."""
    if not any(isinstance(handler, _AtTheEnd) for handler in state.callback_handlers):
        state.add_callback_handler(_AtTheEnd())
    _sources[key] = lines
