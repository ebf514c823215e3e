#!/usr/bin/env bash
# Runs the fault-injection tests one at a time and prints what RELIABILITY.md reports: for each
# fault, the line its test prints (sent, confirmed, consumed, lost, duplicated, redelivered,
# resent, the recoveries' downtimes, the elapsed time), and the detection and reporting times.
#
#   eval "$(sudo bash .ci/rabbitmq.sh start)"     # the test broker and the 3-node cluster
#   bash bench/reliability_run.sh
#
# The tests are those `.ci/run` runs (debug build): tests/amqp_recovery.rs (RabbitMQ restarts),
# tests/amqp_faults.rs (a TCP proxy on 127.0.0.1 cuts or black-holes connections),
# tests/amqp_alarm.rs (memory alarm), tests/amqp_cluster.rs (a cluster node stopped),
# tests/sqlite_faults.rs (consumer processes killed with SIGKILL).
set -euo pipefail
cd "$(dirname "$0")/.."

for test in amqp_recovery amqp_faults amqp_alarm amqp_cluster sqlite_faults; do
    echo "== cargo test --all-features --test $test -- --nocapture --test-threads 1"
    cargo test --all-features --test "$test" -- --nocapture --test-threads 1 2>&1 |
        grep -E ': sent [0-9]+|found the black hole|reported the block|failed over|resumed within|^test result' ||
        true
done
