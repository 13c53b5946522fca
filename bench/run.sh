#!/usr/bin/env bash
# The velt benchmark in one command (see BENCHMARKS.md).
#
#   bash bench/run.sh            full run: release builds, ~6 minutes, report in bench/out/
#   bash bench/run.sh --quick    smoke run for CI: debug builds, seconds; checks only that it
#                                completes and that the report is well-formed
#
# Extra arguments go to velt-bench (`--help` lists them). Needs MariaDB/MySQL at
# $VELT_BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306); the bench creates and drops
# its own databases. Mosquitto at 127.0.0.1:1883 is compared with when it answers.
set -euo pipefail
cd "$(dirname "$0")/.."

# 10 000 idle connections need 10 000+ descriptors in velt and in the bench.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [[ " $* " == *" --quick "* ]]; then
  cargo build -q -p velt -p velt-sim --bins
  exec target/debug/velt-bench --velt target/debug/velt "$@"
else
  cargo build -q --release -p velt -p velt-sim --bins
  exec target/release/velt-bench --velt target/release/velt "$@"
fi
