#!/usr/bin/env bash
# `make test`: every test, in the order that keeps the suite within CI's time on 2 cores.
#   1. the lab's images (node images, registry, training and inference images with their archives and
#      assets) built once, in the background, beside lint and the unit tests, which are mostly one
#      process each and leave a core to the build;
#   2. lint, then the unit tests;
#   3. the lab tests that do not train, beside the molecule scenarios: different labs on one engine,
#      whose time goes mostly to starting nodes and running playbooks against them;
#   4. the security suite, the bad-input suite and the training tests, alone, on one training lab: their
#      ranks and servers run on every CPU, and a test that kills a rank times it.
# pytest exits 5 when it collects nothing: not a failure of the suite. The slowest unit tests and
# every lab test are listed with their times, so that a slower suite shows where.
set -uo pipefail

pytest_ok() {
  pytest -q --durations="$durations" "$@"
  local rc=$?
  [ "$rc" -eq 0 ] || [ "$rc" -eq 5 ]
}

# Each phase's start, in seconds since make test began, so that CI's log shows where its time went.
phase() { echo "== make test at $SECONDS s: $*"; }

failed=()
build_log=$(mktemp /tmp/npufleet-lab-build.XXXXXX)
molecule_log=$(mktemp /tmp/npufleet-molecule.XXXXXX)
background=()
# An interrupted run stops what runs in the background too (molecule then destroys nothing:
# 'make lab-down' or a re-run cleans up).
trap 'kill "${background[@]}" 2>/dev/null; rm -f "$build_log" "$molecule_log"' EXIT

phase "lab images, in the background"
npufleet lab build --flavour full --flavour bare --workload training >"$build_log" 2>&1 &
build_pid=$!
background+=("$build_pid")

phase "lint"
make --no-print-directory lint || failed+=("lint")
durations=15
phase "unit tests"
pytest_ok tests/unit || failed+=("unit tests")

wait "$build_pid"
build_rc=$?
phase "lab images built: exit code $build_rc"
cat "$build_log"
[ "$build_rc" -eq 0 ] || failed+=("lab images")

# Every lab test's time is listed (setup, call and teardown): they are what CI's time goes to.
durations=0
phase "lab tests beside molecule"
molecule test --all >"$molecule_log" 2>&1 &
molecule_pid=$!
background+=("$molecule_pid")
pytest_ok tests --ignore=tests/unit --ignore=tests/lab/test_train.py --ignore=tests/lab/test_security.py \
  --ignore=tests/lab/test_bad_input_suite.py ||
  failed+=("lab tests")
wait "$molecule_pid"
molecule_rc=$?
phase "molecule test --all (ran beside the lab tests) ended: exit code $molecule_rc"
cat "$molecule_log"
[ "$molecule_rc" -eq 0 ] || failed+=("molecule scenarios")

phase "training, security and bad-input lab tests"
# One training lab for the three (the security suite serves from it; the bad-input suite needs its
# containers); the security suite first, on a lab no fault test has touched yet; the bad-input suite
# before any training, as site.yml leaves the lab before its train stage.
pytest_ok tests/lab/test_security.py tests/lab/test_bad_input_suite.py tests/lab/test_train.py ||
  failed+=("training, security and bad-input lab tests")

phase "done"
if [ "${#failed[@]}" -ne 0 ]; then
  echo "make test: failed: ${failed[*]}"
  exit 1
fi
echo "make test: every test passed"
