#!/usr/bin/env python3
"""A `docker` for the Dokku stand-in's offline cases (tests/test_dokku_fidelity.py): the few container and image
commands the stand-in runs, over containers and images kept in $DOKKU_STANDIN_ROOT/docker.json; every call is
appended to $DOKKU_STANDIN_ROOT/docker.log. Unknown commands fail, so the cases see every new Docker call."""

import json
import os
import sys
import uuid
from pathlib import Path

ROOT = Path(os.environ["DOKKU_STANDIN_ROOT"])
STATE = ROOT / "docker.json"


def main(args):
    with open(ROOT / "docker.log", "a") as log:
        log.write(" ".join(args) + "\n")
    state = json.loads(STATE.read_text()) if STATE.exists() else {"containers": {}, "images": []}
    containers = state["containers"]
    options = [arg for arg in args[2:] if arg.startswith("--")]
    operands = [arg for arg in args[2:] if not arg.startswith("--")]
    command = args[:2]
    if command == ["image", "inspect"]:
        return 0 if operands[0] in state["images"] else 1
    if command == ["container", "ls"]:
        filters = [value.split("=", 1) for flag, value in zip(args, args[1:]) if flag == "--filter"]
        wanted_status = next((value for kind, value in filters if kind == "status"), None)
        labels = [value.split("=", 1) + [None] for kind, value in filters if kind == "label"]
        for container_id, container in containers.items():
            if wanted_status and container["status"] != wanted_status:
                continue
            if not wanted_status and "--all" not in options and container["status"] != "running":
                continue
            if all(key in container["labels"] and (value is None or container["labels"][key] == value)
                   for key, value, *_ in labels):
                print(container_id)
    elif command == ["container", "inspect"] and args[2:4] == ["-f", "{{.State.Running}}"]:
        if args[4] not in containers:
            print(f"Error: No such container: {args[4]}", file=sys.stderr)
            return 1
        print("true" if containers[args[4]]["status"] == "running" else "false")
    elif command == ["container", "update"]:
        containers[operands[0]]["restart"] = options[0].split("=", 1)[1]
    elif command == ["container", "stop"]:
        containers[operands[0]]["status"] = "exited"
    elif command == ["container", "rm"]:
        for container_id in operands:
            if containers[container_id]["status"] == "running" and "--force" not in options:
                print(f"Error: cannot remove running container {container_id}", file=sys.stderr)
                return 1
            del containers[container_id]
    elif command == ["container", "run"]:
        settings = [option[2:].split("=", 1) for option in options if "=" in option]
        labels = dict(value.split("=", 1) if "=" in value else (value, "") for key, value in settings if key == "label")
        container_id = uuid.uuid4().hex
        containers[container_id] = {"name": dict(settings)["name"], "status": "running", "labels": labels,
                                    "restart": dict(settings)["restart"], "image": operands[-1]}
        print(container_id)
    else:
        print(f"fake docker: {' '.join(args)} is not implemented", file=sys.stderr)
        return 2
    STATE.write_text(json.dumps(state))
    return 0


sys.exit(main(sys.argv[1:]))
