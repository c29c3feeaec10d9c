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


CLASSID = 0x4E460001


def test_host_network_containers_are_matched_by_cgroup(host):
    """The OUTPUT rule matches the net_cls class id that npufleet's cgroup parent hands its children."""
    assert host.run(f"iptables -C OUTPUT -d 169.254.169.254/32 -m cgroup --cgroup {CLASSID} -j DROP").rc == 0
    assert host.file("/sys/fs/cgroup/net_cls/npufleet.slice/net_cls.classid").content_string.strip() == str(
        CLASSID
    )


def start_probe(host) -> str:
    """A host-network container under npufleet's cgroup parent; its net_cls cgroup path."""
    host.run("docker rm -f guard-probe")
    host.run_test(
        "docker run -d --name guard-probe --network host --cgroup-parent /npufleet.slice "
        "--entrypoint /usr/bin/sleep npufleet/guard-probe 300"
    )
    pid = host.check_output("docker inspect -f '{{.State.Pid}}' guard-probe")
    return next(
        line.split(":", 2)[2]
        for line in host.file(f"/proc/{pid}/cgroup").content_string.splitlines()
        if "net_cls" in line.split(":")[1]
    )


def test_a_container_started_under_the_parent_carries_the_class_id(host):
    """Docker makes the container's cgroup under the parent, so it inherits the class id at creation."""
    try:
        cgroup = start_probe(host)
        assert cgroup.startswith("/npufleet.slice/")
        classid = host.file(f"/sys/fs/cgroup/net_cls{cgroup}/net_cls.classid").content_string
        assert classid.strip() == str(CLASSID)
    finally:
        host.run("docker rm -f guard-probe")


def test_the_script_finds_a_container_without_the_class_id(host):
    """A cgroup made before the parent had the class id (a Docker that started first) is found and fixed."""
    try:
        cgroup = start_probe(host)
        host.run_test(f"echo 0 > /sys/fs/cgroup/net_cls{cgroup}/net_cls.classid")
        check = host.run("/usr/local/sbin/npufleet-metadata-guard check")
        assert check.rc == 1
        assert f"classid {CLASSID} in /sys/fs/cgroup/net_cls{cgroup}" in check.stdout
        host.run_test("/usr/local/sbin/npufleet-metadata-guard apply")
        assert host.run("/usr/local/sbin/npufleet-metadata-guard check").rc == 0
    finally:
        host.run("docker rm -f guard-probe")
