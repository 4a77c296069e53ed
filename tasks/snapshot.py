"""The host snapshot: one HostSnapshot read per host answers what every operation compares (ask, then read).

- **Ask**: an operation says what it will look at (`@snapshot_operation(asks)`), and deploy.py declares its tasks
  through `declare(tasks)`: the first host to get there runs the tasks of every active host in asking mode (the
  operations register their questions, nothing is declared with pyinfra, nothing is read), then each host
  declares its operations for real. So every question, another host's (`on=`) included, is known before the first
  read, in every mode: with `-y` the reads happen at execution; in the default mode and with `--dry` pyinfra runs
  each operation while declaring it (change detection), and every operation of a host sees the same read.
- **Check** (`declare(tasks, check=True)`: the default mode and `-y`): before anything is declared, every host is
  read (in parallel) and its tasks run in checking mode: each operation's own code runs against the snapshot,
  declaring nothing. When no operation of any host would change anything, no host declares anything and
  converged.finish_planning() ends the run: pyinfra's declaration of an operation (its call-stack inspection, a
  few ms each) and execution of ~100 no-op operations per host would confirm nothing more. At the first change (or
  error) the check stops and the tasks are declared as above, with the same reads: pyinfra plans, reports and runs
  as usual (the changing operation ran up to its first command: a pyinfra operation it hands the change to may
  have loaded its own facts once more).
- **Read**: `read()` answers from the host's snapshot, read once and kept with pyinfra's state (never in module
  globals). Nothing changes a host before execution, so a read made while planning stays valid; during execution
  a state callback drops it once an operation of the host changed something, and the next read sees the result.
- **Enforced**: reading what was not asked raises NotAsked (in production as in the tests): the snapshot never
  answers "nothing" for a question nobody asked, which would read as "missing" (a host key silently dropped).
  `answer()` installs a snapshot from a test case: there a question the case does not answer is an error too.
"""

from __future__ import annotations

import copy
import functools
from contextlib import contextmanager

import gevent
from gevent.event import Event
from pyinfra import host, state
from pyinfra.api import DeployError, OperationError, operation
from pyinfra.api.arguments import all_global_arguments
from pyinfra.api.operation import OperationMeta
from pyinfra.api.state import BaseStateCallback
from pyinfra.context import ctx_host, ctx_state

from tasks.facts import HostSnapshot

# Questions that name things (files=[...]) and the fact's section that answers them
LISTS = {"files": "files", "units": "units", "paths": "paths", "sysctls": "sysctl", "users": "users",
         "contents": "contents", "certs": "certs"}
# Questions with one value (device="/dev/sdb", dokku=True) and their sections
SINGLES = {"device": "device", "swap": "swap_size", "compose": "compose", "dokku": "dokku"}


# How declare() is running the tasks: operations only ask, only check, or are declared with pyinfra
ASKING, CHECKING, DECLARING = "asking", "checking", "declaring"


class NotAsked(OperationError):
    """An operation read something it did not ask for (its `asks` is incomplete): a bug, never an answer."""


class _WouldChange(Exception):
    """Checking: an operation would change its host (or failed: pyinfra's own run reports that)."""


class Questions:
    """What one host's snapshot must answer."""

    def __init__(self):
        self.lists = {key: set() for key in LISTS}
        self.singles = {key: "" for key in SINGLES}

    def add(self, **questions) -> bool:
        """Register questions; whether any was new."""
        new = False
        for key, value in questions.items():
            if key in LISTS:
                new |= not set(value) <= self.lists[key]
                self.lists[key] |= set(value)
            elif key in SINGLES:
                if value and self.singles[key] != value:
                    new |= True
                    self.singles[key] = value
            else:
                raise TypeError(f"unknown snapshot question {key!r}")
        return new

    def fact_arguments(self) -> dict:
        return {**{key: sorted(value) for key, value in self.lists.items()}, **self.singles}


class Answers:
    """One section of a snapshot that answers named questions (files, units, ...): a name nobody asked about
    raises NotAsked; an asked name the host does not have is None."""

    def __init__(self, section: str, values: dict, asked: set, complete: bool):
        self.section, self._values, self._asked, self._complete = section, values, asked, complete

    def __getitem__(self, name):
        if name not in self._asked:
            raise NotAsked(f"the snapshot was not asked {self.section}[{name!r}]")
        if name not in self._values and not self._complete:
            raise NotAsked(f"the test snapshot does not answer {self.section}[{name!r}] (null: the host has none)")
        return self._values.get(name)

    def get(self, name, default=None):
        value = self[name]
        return default if value is None else value

    def __contains__(self, name) -> bool:
        return self[name] is not None


