-- outbox-relay schema, version 9: the relay's marks fire no trigger
-- function. Applied by `outbox-relay migrate`; by hand:
-- psql -v schema=outbox -f sql/009_quiet_marks.sql
--
-- Every UPDATE of events fired two statement-level triggers whose
-- functions (notify_relay() of 001, note_rewind() of 003) do nothing for
-- the relay's own session (outbox_relay.role = 'relay'): its marks and its
-- record_failure() calls. The calls were paid all the same, on every mark
-- statement: two PL/pgSQL calls with a SET of search_path, one a security
-- definer, about 10 us of the relay's backend a mark. A WHEN clause asks
-- the same question before the function is called. A statement-level
-- trigger's WHEN may name no column; this one names only the setting.
-- Everyone else's updates (replay(), an UPDATE by hand, anything an
-- operator runs) fire both exactly as before, and the functions keep their
-- own test, so a relay session that calls them another way changes nothing.
-- Nothing relied on the relay's updates notifying: the functions already
-- did nothing for them (a retry comes due by the relay's own timer).
--
-- Dropped and created again in this transaction: CREATE OR REPLACE
-- TRIGGER is PostgreSQL 14 and later. DROP TRIGGER takes an ACCESS
-- EXCLUSIVE lock on events for the rest of the migration, which is short.
DROP TRIGGER events_notify_update ON :"schema".events;
CREATE TRIGGER events_notify_update AFTER UPDATE OF status, next_attempt_at ON :"schema".events
    FOR EACH STATEMENT
    WHEN (pg_catalog.current_setting('outbox_relay.role', true) IS DISTINCT FROM 'relay')
    EXECUTE FUNCTION :"schema".notify_relay();

DROP TRIGGER events_rewind ON :"schema".events;
CREATE TRIGGER events_rewind AFTER UPDATE ON :"schema".events
    FOR EACH STATEMENT
    WHEN (pg_catalog.current_setting('outbox_relay.role', true) IS DISTINCT FROM 'relay')
    EXECUTE FUNCTION :"schema".note_rewind();

INSERT INTO :"schema".schema_migrations (version, name) VALUES (9, '009_quiet_marks');
