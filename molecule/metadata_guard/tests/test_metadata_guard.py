"""The DOCKER-USER rule exists, read from the firewall only (no packet is sent anywhere)."""

RULE = "-A DOCKER-USER -d 169.254.169.254/32 -j DROP"


def test_rule_is_in_docker_user(host):
    assert host.run("iptables -C DOCKER-USER -d 169.254.169.254/32 -j DROP").rc == 0
    assert RULE in host.check_output("iptables -S DOCKER-USER").splitlines()


def test_unit_is_enabled_and_tied_to_docker(host):
    assert host.service("npufleet-metadata-guard").is_enabled
    assert (
        "PartOf=docker.service"
        in host.file("/etc/systemd/system/npufleet-metadata-guard.service").content_string
    )


def test_rule_survives_a_docker_restart(host):
    host.run_test("systemctl restart docker")
    host.run_test("timeout 60 sh -c 'until docker info >/dev/null 2>&1; do sleep 1; done'")
    assert host.run("iptables -C DOCKER-USER -d 169.254.169.254/32 -j DROP").rc == 0


def test_rule_is_back_after_being_deleted_and_docker_restarted(host):
    host.run_test("iptables -D DOCKER-USER -d 169.254.169.254/32 -j DROP")
    host.run_test("systemctl restart docker")
    host.run_test("timeout 60 sh -c 'until systemctl is-active npufleet-metadata-guard; do sleep 1; done'")
    assert RULE in host.check_output("iptables -S DOCKER-USER").splitlines()