class Snapshot:
    """The answers of one read: `snap["files"]["/etc/x"]`, `snap["packages"]`, ... (shape: tasks/facts.py)."""

    def __init__(self, fact: dict, questions: Questions, complete: bool = True):
        self._fact, self._questions, self._complete = fact, copy.deepcopy(questions), complete

    def __getitem__(self, section: str):
        for question, answered_in in LISTS.items():
            if section == answered_in:
                return Answers(section, self._fact.get(section, {}), self._questions.lists[question], self._complete)
        for question, answered_in in SINGLES.items():
            if section == answered_in and not self._questions.singles[question]:
                raise NotAsked(f"the snapshot was not asked {question}=...")
        if section not in self._fact:
            raise NotAsked(f"the test snapshot does not answer {section!r}")
        return self._fact[section]


class _Book:
    """The snapshot state of one pyinfra run (kept on pyinfra's State)."""

    def __init__(self):
        self.questions: dict = {}  # host -> Questions
        self.snapshots: dict = {}  # host -> Snapshot
        self.reading: dict = {}  # host -> Event set when its read under way is done
        self.last_op: dict = {}  # host -> the op hash it started last (execution)
        self.asked = False  # deploy.py's questions are being or were gathered for every host
        self.all_asked = Event()  # set once they were (and checked): until then no host declares
        self.converged = False  # the check found nothing to change on any host: nothing is declared
        self.running = DECLARING  # ASKING, CHECKING or DECLARING
        self.said: set = set()  # once(): what was said in this run


def _book(run=None) -> _Book:
    """The snapshot state of this run (pyinfra's State `run`, by default the current one)."""
    run = run or ctx_state.get()
    book = getattr(run, "mindroom_snapshots", None)
    if book is None:
        book = run.mindroom_snapshots = _Book()
        if hasattr(run, "add_callback_handler"):  # a real State (tests give operations a stand-in)
            run.add_callback_handler(_DropOnChange())
    return book


def _target(on):
    return ctx_host.get() if on is None else on


class _DropOnChange(BaseStateCallback):
    """At execution: when a host starts an operation, drop its snapshot if its previous operation changed
    something (whichever operation that was: ours, pyinfra's, another task's)."""

    @staticmethod
    def operation_host_start(state, host, op_hash):
        book = _book(state)
        previous, book.last_op[host] = book.last_op.get(host), op_hash
        if previous and previous in state.ops.get(host, {}):
            meta = state.get_op_data_for_host(host, previous).operation_meta
            if meta.is_complete() and meta.did_change():
                book.snapshots.pop(host, None)


def ask(on=None, **questions) -> None:
    """Register questions for the current host (or host `on`): files=[...], units=[...], paths=[...],
    sysctls=[...], users=[...], contents=[...] (public files only: returned whole), certs=[...],
    device="/dev/...", swap="/swapfile", compose="project", dokku=True. A question that arrives after the host
    was read makes the next read a new one (deploy.py's tasks never do: declare() asks first)."""
    book, target = _book(), _target(on)
    if book.questions.setdefault(target, Questions()).add(**questions):
        book.snapshots.pop(target, None)


def read(on=None) -> Snapshot:
    """The snapshot of the current host (or host `on`), read once for everything asked. Hosts are planned in
    parallel (one greenlet each) and a host's snapshot is also read by others (`on=`): a read under way is
    waited for, never started twice."""
    book, target = _book(), _target(on)
    while target not in book.snapshots:
        if target in book.reading:
            book.reading[target].wait()
            continue
        book.reading[target] = Event()
        try:
            questions = book.questions.setdefault(target, Questions())
            fact = target.get_fact(HostSnapshot, **questions.fact_arguments())
            book.snapshots[target] = Snapshot(fact, questions)
        finally:
            book.reading.pop(target).set()
    return book.snapshots[target]


