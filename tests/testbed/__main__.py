"""python -m tests.testbed up [--deploy] | down | status — the local proving ground (needs root).

up        start the local cloud (fake Hetzner API whose servers are nspawn guests) and the stand-ins,
          write .env.testbed. Idempotent.
up --deploy   then run, with ENV_FILE=.env.testbed: bootstrap apply, the pyinfra deploy, a backup, the host tests,
          and print how to reach the platform.
down      remove everything up made (guests, namespaces, links, mounts, loop devices, processes, LAB).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from tests.testbed import guests, lab, layout, procs, steps


def _deploy() -> None:
    runner = steps.Runner(layout.LAB / "logs" / "deploy")
    runner.run("bootstrap apply", steps.apply())
    runner.run("deploy", steps.deploy())
    runner.run("first backup", steps.backup("now"))  # the host tests check the last backup succeeded
    runner.run("host tests", steps.host_tests())
    print(how_to_reach())


def how_to_reach() -> str:
    """Where the lab's platform is and how to look at it."""
    from settings import load_settings

    settings = load_settings({**os.environ, "ENV_FILE": str(layout.ENV_FILE)}, cwd=layout.REPO_ROOT)
    outputs = json.loads(settings.outputs_file.read_text())
    lines = ["", "The platform runs on local guests (settings: .env.testbed):"]
    platform_ip = ""
    for server in outputs["servers"]:
        lines.append(f"  {server['name']:32} {server['ipv4']:14} private {server['private_ip']}  "
                     f"ssh -i {settings.ssh_private_key_path} root@{server['ipv4']}")
        if server["role"] == "platform":
            platform_ip = server["ipv4"]
    if platform_ip:
        lines += ["Try it (the names resolve only inside the lab, hence --resolve; -k: the certificates come "
                  "from the local ACME server, Pebble):"]
        lines += [f"  curl -k --resolve {name}:443:{platform_ip} https://{name}/" for name in settings.platform_hostnames()]
        lines += [f"The admin dashboard's password (user admin) is kept in {settings.secrets_dir}."]
    lines += ["Tear it all down: python -m tests.testbed down"]
    return "\n".join(lines)


def status() -> str:
    rows = []
    for server_id in guests.all_ids(layout.LAB):
        state = guests.load(layout.LAB, server_id)
        running = "running" if guests.init_pid(layout.LAB, server_id) else "stopped"
        rows.append(f"{state['name']:32} {state['ipv4']:14} {state['private_ip'] or '-':12} {running}")
    return "\n".join(rows) or "no guests"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testbed", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the lab and write .env.testbed")
    up.add_argument("--deploy", action="store_true", help="then bootstrap, deploy and run the host tests")
    up.add_argument("--dokku-servers", type=int, default=1, help="DOKKU_SERVERS of the lab (default 1)")
    commands.add_parser("down", help="remove everything up made")
    commands.add_parser("status", help="list the lab's guests")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            lab.up(dokku_servers=args.dokku_servers)
            print(f"testbed: up; settings in {layout.ENV_FILE} (use ENV_FILE=.env.testbed)")
            if args.deploy:
                _deploy()
        elif args.command == "down":
            problems = lab.down()
            for problem in problems:
                print(f"testbed: down: {problem}", file=sys.stderr)
            if problems:
                return 1
            print("testbed: down; nothing of the lab is left")
        else:
            print(status())
    except (procs.LabError, steps.StepFailed) as error:
        print(f"testbed: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
