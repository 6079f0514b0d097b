-- Views that answer what a lab user asks first in pgAdmin.
-- Idempotent: CREATE OR REPLACE.

-- How many quotes each character has, and how many of them are different.
CREATE OR REPLACE VIEW quotes_per_character AS
SELECT
    character,
    count(*)                     AS quotes,
    count(DISTINCT content_hash) AS distinct_quotes,
    min(kafka_timestamp)         AS first_seen,
    max(kafka_timestamp)         AS last_seen
FROM quotes
GROUP BY character;

-- Each different quote once, with how often the API served it.
CREATE OR REPLACE VIEW distinct_quotes AS
SELECT
    content_hash,
    min(quote)           AS quote,
    min(character)       AS character,
    count(*)             AS times_seen,
    min(kafka_timestamp) AS first_seen,
    max(kafka_timestamp) AS last_seen
FROM quotes
GROUP BY content_hash;

-- Throughput of the pipeline per minute, for watching data flow.
CREATE OR REPLACE VIEW quotes_per_minute AS
SELECT
    date_trunc('minute', written_at) AS minute,
    count(*)                          AS quotes,
    round(avg(extract(epoch FROM written_at - kafka_timestamp)) * 1000) AS avg_latency_ms
FROM quotes
GROUP BY 1;
