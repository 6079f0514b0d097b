"""The loop's pure parts: which offsets a batch commits, and what a rebalance drops."""

from __future__ import annotations

from kafka import OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from quotes_consumer.loop import PendingBatch, next_offsets, transform_all


def record(partition: int, offset: int, value: bytes | None = b'{"quote":"q","character":"c"}'):
    return ConsumerRecord(
        "quotes", partition, -1, offset, 1_700_000_000_000, 0, None, value, [], None, 0, 0, 0
    )


def test_commits_one_past_the_last_record_of_each_partition() -> None:
    batch = [record(0, 5), record(1, 9), record(0, 7), record(0, 6)]
    assert next_offsets(batch) == {
        TopicPartition("quotes", 0): OffsetAndMetadata(8, "", -1),
        TopicPartition("quotes", 1): OffsetAndMetadata(10, "", -1),
    }


def test_a_rebalance_drops_only_the_revoked_partitions() -> None:
    pending = PendingBatch()
    pending.add([record(0, 1), record(1, 1), record(2, 1)])
    pending.drop({TopicPartition("quotes", 1)})
    batch = pending.take()
    assert [(r.partition, r.offset) for r in batch.records] == [(0, 1), (2, 1)]
    assert pending.records == []


def test_transform_all_splits_valid_from_rejected_and_keeps_the_original() -> None:
    quotes, rejects = transform_all([record(0, 1), record(0, 2, b"nope")], 1024)
    assert [q.source.offset for q in quotes] == [1]
    assert [(r.source.offset, r.value, r.error.reason) for r in rejects] == [
        (2, b"nope", "invalid_json")
    ]
