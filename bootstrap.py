"""The platform's Hetzner Cloud resources, reconciled by labels (no local state).

    python bootstrap.py plan                                  what would change (exit 0 in sync, 2 pending, 1 error)
    python bootstrap.py apply [--yes]                         show the plan, ask, converge
    python bootstrap.py destroy [--yes] [--include-volumes]   delete what it owns (volumes kept by default)
    python bootstrap.py output [--json]                       addresses, volumes, DNS records; writes OUTPUTS_FILE
    python bootstrap.py lock                                  who holds the environment's lock
    python bootstrap.py unlock --force                        break a lock whose holder died

apply and destroy take the environment's lock (cloud/lock.py) when they have something to do, and plan again
under it; a second run fails at once naming the holder, or waits with --lock-wait SECONDS.

Settings come from the environment / ENV_FILE (see .env.example). Bad input stops with one line naming the
setting, before anything is created.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Mapping

import requests
from hcloud import APIException

from cloud import lock, outputs, stripe_webhook
from cloud.api import BootstrapError, check_catalog, connect, describe
from cloud.desired import key_specs, server_specs
from cloud.destroy import REST, plan_destroy
from cloud.dns import plan_dns
from cloud.execute import converge
from cloud.observe import observe
from cloud.project_resources import plan_firewalls, plan_keys, plan_network, plan_placement_group
from cloud.steps import Context, conflicts, pending, refuse_conflicts, render
from cloud.probe import answers_ssh
from cloud.servers import plan_servers
from settings import Settings, SettingsError, load_settings

EXIT_OK, EXIT_ERROR, EXIT_PENDING = 0, 1, 2


def prepare(settings: Settings, ssh_probe: Callable[[str], bool]) -> Context:
    """Local checks first (nothing is sent before they pass), then the catalog check, then observation."""
    settings.admin_networks  # noqa: B018 - raises when ADMIN_IPS is missing or invalid
    keys = key_specs(settings)
    client = connect(settings)  # sends nothing yet
    stripe_observed = stripe_webhook.observe(settings)  # local Stripe checks, the prices, the endpoints
    catalog = check_catalog(client, settings)
    ctx = Context(client=client, settings=settings, observed=observe(client, settings, keys), catalog=catalog,
                  keys=keys, servers=server_specs(settings, keys), ssh_probe=ssh_probe,
                  stripe=stripe_observed)
    return ctx


def make_plan(ctx: Context) -> list:
    return (plan_keys(ctx) + plan_network(ctx) + plan_firewalls(ctx) + plan_placement_group(ctx)
            + plan_servers(ctx) + plan_dns(ctx) + stripe_webhook.plan_stripe(ctx))


def _replan(ctx: Context) -> list:
    """After a lost answer: Stripe is read again too (the endpoint may have been made before it)."""
    ctx.stripe = stripe_webhook.observe(ctx.settings)
    return make_plan(ctx)


def _title(settings: Settings, verb: str) -> str:
    return f"{verb} for environment {settings.environment} ({settings.hcloud_endpoint}):"


def cmd_plan(settings: Settings, args, out) -> int:
    ctx = prepare(settings, args.ssh_probe)
    steps = make_plan(ctx)
    print(render(steps, _title(settings, "Plan")), file=out)
    refuse_conflicts(steps)
    return EXIT_PENDING if pending(steps) else EXIT_OK


def cmd_apply(settings: Settings, args, out) -> int:
    outputs.check_writable(settings.outputs_file)
    ctx = prepare(settings, args.ssh_probe)
    steps = make_plan(ctx)
    stripe_webhook.refuse_mode_mismatch(ctx)  # before the lock: nothing is sent for a refused run
    if conflicts(steps) or (not pending(steps) and not lock.stale_here(ctx.client, settings)):
        return _apply(ctx, args, out)  # refused, or nothing to change: without the lock
    with lock.hold(ctx.client, settings, "apply", args.lock_wait, out):
        ctx.observed = observe(ctx.client, settings, ctx.keys)  # plan again, under the lock
        return _apply(ctx, args, out)


def _apply(ctx: Context, args, out) -> int:
    steps = make_plan(ctx)
    print(render(steps, _title(ctx.settings, "Plan")), file=out)
    refuse_conflicts(steps)
    if pending(steps):
        if not args.yes and not _confirm("Apply these changes? Type 'yes' to go on: ", "yes", out):
            print("Nothing changed.", file=out)
            return EXIT_ERROR
        converge(ctx, steps, _replan, out)
    _write_outputs(ctx, out, reobserve=pending(steps))
    print("Applied." if pending(steps) else "Nothing to do: everything is in sync.", file=out)
    return EXIT_OK


def cmd_destroy(settings: Settings, args, out) -> int:
    client = connect(settings)
    first_look = Context(client=client, settings=settings, observed=observe(client, settings))
    if not pending(plan_destroy(first_look, args.include_volumes)) and not lock.stale_here(client, settings):
        return _destroy(client, settings, args, out)
    with lock.hold(client, settings, "destroy", args.lock_wait, out):  # released (deleted) last
        return _destroy(client, settings, args, out)  # observes again, under the lock


def _destroy(client, settings: Settings, args, out) -> int:
    ctx = Context(client=client, settings=settings, observed=observe(client, settings))
    steps = plan_destroy(ctx, args.include_volumes) + stripe_webhook.plan_destroy(ctx, phase=REST)
    print(render(steps, _title(settings, "Destroy")), file=out)
    if not pending(steps):
        print("Nothing to destroy.", file=out)
        return EXIT_OK
    prompt = f"Type the environment name ({settings.environment}) to destroy it: "
    if not args.yes and not _confirm(prompt, settings.environment, out):
        print("Nothing destroyed.", file=out)
        return EXIT_ERROR
    converge(ctx, steps, lambda ctx: plan_destroy(ctx, args.include_volumes) + stripe_webhook.plan_destroy(ctx, REST),
             out)
    print("Destroyed.", file=out)
    return EXIT_OK


def cmd_lock(settings: Settings, args, out) -> int:
    held = lock.current(connect(settings), settings)
    print(f"environment {settings.environment} is not locked" if held is None else lock.locked_by(settings, held),
          file=out)
    return EXIT_OK


def cmd_unlock(settings: Settings, args, out) -> int:
    if not args.force:
        raise BootstrapError("unlock breaks the lock of a run that may still be working: check `python "
                             "bootstrap.py lock`, then use --force if its holder died")
    broken = lock.break_lock(connect(settings), settings)
    print(f"environment {settings.environment} was not locked" if broken is None else
          f"broke the lock of {broken.holder.describe()}", file=out)
    return EXIT_OK


def cmd_output(settings: Settings, args, out) -> int:
    outputs.check_writable(settings.outputs_file)
    client = connect(settings)
    ctx = Context(client=client, settings=settings, observed=observe(client, settings))
    data = _write_outputs(ctx, None, reobserve=False)
    print(json.dumps(data, indent=2) if args.json else outputs.render(data, settings.outputs_file), file=out)
    return EXIT_OK


def _write_outputs(ctx: Context, out, reobserve: bool) -> dict:
    observed = observe(ctx.client, ctx.settings) if reobserve else ctx.observed
    data = outputs.build(ctx.settings, observed)
    outputs.write(ctx.settings.outputs_file, data)
    if out:
        print(f"Outputs written to {ctx.settings.outputs_file} (mode 0600); `python bootstrap.py output` shows them.",
              file=out)
    return data


def _confirm(prompt: str, expected: str, out) -> bool:
    print(prompt, end="", file=out, flush=True)
    try:
        return input().strip() == expected
    except EOFError:
        return False


class _OneLineParser(argparse.ArgumentParser):
    """A usage error is one line, as every other error (argparse prints the usage before it); exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def command_parser(prog: str, doc: str):
    """The parser of a CLI of this project (bootstrap.py, backup.py, maintain.py): its module docstring's first
    paragraph as description, one required command; (parser, its subparsers)."""
    parser = _OneLineParser(prog=prog, description=doc.split("\n\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser, parser.add_subparsers(dest="command", required=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser, commands = command_parser("bootstrap.py", __doc__)
    commands.add_parser("plan", help="show what apply would change")
    apply = commands.add_parser("apply", help="create and reconcile the resources")
    apply.add_argument("--yes", action="store_true", help="do not ask")
    lock.add_wait_option(apply)
    destroy = commands.add_parser("destroy", help="delete the resources bootstrap owns")
    destroy.add_argument("--yes", action="store_true", help="do not ask for the environment name")
    destroy.add_argument("--include-volumes", action="store_true", help="also delete the volumes (data!)")
    lock.add_wait_option(destroy)
    output = commands.add_parser("output", help="show addresses, volumes and DNS records")
    output.add_argument("--json", action="store_true", help="print the outputs file's JSON")
    commands.add_parser("lock", help="show who holds the environment's lock")
    unlock = commands.add_parser("unlock", help="break the environment's lock (its holder died)")
    unlock.add_argument("--force", action="store_true", help="break it whoever holds it")
    return parser.parse_args(argv)


COMMANDS = {"plan": cmd_plan, "apply": cmd_apply, "destroy": cmd_destroy, "output": cmd_output, "lock": cmd_lock,
            "unlock": cmd_unlock}


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None, out=None,
         ssh_probe: Callable[[str], bool] = answers_ssh) -> int:
    """ssh_probe(address) tells whether SSH answers there (a rolling resize waits for it); tests pass one
    that asks the fake cloud."""
    args = parse_args(argv)
    args.ssh_probe = ssh_probe
    return run(COMMANDS, args, environ, out, "interrupted; run apply again to finish what was started")


def run(commands: dict, args: argparse.Namespace, environ: Mapping[str, str] | None, out, interrupted: str) -> int:
    """Run args.command; any failure is one line on stderr and exit 1 (also used by maintain.py)."""
    out = out or sys.stdout
    endpoint = "the Hetzner API"
    try:
        settings = load_settings(environ)
        endpoint = settings.hcloud_endpoint
        return commands[args.command](settings, args, out)
    except (SettingsError, BootstrapError, APIException, requests.RequestException) as error:
        message = describe(error, endpoint)
    except KeyboardInterrupt:
        message = interrupted
    out.flush()
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
