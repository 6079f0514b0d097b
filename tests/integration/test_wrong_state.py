"""A server in the wrong state is waited out, never taken for a refusal of the records.

A PostgreSQL standby (after a failover, before promotion) refuses every write with SQLSTATE
25006, read-only transaction. Were that a refusal, every valid record would be dead-lettered as
``rejected_by_postgres``. Here the real server is made read-only for the consumer's database:
nothing may be dead-lettered, ``/healthz`` must turn 503, and once the database is writable
again everything is stored exactly once.
"""

from __future__ import annotations

import pytest

from native.servers.endpoints import admin_execute
from tests.integration.pipeline import ConsumerProcess, quote_value, read_topic, send, wait_for
from tests.integration.test_consumer import assert_exactly_once, wait_until_stored

pytestmark = pytest.mark.integration


def test_a_read_only_postgres_is_waited_out_not_dead_lettered(setup: dict) -> None:
    endpoints, topic, database = setup["endpoints"], setup["topic"], setup["database"]
    env = {**setup["env"], "CONSUMER_UNHEALTHY_AFTER_S": "3", "CONSUMER_RETRY_MAX_BACKOFF_S": "1"}
    first = send(endpoints.kafka, topic, [{"value": quote_value(i)} for i in range(10)])
    consumer = ConsumerProcess(env, setup["tmp"]).start()
    wait_until_stored(endpoints, database, setup["mongo_db"], len(first))

    admin_execute(endpoints, f"ALTER DATABASE {database} SET default_transaction_read_only = on")
    try:
        # New sessions are read-only from now on; the consumer's open one is not, until the
        # server drops it, as a failover does.
        admin_execute(
            endpoints,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND application_name = 'quotes-consumer'",
        )
        during = send(endpoints.kafka, topic, [{"value": quote_value(100 + i)} for i in range(20)])
        wait_for("/healthz to answer 503", lambda: consumer.health_status() == 503, 30)
        assert "read-only" in consumer.log()
        assert consumer.alive()
    finally:
        admin_execute(endpoints, f"ALTER DATABASE {database} RESET default_transaction_read_only")

    wait_until_stored(endpoints, database, setup["mongo_db"], len(first + during), timeout_s=60)
    wait_for("/healthz to recover", lambda: consumer.health_status() == 200, 30)
    assert consumer.terminate() == 0, consumer.log()
    assert read_topic(endpoints.kafka, f"{topic}.dlq", expected=0, timeout_s=3) == []
    assert "rejected_by_postgres" not in consumer.log()
    assert_exactly_once(endpoints, database, setup["mongo_db"], first + during)
