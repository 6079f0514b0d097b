#!/usr/bin/env bash
# One-shot topic setup for the lab, run by the `kafka-init` compose service.
#
# Why a script and not broker auto-creation: auto-created topics get the broker default of one
# partition, and the lab needs `quotes` with 3 partitions so `--scale consumer=3` gives every
# consumer a partition. The broker runs with auto-create off, so a typo'd topic name fails loudly
# instead of silently creating a second topic.
#
# Idempotent: --if-not-exists makes a re-run a no-op, and an existing topic with fewer partitions
# than wanted is grown (Kafka can add partitions, never remove them). Safe on every `up`.
set -euo pipefail

bootstrap="${KAFKA_BOOTSTRAP_SERVERS:?KAFKA_BOOTSTRAP_SERVERS is required}"
topic="${KAFKA_TOPIC:?KAFKA_TOPIC is required}"
dlq_topic="${KAFKA_DLQ_TOPIC:?KAFKA_DLQ_TOPIC is required}"
partitions="${KAFKA_TOPIC_PARTITIONS:-3}"
dlq_partitions="${KAFKA_DLQ_TOPIC_PARTITIONS:-1}"
replication="${KAFKA_REPLICATION_FACTOR:-1}"
# Set by the replicated variant (docker-compose.replicated.yml): replicas that must be in sync
# before an acks=all write is acknowledged. Unset: the broker's default.
min_insync="${KAFKA_MIN_INSYNC_REPLICAS:-}"
max_attempts="${KAFKA_INIT_MAX_ATTEMPTS:-30}"

log() { printf 'kafka-init: %s\n' "$*" >&2; }

# The broker's healthcheck already gates this service; the bounded wait only covers a broker
# that answers but has not finished registering with ZooKeeper yet.
for attempt in $(seq 1 "$max_attempts"); do
    if kafka-topics --bootstrap-server "$bootstrap" --list >/dev/null 2>&1; then
        break
    fi
    if [ "$attempt" -eq "$max_attempts" ]; then
        log "broker $bootstrap not reachable after $max_attempts attempts"
        exit 1
    fi
    log "waiting for $bootstrap (attempt $attempt/$max_attempts)"
    sleep 2
done

partition_count() {
    kafka-topics --bootstrap-server "$bootstrap" --describe --topic "$1" \
        | sed -n 's/.*PartitionCount:[[:space:]]*\([0-9][0-9]*\).*/\1/p' | head -n 1
}

ensure_topic() {
    local name="$1" wanted="$2" current
    local config=()
    if [ -n "$min_insync" ]; then
        config=(--config "min.insync.replicas=$min_insync")
    fi
    kafka-topics --bootstrap-server "$bootstrap" --create --if-not-exists \
        --topic "$name" --partitions "$wanted" --replication-factor "$replication" "${config[@]}"
    current="$(partition_count "$name")"
    if [ -z "$current" ]; then
        log "could not read the partition count of $name"
        exit 1
    fi
    if [ "$current" -lt "$wanted" ]; then
        log "growing $name from $current to $wanted partitions"
        kafka-topics --bootstrap-server "$bootstrap" --alter --topic "$name" --partitions "$wanted"
    fi
    log "$name ready with $(partition_count "$name") partition(s)"
}

if [ "$topic" = "$dlq_topic" ]; then
    log "KAFKA_DLQ_TOPIC must differ from KAFKA_TOPIC (both are '$topic')"
    exit 1
fi

ensure_topic "$topic" "$partitions"
ensure_topic "$dlq_topic" "$dlq_partitions"
kafka-topics --bootstrap-server "$bootstrap" --describe --topic "$topic"
kafka-topics --bootstrap-server "$bootstrap" --describe --topic "$dlq_topic"
