"""A per-host cache of the HostSnapshot fact, so that a deploy that changes nothing reads each host once.

Operations declare what they will look at when they are called (`@snapshot_operation(asks)`: during pyinfra's
prepare phase, before anything runs), so the first read at execution covers every question of the run.
The cache is dropped whenever an operation changed the host, whichever operation it was (ours drop it when
they yield a command; a state callback catches pyinfra's and other tasks' operations), so the next read sees
the host after those commands ran. Anything not asked in advance is read on demand (one more round trip).
`on=` asks and reads another host's snapshot (the platform's public key for the Dokku hosts, their SSH host keys
for the platform): asked at prepare time, it is answered by that host's own single read.
"""

from __future__ import annotations

import functools
from collections import defaultdict

from pyinfra import host, state
from pyinfra.api import operation
from pyinfra.api.state import BaseStateCallback

from tasks.facts import HostSnapshot

_LISTS = ("files", "units", "paths", "sysctls", "users", "contents", "certs")
_questions: dict[str, dict] = defaultdict(lambda: {**{key: set() for key in _LISTS}, "device": "", "swap": "",
                                                    "compose": "", "dokku": False})
_cache: dict[str, dict] = {}
_last_op: dict[str, str] = {}


class _DropOnChange(BaseStateCallback):
    """When a host starts an operation, drop its snapshot if its previous operation changed something."""

    @staticmethod
    def operation_host_start(state, host, op_hash):
        previous, _last_op[host.name] = _last_op.get(host.name), op_hash
        if previous and previous in state.ops.get(host, {}):
            meta = state.get_op_data_for_host(host, previous).operation_meta
            if meta.is_complete() and meta.did_change():
                _cache.pop(host.name, None)


def _watch() -> None:
    handlers = getattr(state, "callback_handlers", None)
    if handlers is not None and not any(isinstance(handler, _DropOnChange) for handler in handlers):
        state.add_callback_handler(_DropOnChange())


def ask(on=None, **questions) -> None:
    """Register questions for the current host (or host `on`): files=[...], units=[...], paths=[...],
    sysctls=[...], users=[...], contents=[...], certs=[...], device="/dev/...", swap="/swapfile",
    compose="project", dokku=True."""
    _watch()
    name = (host if on is None else on).name
    registered = _questions[name]
    missing = False
    for key, value in questions.items():
        if key in _LISTS:
            missing |= not set(value) <= registered[key]
            registered[key] |= set(value)
        elif value and registered[key] != value:
            registered[key] = value
            missing = True
    if missing:
        _cache.pop(name, None)


def read(on=None, **questions) -> dict:
    """The state of the current host (or host `on`), answering `questions` (added to the registered ones)."""
    target = host if on is None else on
    ask(on=target, **questions)
    if target.name not in _cache:
        registered = _questions[target.name]
        _cache[target.name] = target.get_fact(HostSnapshot, **{
            key: sorted(value) if key in _LISTS else value for key, value in registered.items()})
    return _cache[target.name]


def forget() -> None:
    """Drop every host's snapshot: the next reads see the hosts as they are now (the deploy just took the
    environment's lock, tasks/lock.py)."""
    _cache.clear()


def changing() -> None:
    """Call before yielding commands: the next read happens after they ran."""
    _cache.pop(host.name, None)


def snapshot_operation(asks):
    """@operation() that registers `asks(**op_kwargs)` with the snapshot when it is called (prepare phase),
    and drops the snapshot when it yields commands."""
    def decorator(func):
        @functools.wraps(func)
        def body(*args, **kwargs):
            first = True
            for command in func(*args, **kwargs):
                if first:
                    changing()
                    first = False
                yield command

        op = operation()(body)

        @functools.wraps(op)
        def call(*args, **kwargs):
            ask(**asks(**kwargs))
            return op(*args, **kwargs)

        call._inner = op._inner
        return call
    return decorator
