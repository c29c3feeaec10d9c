"""The docker role on a node that had no Docker engine."""

import json


def test_engine_answers(host):
    assert host.service("docker").is_running
    assert host.service("docker").is_enabled
    assert host.run("docker info --format '{{.ServerVersion}}'").rc == 0


def test_daemon_json_holds_our_keys_and_the_foreign_one(host):
    config = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert config["runtimes"]["ascend"]["path"].endswith("ascend-docker-runtime")
    assert config["log-driver"] == "json-file"  # a managed key wins over the planted value
    assert config["log-opts"] == {"max-size": "100m", "max-file": "3"}
    assert config["live-restore"] is True


def test_previous_daemon_json_was_backed_up(host):
    backups = host.check_output("ls /etc/docker").split()
    assert any(name.startswith("daemon.json.") for name in backups)
    assert "syslog" in host.check_output("cat /etc/docker/daemon.json.*")


def test_the_engine_runs_the_merged_configuration(host):
    assert (
        host.check_output("docker info --format '{{.LoggingDriver}} {{.LiveRestoreEnabled}}'")
        == "json-file true"
    )
