-- outbox-relay schema, version 11: a return to pending is counted whatever
-- the session says it is; the old record_failure is a thin wrapper.
-- Applied by `outbox-relay migrate`; by hand:
-- psql -v schema=outbox -f sql/011_trust_no_setting.sql
--
-- The triggers take `outbox_relay.role = 'relay'` to mean "the relay's own
-- update", and any session may SET it. An operator's session with it on
-- (replay, a reset by hand, requeue_dead(), a payload fixed) bumped no
-- generation and counted no rewind: the replayed row, below the relay's
-- floor, waited for the minute's sweep, and an acknowledgement or a
-- progress record of the copy published before could mark the new copy
-- sent without publishing it (tests/integration/test_security.c,
-- the_relay_setting_cannot_hide_a_replay). The relay's own updates are
-- told apart by what they do instead: its marks leave a row sent, and
-- record_failure() keeps it pending with the same status and content. So
-- a row that becomes pending from another status, or whose content
-- changes while pending, is a return to pending whoever does it. The
-- setting only spares the relay's marks and failures the trigger calls
-- (009), as before.

-- The 6-argument record_failure, kept by 010 for relays of version 8 until
-- they are replaced, was a full copy of the 7-argument body: two bodies
-- to keep alike. It now calls the 7-argument form with the row's current
-- generation. That is what the old form meant: it never looked at the
-- generation, so a failure counted against whatever copy the row held.
-- Naming the current generation makes the new generation test always
-- true, and the rest (attempt count, status, dead letter, dead-letter
-- topic) is the same code. The row is locked first (FOR UPDATE), so a
-- concurrent change cannot slip between reading the generation and the
-- update; a missing row gives NULL, which matches nothing: 'stale', as
-- before. CREATE OR REPLACE keeps the owner and the grants; the language,
-- rights (invoker's: no SECURITY DEFINER) and search_path are as in 010.
CREATE OR REPLACE FUNCTION :"schema".record_failure(p_id bigint, p_attempts integer,
                                                    p_error text, p_retry_ms integer,
                                                    p_max_attempts integer,
                                                    p_dead_letter_topic text)
RETURNS text
LANGUAGE plpgsql SET search_path = :"schema", pg_catalog, pg_temp AS $$
DECLARE
    g bigint;
BEGIN
    SELECT coalesce(e.generation, 0) INTO g FROM events e WHERE e.id = p_id FOR UPDATE;
    RETURN record_failure(p_id, p_attempts, p_error, p_retry_ms, p_max_attempts,
                          p_dead_letter_topic, g);
END
$$;

-- The wrapper runs with its caller's rights, so whoever may call it must
-- be able to call the 7-argument form: 010 granted that to the roles that
-- had the old form then; a role given the old form by hand since gets it
-- here.
SELECT pg_catalog.set_config('outbox_relay.migrating_schema', :'schema', true);
DO $$
DECLARE
    s text := pg_catalog.current_setting('outbox_relay.migrating_schema');
    r name;
BEGIN
    FOR r IN SELECT a.rolname FROM pg_catalog.pg_roles a
              WHERE NOT a.rolsuper AND a.rolname NOT LIKE 'pg\_%'
                AND pg_catalog.has_function_privilege(a.oid,
                        format('%I.record_failure(bigint, integer, text, integer, integer, text)',
                               s),
                        'EXECUTE')
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION '
                       '%1$I.record_failure(bigint, integer, text, integer, integer, text, bigint)'
                       ' TO %2$I',
                       s, r);
    END LOOP;
END
$$;

-- The generation: as in 005, and in the relay's session too when the row
-- comes back from another status or its message changed (the columns the
-- relay publishes from; record_failure() changes none of them, only
-- attempts, errors and times). The first test is false for every mark (it
-- sets 'sent'), so a mark still calls nothing; the comparison runs only
-- for an update of a pending row in a session with the setting on
-- (record_failure(), once per failure). No function in the WHEN: it would
-- run with the caller's rights and cost a call.
DROP TRIGGER events_generation ON :"schema".events;
CREATE TRIGGER events_generation BEFORE UPDATE ON :"schema".events
    FOR EACH ROW
    WHEN (NEW.status = 'pending'
          AND (pg_catalog.current_setting('outbox_relay.role', true) IS DISTINCT FROM 'relay'
               OR OLD.status IS DISTINCT FROM 'pending'
               OR (OLD.event_id, OLD.topic, OLD.key, OLD.event_type, OLD.payload, OLD.payload_bytes,
                OLD.headers, OLD.created_at)
               IS DISTINCT FROM
               (NEW.event_id, NEW.topic, NEW.key, NEW.event_type, NEW.payload, NEW.payload_bytes,
                NEW.headers, NEW.created_at)))
    EXECUTE FUNCTION :"schema".next_generation();

-- The rewind count. note_rewind() no longer reads the setting: the
-- statement-level events_rewind (009) skips the relay's session in its
-- WHEN, and dead_letters_rewind counts every delete from dead_letters
-- (the relay never deletes one; requeue_dead() does).
CREATE OR REPLACE FUNCTION :"schema".note_rewind() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = :"schema", pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_catalog.nextval(pg_catalog.format('%I.rewinds', TG_TABLE_SCHEMA)::regclass);
    RETURN NULL;
END
$$;

-- In a session with the setting on, events_rewind does not fire, so the
-- generation's trigger counts the rewind of each row it bumps there (none
-- of the relay's own: see its WHEN). In the row trigger that already
-- exists rather than in an AFTER ROW trigger of its own, which would
-- evaluate one more WHEN on every row the relay marks. Before the row is
-- written, but after the statement took its lock
-- on events, which is what the relay waits on (003). Security definer
-- for the sequence, as note_rewind(); it reads nothing else.
CREATE OR REPLACE FUNCTION :"schema".next_generation() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = :"schema", pg_catalog, pg_temp AS $$
BEGIN
    -- Never backwards, even if the UPDATE itself set the column.
    NEW.generation := GREATEST(NEW.generation, OLD.generation + 1);
    IF pg_catalog.current_setting('outbox_relay.role', true) = 'relay' THEN
        PERFORM pg_catalog.nextval(pg_catalog.format('%I.rewinds', TG_TABLE_SCHEMA)::regclass);
    END IF;
    RETURN NEW;
END
$$;

INSERT INTO :"schema".schema_migrations (version, name) VALUES (11, '011_trust_no_setting');
