"""The step framework every planner uses: a plan is a list of small printable steps (create / update / resize /
replace / delete / warning / conflict / unchanged), rendered as the plan's table and run by cloud/execute.py.

Each step that changes something carries a `run(ctx)`. Steps run by phase; within a phase, steps with the
same target run one after another (Hetzner locks a server while an action on it runs), different targets
run at the same time. A conflict (something of another environment in the way) stops plan and apply before
anything is sent. The resources are planned elsewhere: cloud/project_resources.py (SSH keys, network,
firewalls, placement group), servers.py (servers and volumes), dns.py, stripe_webhook.py, destroy.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import hcloud

from settings import Settings

from .api import BootstrapError, Catalog
from .desired import KeySpec, ServerSpec
from .observe import Observed
from .probe import answers_ssh

CHANGES = ("create", "update", "resize", "replace", "delete")
# ROLL comes last: resizes run one server at a time once everything else is in place.
BASE, CREATE, CONVERGE, DNS, ROLL = range(5)


@dataclass
class Context:
    client: hcloud.Client
    settings: Settings
    observed: Observed
    catalog: Catalog | None = None
    keys: list[KeySpec] = field(default_factory=list)
    servers: list[ServerSpec] = field(default_factory=list)
    ssh_probe: Callable[[str], bool] = answers_ssh  # address -> does SSH answer there (tests ask the fake)
    stripe: object | None = None  # cloud.stripe_webhook.StripeObserved, when STRIPE_SECRET_KEY is set


@dataclass
class Step:
    kind: str
    resource: str
    name: str
    detail: str = ""
    run: Callable[[Context], None] | None = field(default=None, repr=False)
    phase: int = BASE
    target: str = ""

    @property
    def changes(self) -> bool:
        return self.kind in CHANGES


def pending(steps: list[Step]) -> bool:
    return any(step.changes for step in steps)


def conflicts(steps: list[Step]) -> list[Step]:
    return [step for step in steps if step.kind == "conflict"]


def refuse_conflicts(steps: list[Step], outcome: str = "nothing was changed") -> None:
    """One line naming the first conflict; raised after the plan is shown, before its first step runs."""
    conflicting = conflicts(steps)
    if conflicting:
        first = conflicting[0]
        more = f" (and {len(conflicting) - 1} more)" if len(conflicting) > 1 else ""
        raise BootstrapError(f"{first.resource} {first.name}{more}: {first.detail}; {outcome}")


def render(steps: list[Step], title: str) -> str:
    widths = [max([len(getattr(step, column)) for step in steps] + [0]) for column in ("kind", "resource", "name")]
    lines = [title]
    for step in steps:
        row = [step.kind.ljust(widths[0]), step.resource.ljust(widths[1]), step.name.ljust(widths[2]), step.detail]
        lines.append("  " + "  ".join(row).rstrip())
    counts = {kind: sum(step.kind == kind for step in steps) for kind in CHANGES + ("conflict", "warning", "unchanged")}
    lines.append("Plan: " + ", ".join(f"{count} {kind}" for kind, count in counts.items() if count) + "."
                 if steps else "Plan: nothing is managed yet.")
    return "\n".join(lines)


def labels_step(resource: str, obj, wanted: dict, update: Callable, phase: int = BASE, target: str = "") -> list[Step]:
    """Put our labels back (other labels an operator added are kept)."""
    current = obj.labels or {}
    merged = {**current, **wanted}
    if merged == current:
        return []
    drift = ", ".join(f"{key}={current.get(key, '(missing)')} -> {value}" for key, value in wanted.items()
                      if current.get(key) != value)
    return [Step("update", resource, obj.name, f"labels: {drift}", lambda ctx: update(ctx, obj, merged),
                 phase, target or obj.name)]


def update_labels(collection: str):
    return lambda ctx, obj, labels: getattr(ctx.client, collection).update(obj, labels=labels)
