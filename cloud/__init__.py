"""bootstrap.py's machinery: the Hetzner Cloud resources of the platform, reconciled by labels.

api: the SDK client (retries, action waiting, catalog check) · desired: what the settings ask for ·
observe: what exists, found by label selector in a fixed number of requests · steps: the step framework
(printable steps, phases, the plan's table) · project_resources / servers / dns: the steps for the SSH keys,
network, firewalls and placement group, for servers and volumes, for DNS records · execute: runs steps concurrently ·
destroy: the teardown steps · outputs: the outputs file and its text form.
"""
