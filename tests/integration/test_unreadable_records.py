"""A record the Kafka client cannot even parse is dead-lettered, and the partition moves on.

A header name must be UTF-8 by the protocol, but only the Java client enforces it; kafka-python
3.0.12 raises CorruptRecordError for such a record, and every later poll of its partition spins
on it for ever. The consumer must dead-letter it (by coordinates: its bytes stay in the topic)
and store everything around it. The client cannot read past it inside its own record batch, so
the records a producer sent in the same batch after it are dead-lettered the same way: never
lost, and their bytes stay in the topic too.
"""

from __future__ import annotations

import pytest

from tests.integration.pipeline import ConsumerProcess, quote_value, send
from tests.integration.test_consumer import assert_exactly_once, wait_until_stored
from tests.integration.test_never_stalls import dead_letters_by_source

pytestmark = pytest.mark.integration


def send_one_by_one(bootstrap: str, topic: str, records: list[dict]) -> list[tuple[int, int]]:
    """Each record in a record batch of its own, as a producer with no lingering sends them."""
    return [send(bootstrap, topic, [record], partitions=1)[0] for record in records]


class NotUtf8(str):
    """A header name that kafka-python's producer writes as the bytes below: not UTF-8.

    A test double for a producer in another language that sends what the protocol forbids."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfe-not-utf8"


def test_a_header_name_that_is_not_utf8_is_dead_lettered_and_the_rest_stored(
    setup: dict,
) -> None:
    endpoints, topic = setup["endpoints"], setup["topic"]
    records = [{"value": quote_value(i)} for i in range(6)]
    records.insert(3, {"value": quote_value(99), "headers": [(NotUtf8("x"), b"v")]})
    records.insert(5, {"value": quote_value(98), "headers": [(NotUtf8("y"), b"w")]})
    placed = send_one_by_one(endpoints.kafka, topic, records)
    bad = [placed[3], placed[5]]
    good = [c for c in placed if c not in bad]
    consumer = ConsumerProcess(setup["env"], setup["tmp"]).start()
    wait_until_stored(endpoints, setup["database"], setup["mongo_db"], len(good))
    letters = dead_letters_by_source(endpoints.kafka, topic, len(bad))
    assert sorted(letters) == sorted(bad)
    assert {h["dlq.reason"] for h in letters.values()} == {"unreadable_record"}
    assert all("UnicodeDecodeError" in h["dlq.error"] for h in letters.values())
    assert consumer.terminate() == 0, consumer.log()
    assert_exactly_once(endpoints, setup["database"], setup["mongo_db"], good)


def test_records_batched_after_an_unreadable_one_are_dead_lettered_not_lost(setup: dict) -> None:
    endpoints, topic = setup["endpoints"], setup["topic"]
    before = send(endpoints.kafka, topic, [{"value": quote_value(i)} for i in range(3)], 1)
    same_batch = [{"value": quote_value(10 + i)} for i in range(4)]
    same_batch[1]["headers"] = [(NotUtf8("x"), b"v")]
    batched = send(endpoints.kafka, topic, same_batch, partitions=1)
    after = send(endpoints.kafka, topic, [{"value": quote_value(20 + i)} for i in range(3)], 1)
    consumer = ConsumerProcess(setup["env"], setup["tmp"]).start()
    wait_until_stored(endpoints, setup["database"], setup["mongo_db"], len(before + after) + 1)
    letters = dead_letters_by_source(endpoints.kafka, topic, 3)
    # Usually the whole rest of the batch (one producer batch); never anything outside it.
    assert batched[1] in letters and set(letters) <= set(batched[1:])
    assert {h["dlq.reason"] for h in letters.values()} == {"unreadable_record"}
    assert consumer.terminate() == 0, consumer.log()
    stored = [c for c in before + batched + after if c not in letters]
    assert_exactly_once(endpoints, setup["database"], setup["mongo_db"], stored)
