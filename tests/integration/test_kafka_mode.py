"""The broker under test is the generation the harness was asked for.

CI runs the consumer suite twice, once against Kafka 3.9 with ZooKeeper and once against Kafka 4
in KRaft mode (``STREAMLAB_KAFKA_MODE=kraft``). The harness leaves alone a server already
listening on its port, so a pass could silently run against the other generation's broker; this
test makes such a pass fail instead. Against the compose stack, set the same variable to the
variant that runs (kraft for make up-kraft and make up-replicated).
"""

from __future__ import annotations

import pytest
from kafka import KafkaProducer

from native.servers.endpoints import Endpoints
from native.servers.kafka import KAFKA_MODE

pytestmark = pytest.mark.integration


def test_broker_generation_matches_the_harness_mode(endpoints: Endpoints) -> None:
    # A producer probes the broker's API versions when it starts and keeps what it inferred.
    producer = KafkaProducer(bootstrap_servers=endpoints.kafka)
    try:
        version = producer.config["api_version"]
    finally:
        producer.close(timeout=5)
    if KAFKA_MODE == "kraft":
        assert version >= (4, 0), f"expected a Kafka 4 KRaft broker, found API version {version}"
    else:
        assert version < (4, 0), f"expected a Kafka 3.9 ZooKeeper broker, found {version}"
