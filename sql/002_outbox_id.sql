-- outbox-relay schema, version 2: an identity for the outbox.
-- Applied by `outbox-relay migrate`; by hand: psql -v schema=outbox -f sql/002_outbox_id.sql
--
-- With --exactly-once every progress record names the outbox it belongs to,
-- and a relay refuses a record of another outbox: two outboxes (in two
-- databases, or two schemas) sharing one transactional id would otherwise
-- mark each other's rows sent without publishing them. A restored backup
-- keeps the identity: it is the same outbox, and its relay rightly takes
-- the rows of its records as published.
ALTER TABLE :"schema".relay_state
    ADD COLUMN outbox_id uuid NOT NULL DEFAULT gen_random_uuid();

INSERT INTO :"schema".schema_migrations (version, name) VALUES (2, '002_outbox_id');
