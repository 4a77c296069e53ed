"""bootstrap.py's machinery: the Hetzner Cloud resources of the platform, reconciled by labels.

api: the SDK client (retries, action waiting, catalog check) · desired: what the settings ask for ·
observe: what exists, found by label selector in a fixed number of requests · plan: printable steps ·
servers / dns: the steps for servers, volumes and DNS records · execute: runs steps concurrently ·
destroy: the teardown steps · outputs: the outputs file and its text form.
"""
