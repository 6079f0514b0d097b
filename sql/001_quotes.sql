-- The quotes table: one row per valid Kafka record.
-- Idempotent: safe to run again on an existing database (IF NOT EXISTS everywhere).
-- Run in file-name order, by the postgres container at first start (/docker-entrypoint-initdb.d)
-- and by the tests for every test database: one schema for both.

CREATE TABLE IF NOT EXISTS quotes (
    -- The Kafka coordinates are the primary key, so writing a batch twice inserts nothing new.
    source_topic        text        NOT NULL,
    source_partition    integer     NOT NULL CHECK (source_partition >= 0),
    source_offset       bigint      NOT NULL CHECK (source_offset >= 0),
    kafka_timestamp     timestamptz,
    quote               text        NOT NULL CHECK (quote <> ''),
    character           text        NOT NULL CHECK (character <> ''),
    image               text,
    character_direction text        CHECK (character_direction IN ('Left', 'Right')),
    -- sha256 of the normalized quote and character: equal quotes share it.
    content_hash        char(64)    NOT NULL,
    word_count          integer     NOT NULL CHECK (word_count > 0),
    ingested_at         timestamptz NOT NULL,
    written_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_topic, source_partition, source_offset)
);

COMMENT ON TABLE quotes IS 'Quotes consumed from Kafka; one row per valid record, keyed by its Kafka coordinates';
COMMENT ON COLUMN quotes.content_hash IS 'sha256 of normalized quote + newline + character';
COMMENT ON COLUMN quotes.ingested_at IS 'When the consumer transformed the record (UTC)';
COMMENT ON COLUMN quotes.written_at IS 'When the batch holding the row was written';

CREATE INDEX IF NOT EXISTS quotes_character_idx ON quotes (character);
CREATE INDEX IF NOT EXISTS quotes_content_hash_idx ON quotes (content_hash);
CREATE INDEX IF NOT EXISTS quotes_kafka_timestamp_idx ON quotes (kafka_timestamp);
