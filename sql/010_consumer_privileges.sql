-- What the consumer may do: INSERT into and SELECT from quotes, nothing else. No DDL (it cannot
-- create tables, temporary ones included), no other table, no UPDATE or DELETE.
-- The privileges belong to a group role without login, quotes_writer; the login the consumer uses
-- is made a member of it: in compose by 011_consumer_login.sh (CONSUMER_POSTGRES_USER in .env),
-- in the tests by native/servers/endpoints.py. One list of GRANTs for both.
-- Idempotent: the role may exist already (roles are cluster-wide; each test database runs this).

DO $$
BEGIN
    CREATE ROLE quotes_writer NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;  -- exists, or created concurrently
END
$$;

REVOKE ALL ON quotes FROM quotes_writer;
GRANT SELECT, INSERT ON quotes TO quotes_writer;

-- Every role may create temporary tables by default (a grant to PUBLIC); not in this database.
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END
$$;
