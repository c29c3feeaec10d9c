"""IPv4 forwarding on, in one sysctl.d file, with sysctl.conf no longer fighting it."""


def test_forwarding_is_on(host):
    assert host.file("/proc/sys/net/ipv4/ip_forward").content_string.strip() == "1"


def test_setting_persists_in_one_file(host):
    conf = host.file("/etc/sysctl.d/90-npufleet-ip-forward.conf")
    assert conf.exists
    assert conf.contains(r"^net.ipv4.ip_forward\s*=\s*1$")


def test_sysctl_conf_no_longer_turns_it_off(host):
    assert host.file("/etc/sysctl.conf").contains(r"^net.ipv4.ip_forward\s*=\s*1$")
    assert not host.file("/etc/sysctl.conf").contains(r"^net.ipv4.ip_forward\s*=\s*0")


def test_a_full_reload_keeps_it_on(host):
    # What happens at boot: every sysctl file is applied, sysctl.conf last.
    host.run_test("sysctl --system")
    assert host.file("/proc/sys/net/ipv4/ip_forward").content_string.strip() == "1"
