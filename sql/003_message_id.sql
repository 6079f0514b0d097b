-- A producer-given message id, so that a message published twice is stored once.
-- NiFi sends each FlowFile's uuid attribute as the Kafka header "uuid"; a FlowFile that
-- PublishKafka retries after a partial batch failure reaches Kafka again with the same uuid.
-- Records without the header have none (NULL), and their Kafka coordinates stay their identity.
-- Idempotent. A lab database created before this file existed gets it with
--   docker compose exec -T postgres sh -c 'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB"' < sql/003_message_id.sql

ALTER TABLE quotes ADD COLUMN IF NOT EXISTS message_id text;

COMMENT ON COLUMN quotes.message_id IS 'The producer''s message id (Kafka header uuid), when it sent one';

-- NULLs are distinct: any number of rows may have no message id.
CREATE UNIQUE INDEX IF NOT EXISTS quotes_message_id_key ON quotes (source_topic, message_id);