def answer(fact: dict, on=None) -> Snapshot:
    """Tests: the current host's (or `on`'s) snapshot is `fact`, exactly (no default fills a section the case
    leaves out), for the questions asked so far."""
    book, target = _book(), _target(on)
    book.snapshots[target] = Snapshot(fact, book.questions.setdefault(target, Questions()), complete=False)
    return book.snapshots[target]


def forget() -> None:
    """Drop every host's snapshot: the next reads see the hosts as they are now (the deploy just took the
    environment's lock, tasks/lock.py)."""
    _book().snapshots.clear()


def once(key) -> bool:
    """Whether `key` comes up for the first time in this run: the tasks run up to three times (asking, checking,
    declaring), a message they print is said once."""
    book = _book()
    if key in book.said:
        return False
    book.said.add(key)
    return True


@contextmanager
def _running(how: str):
    book = _book()
    book.running = how
    try:
        yield
    finally:
        book.running = DECLARING


def _read_quietly(member) -> bool:
    """Read member's snapshot; whether that worked (a failed read is left to pyinfra's own run to report)."""
    with ctx_host.use(member):
        try:
            read()
        except Exception:
            return False
    return True


def _nothing_would_change(tasks, members) -> bool:
    """Whether no operation of any member would change anything: every member is read (in parallel), then its
    tasks run in checking mode (no I/O: every read is made), up to the first change."""
    book = _book()
    readers = [gevent.spawn(_read_quietly, member) for member in members if member in book.questions]
    gevent.joinall(readers)
    if not all(reader.value for reader in readers):
        return False
    for member in members:
        with ctx_host.use(member), _running(CHECKING):
            try:
                tasks()
            except _WouldChange:
                return False
    return True


def declare(tasks, check: bool = False) -> None:
    """Declare deploy.py's tasks for the current host, every host's questions asked before anything is read.
    The first host to get here runs `tasks` for every active host in asking mode; the others wait for that to
    end: a task may yield meanwhile (the first deploy's ssh-keygen of the storage box key is a subprocess, which
    lets other greenlets run), and a host declaring then would be in asking mode too, declaring nothing. A pyinfra
    operation declared directly by a task would be declared twice (once while asking): that is refused; such a step
    goes through tasks/ops.py (e.g. ops.on_change).
    With `check` (converged.check_first()), the first host then checks every host's tasks against the snapshots
    (the others wait for that too): when nothing would change anywhere, no host declares anything (converged())."""
    book = _book()
    if not book.asked:
        book.asked = True
        try:
            members = list(state.inventory.get_active_hosts())
            for member in members:
                with ctx_host.use(member), _running(ASKING):
                    declared = len(member.op_hash_order)
                    tasks()
                    if len(member.op_hash_order) != declared:
                        raise DeployError(f"{member.name}: a task declared a pyinfra operation directly; call it "
                                          "through tasks/ops.py (a snapshot operation) so that asking declares nothing")
            book.converged = check and _nothing_would_change(tasks, members)
        finally:
            book.all_asked.set()
    book.all_asked.wait()
    if not book.converged:
        tasks()


def converged() -> bool:
    """Whether declare()'s check found that no operation of any host would change anything (so none was declared)."""
    return _book().converged


@functools.cache
def _global_argument_names() -> frozenset:
    return frozenset(name for name, _ in all_global_arguments())


def _check(func, args, kwargs) -> OperationMeta:
    """Run an operation's own code against the snapshot: _WouldChange at its first command (or error)."""
    try:
        commands = func(*args, **{key: value for key, value in kwargs.items() if key not in _global_argument_names()})
        try:
            first = next(commands, None)
        finally:
            commands.close()
    except Exception as error:
        raise _WouldChange() from error
    if first is not None:
        raise _WouldChange()
    return OperationMeta("checked", is_change=False)


def snapshot_operation(asks):
    """@operation() whose call first registers `asks(**op_kwargs)` (a dict of questions) with the snapshot; while
    declare() gathers questions, that is all the call does; while it checks, the operation's code runs against
    the snapshot and nothing is declared."""
    def decorator(func):
        op = operation()(func)

        @functools.wraps(op)
        def call(*args, **kwargs):
            ask(**asks(**kwargs))
            running = _book().running
            if running == ASKING:
                return OperationMeta("asking", is_change=False)
            if running == CHECKING:
                return _check(func, args, kwargs)
            return op(*args, **kwargs)

        call._inner = op._inner
        call.asks = asks
        return call
    return decorator
