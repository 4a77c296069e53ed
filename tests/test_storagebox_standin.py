"""The Storage Box stand-in (tests/testbed/storagebox.py) is configured as Hetzner's box behaves: SFTP on port 23,
key auth only (OpenSSH-format keys, ed25519 among them), the account's own .ssh/authorized_keys, chrooted, no
shell and no forwarding. Sources: STORAGEBOX_FACTS (docs.hetzner.com/robot/storage-box/backup-space-ssh-keys,
docs.hetzner.com/robot/storage-box/general). The lab's own test of it is the end-to-end gate (restic over SFTP)."""

from pathlib import Path

from tests.testbed import storagebox


def _config() -> dict[str, str]:
    text = storagebox.sshd_config(Path("/lab"), "10.213.0.1")
    return dict(line.split(" ", 1) for line in text.splitlines())


def test_sftp_on_port_23_with_keys_only():
    config = _config()
    assert storagebox.PORT == storagebox.STORAGEBOX_FACTS["port"]
    assert config["ListenAddress"] == f"10.213.0.1:{storagebox.PORT}"
    assert config["AuthenticationMethods"] == "publickey"
    assert (config["PasswordAuthentication"], config["KbdInteractiveAuthentication"]) == ("no", "no")
    assert config["AuthorizedKeysFile"].endswith(f"{storagebox.HOME}/{storagebox.STORAGEBOX_FACTS['authorized_keys']}")


def test_chrooted_sftp_only_without_forwarding():
    config = _config()
    assert storagebox.STORAGEBOX_FACTS["chrooted"] and config["ChrootDirectory"] == str(storagebox.CHROOT)
    assert config["ForceCommand"] == f"internal-sftp -d {storagebox.HOME}"
    for option in ("AllowTcpForwarding", "AllowAgentForwarding", "AllowStreamLocalForwarding", "X11Forwarding",
                   "PermitTunnel", "PermitTTY", "PermitRootLogin"):
        assert config[option] == "no", option
    assert config["AllowUsers"] == storagebox.USER


def test_the_lab_key_is_a_type_the_box_takes():
    assert "ssh-ed25519" in storagebox.STORAGEBOX_FACTS["key_types"]  # start() makes an ed25519 key
