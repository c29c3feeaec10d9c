#!/usr/bin/env bash
# Prepares a fresh Debian/Ubuntu machine for npufleet: system packages, a Docker engine that
# answers, and the project's virtualenv. Safe to run again: it only does what is missing.
# `setup.sh packages` installs the system packages only (.ci/run then starts its own engine).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
# kubectl: the k8s_job tests round-trip the rendered manifests through its client-side dry run.
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "${1:-}" = packages ]; then
  exit 0
fi

if ! docker info >/dev/null 2>&1; then
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    as_root systemctl start docker
  else
    # No systemd (containers, CI sandboxes): run the engine in the background.
    echo "setup: starting dockerd (log in /var/log/npufleet-dockerd.log)"
    as_root sh -c 'nohup dockerd >/var/log/npufleet-dockerd.log 2>&1 &'
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "setup: the Docker engine did not start; see /var/log/npufleet-dockerd.log" >&2; exit 3; }
fi

if [ ! -x .venv/bin/npufleet ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: installing the project into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]'
  touch .venv/.installed
fi
echo "setup: ready"
