"""git-lfs works for every user, from the package on node1 and from the tarball on node2."""


def test_git_lfs_version(host):
    out = host.check_output("git lfs version")
    assert out.startswith("git-lfs/3.3.0 ")


def test_installed_from_the_chosen_source(host):
    if host.backend.get_hostname().endswith("node2"):
        assert host.file("/usr/local/bin/git-lfs").is_file
        assert not host.package("git-lfs").is_installed
    else:
        assert host.package("git-lfs").is_installed
        assert not host.file("/usr/local/bin/git-lfs").exists


def test_filters_installed_system_wide(host):
    assert host.check_output("git config --system --get filter.lfs.required") == "true"
    assert "git-lfs filter-process" in host.check_output("git config --system --get filter.lfs.process")


def test_tls_verification_left_on(host):
    assert host.run("git config --system --get http.sslVerify").rc != 0


def test_work_directory_removed(host):
    assert not host.file("/var/tmp/npufleet-git-lfs").exists
