-- outbox-relay benchmark: the REFERENCE schema, a frozen copy of migrations
-- 001-006 as they are on main at 3b5cec3 (issue 18's "today's claim-and-mark
-- loop"; 7416745, which the issue names, had only 001-003: 004-006 add the
-- row trigger of generations, whose WHEN every mark evaluates). Later
-- migrations never change it, so `outbox-bench pg-ceiling --schema ref
-- --copy-from outbox` runs the same loop on the same rows in every benchmark
-- run, and drains are reported as a multiple of it. Install once into its
-- own schema, in one transaction (004 passes the schema to a DO block
-- through a transaction-local setting):
--   psql -1 -v schema=ref -f bench/sql/reference_schema.sql
-- Do not edit: a change here moves the yardstick.

-- ======== sql/001_init.sql ========
-- outbox-relay schema, version 1: the outbox table, its dead letters, the
-- wake-up trigger and the functions the relay and operators call.
-- Applied by `outbox-relay migrate`; by hand: psql -v schema=outbox -f sql/001_init.sql
-- (function bodies never name the schema: they use search_path or TG_TABLE_SCHEMA).

CREATE SCHEMA IF NOT EXISTS :"schema";

-- Which migrations have been applied; each file records itself last.
CREATE TABLE :"schema".schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Headers become Kafka headers, so they must be an object of strings. A
-- function lets the CHECK say which header is wrong instead of only failing.
CREATE FUNCTION :"schema".check_headers(h jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    bad text;
BEGIN
    IF h = '{}'::jsonb THEN
        RETURN true;
    END IF;
    IF jsonb_typeof(h) <> 'object' THEN
        RAISE EXCEPTION 'outbox headers must be a JSON object of strings, not a JSON %', jsonb_typeof(h)
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT key INTO bad FROM jsonb_each(h) WHERE jsonb_typeof(value) <> 'string' LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'outbox header "%" must be a JSON string, not a JSON %', bad, jsonb_typeof(h -> bad)
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN true;
END
$$;

CREATE TABLE :"schema".events (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         uuid NOT NULL DEFAULT gen_random_uuid(),
    topic            text,               -- NULL: routed by event_type
    key              text,               -- Kafka message key, usually the aggregate id
    event_type       text,
    payload          jsonb,              -- at most one of payload / payload_bytes;
    payload_bytes    bytea,              -- both NULL publishes a tombstone
    headers          jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Managed by the relay:
    status           text NOT NULL DEFAULT 'pending',
    attempts         integer NOT NULL DEFAULT 0,   -- failed publish attempts
    replays          integer NOT NULL DEFAULT 0,   -- times replay() reset it to pending
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    first_attempt_at timestamptz,        -- time of the first failed attempt
    last_attempt_at  timestamptz,        -- time of the latest failed attempt
    last_error       text,
    sent_at          timestamptz,
    kafka_partition  integer,
    kafka_offset     bigint,
    CONSTRAINT events_status_valid CHECK (status IN ('pending', 'sent')),
    CONSTRAINT events_one_payload CHECK (payload IS NULL OR payload_bytes IS NULL),
    CONSTRAINT events_headers_object_of_strings CHECK (:"schema".check_headers(headers)),
    -- A bounded repetition ({1,249}) in the regex costs ~20 us per row on
    -- every INSERT and UPDATE; this form costs ~0.3 us.
    CONSTRAINT events_topic_legal CHECK (topic IS NULL OR (topic ~ '^[A-Za-z0-9._-]+$'
                                                           AND length(topic) <= 249
                                                           AND topic NOT IN ('.', '..')))
);

COMMENT ON TABLE :"schema".events IS
    'Transactional outbox: insert events here in the same transaction as the business change; outbox-relay publishes them to Kafka.';

-- The relay reads only pending rows in id order: this index holds nothing else.
CREATE INDEX events_pending_idx ON :"schema".events (id) WHERE status = 'pending';
-- Rows that failed and wait for a retry hold back later rows of their key;
-- this index makes that check one probe into a (usually empty) index.
CREATE INDEX events_failing_key_idx ON :"schema".events (key, id)
    WHERE status = 'pending' AND attempts > 0;

-- Retention and `outbox-relay status` look up sent rows by time; a BRIN
-- index is tiny and nearly free to maintain, since sent_at grows with the
-- table.
CREATE INDEX events_sent_at_brin ON :"schema".events USING brin (sent_at);

CREATE TABLE :"schema".dead_letters (
    id               bigint PRIMARY KEY, -- the id the row had in events
    event_id         uuid,               -- NULL only if the NOT NULL was dropped from events
    topic            text,
    key              text,
    event_type       text,
    payload          jsonb,
    payload_bytes    bytea,
    headers          jsonb NOT NULL,
    created_at       timestamptz NOT NULL,
    attempts         integer NOT NULL,
    first_attempt_at timestamptz,
    last_attempt_at  timestamptz,
    reason           text NOT NULL,
    dead_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX dead_letters_topic_idx ON :"schema".dead_letters (topic);

-- Whether the relay is waiting for a notification. A transaction that
-- issued NOTIFY takes a global lock while it commits, which serialises every
-- notifying commit (and its WAL flush) in the instance. So writers notify
-- only while the relay waits; while it is busy it polls on its own and sets
-- waiting to false. Only the leading relay writes this row.
CREATE TABLE :"schema".relay_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    waiting   boolean NOT NULL DEFAULT true
);
INSERT INTO :"schema".relay_state DEFAULT VALUES;

-- Wake the relay at commit. Statement-level, so a 10,000-row insert sends
-- one notification; identical notifications in a transaction fold into one.
-- The relay's own updates (marking rows sent, recording failures) set
-- outbox_relay.role so they do not wake it again.
CREATE FUNCTION :"schema".notify_relay() RETURNS trigger
LANGUAGE plpgsql SET search_path = :"schema", pg_catalog AS $$
BEGIN
    IF current_setting('outbox_relay.role', true) IS DISTINCT FROM 'relay'
       AND (SELECT waiting FROM relay_state) THEN
        PERFORM pg_notify(TG_TABLE_SCHEMA || '.events', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify_insert AFTER INSERT ON :"schema".events
    FOR EACH STATEMENT EXECUTE FUNCTION :"schema".notify_relay();
CREATE TRIGGER events_notify_update AFTER UPDATE OF status, next_attempt_at ON :"schema".events
    FOR EACH STATEMENT EXECUTE FUNCTION :"schema".notify_relay();

-- Called by the relay for a row whose publish failed. Counts the attempt
-- (only if the row still has the attempt count the relay read, so a retried
-- call after a lost connection does not count twice), schedules the retry,
-- and moves the row to dead_letters, in the same transaction, once it has
-- used max_attempts. Returns 'retry', 'dead' or 'stale'.
CREATE FUNCTION :"schema".record_failure(p_id bigint, p_attempts integer, p_error text,
                                         p_retry_ms integer, p_max_attempts integer)
RETURNS text
LANGUAGE plpgsql SET search_path = :"schema", pg_catalog AS $$
DECLARE
    n integer;
BEGIN
    UPDATE events
       SET attempts = attempts + 1,
           last_error = p_error,
           first_attempt_at = coalesce(first_attempt_at, now()),
           last_attempt_at = now(),
           next_attempt_at = now() + p_retry_ms * interval '1 millisecond'
     WHERE id = p_id AND status = 'pending' AND attempts = p_attempts
    RETURNING attempts INTO n;
    IF n IS NULL THEN
        RETURN 'stale';
    END IF;
    IF n < p_max_attempts THEN
        RETURN 'retry';
    END IF;
    WITH moved AS (DELETE FROM events WHERE id = p_id RETURNING *)
    INSERT INTO dead_letters (id, event_id, topic, key, event_type, payload, payload_bytes,
                              headers, created_at, attempts, first_attempt_at,
                              last_attempt_at, reason)
    SELECT id, event_id, topic, key, event_type, payload, payload_bytes,
           coalesce(headers, '{}'), coalesce(created_at, now()),
           attempts, first_attempt_at, last_attempt_at,
           coalesce(last_error, 'no error message given') -- reason is NOT NULL
      FROM moved;
    RETURN 'dead';
END
$$;

-- Replay: sent rows matching every given filter become pending again and
-- are published again (same event_id, so consumers can tell). At least one
-- filter is required. Returns how many rows match (and were reset unless
-- p_dry_run).
CREATE FUNCTION :"schema".replay(p_from_id bigint DEFAULT NULL, p_to_id bigint DEFAULT NULL,
                                 p_since timestamptz DEFAULT NULL,
                                 p_until timestamptz DEFAULT NULL,
                                 p_topic text DEFAULT NULL, p_key text DEFAULT NULL,
                                 p_dry_run boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql SET search_path = :"schema", pg_catalog AS $$
DECLARE
    n bigint;
BEGIN
    IF num_nonnulls(p_from_id, p_to_id, p_since, p_until, p_topic, p_key) = 0 THEN
        RAISE EXCEPTION 'replay needs at least one filter (id range, time range, topic or key)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_dry_run THEN
        SELECT count(*) INTO n FROM events
         WHERE status = 'sent'
           AND (p_from_id IS NULL OR id >= p_from_id) AND (p_to_id IS NULL OR id <= p_to_id)
           AND (p_since IS NULL OR created_at >= p_since) AND (p_until IS NULL OR created_at < p_until)
           AND (p_topic IS NULL OR topic = p_topic) AND (p_key IS NULL OR key = p_key);
        RETURN n;
    END IF;
    UPDATE events
       SET status = 'pending', attempts = 0, replays = replays + 1, next_attempt_at = now(),
           first_attempt_at = NULL,
           last_attempt_at = NULL, last_error = NULL, sent_at = NULL, kafka_partition = NULL,
           kafka_offset = NULL
     WHERE status = 'sent'
       AND (p_from_id IS NULL OR id >= p_from_id) AND (p_to_id IS NULL OR id <= p_to_id)
       AND (p_since IS NULL OR created_at >= p_since) AND (p_until IS NULL OR created_at < p_until)
       AND (p_topic IS NULL OR topic = p_topic) AND (p_key IS NULL OR key = p_key);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Dead letters back to pending, keeping their id and event_id so they are
-- published in their original place among the pending rows of their key.
-- Select by id, by topic, or all; returns how many were requeued.
CREATE FUNCTION :"schema".requeue_dead(p_id bigint DEFAULT NULL, p_topic text DEFAULT NULL,
                                       p_all boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql SET search_path = :"schema", pg_catalog AS $$
DECLARE
    n bigint;
BEGIN
    IF p_id IS NULL AND p_topic IS NULL AND NOT p_all THEN
        RAISE EXCEPTION 'requeue_dead needs an id, a topic or p_all => true'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH moved AS (
        DELETE FROM dead_letters
         WHERE p_all OR id = p_id OR topic = p_topic
        RETURNING *)
    INSERT INTO events (id, event_id, topic, key, event_type, payload, payload_bytes, headers,
                        created_at)
    OVERRIDING SYSTEM VALUE
    SELECT id, coalesce(event_id, gen_random_uuid()), topic, key, event_type, payload, payload_bytes, headers, created_at
      FROM moved;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

INSERT INTO :"schema".schema_migrations (version, name) VALUES (1, '001_init');

-- ======== sql/002_outbox_id.sql ========
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

-- ======== sql/003_rewinds.sql ========
-- outbox-relay schema, version 3: telling the relay that old rows became
-- pending again. Applied by `outbox-relay migrate`; by hand:
-- psql -v schema=outbox -f sql/003_rewinds.sql
--
-- The relay starts each fetch above a floor, the id below which every
-- pending row is already in its hands, so that it does not walk the index
-- entries of rows it has marked (a long transaction elsewhere keeps them
-- all). Rows of writers still in progress stay above the floor: the relay
-- only moves it past ids whose writers have finished (see docs/ARCHITECTURE.md).
-- What it cannot see coming is an old row made pending again: replay(), a
-- requeued dead letter, an UPDATE by hand. Each of those counts one
-- "rewind" here, and a rewind sends the relay's next fetch back to the
-- lowest pending id once the transaction that made it has ended.
CREATE SEQUENCE :"schema".rewinds;

-- Security definer: whoever may update the outbox may count a rewind,
-- without a grant on the sequence. Statement-level, after the rows are
-- written (the statement holds its lock on events by then, which is what
-- the relay waits on before it looks again from the lowest id).
CREATE FUNCTION :"schema".note_rewind() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = :"schema", pg_catalog AS $$
BEGIN
    IF current_setting('outbox_relay.role', true) IS DISTINCT FROM 'relay' THEN
        PERFORM nextval('rewinds');
    END IF;
    RETURN NULL;
END
$$;

-- Any UPDATE but the relay's own may make an old row pending (replay() is
-- one); requeue_dead() and its hand-written equivalents delete dead letters.
CREATE TRIGGER events_rewind AFTER UPDATE ON :"schema".events
    FOR EACH STATEMENT EXECUTE FUNCTION :"schema".note_rewind();
CREATE TRIGGER dead_letters_rewind AFTER DELETE ON :"schema".dead_letters
    FOR EACH STATEMENT EXECUTE FUNCTION :"schema".note_rewind();

-- Called by the relay. In this order: the newest id handed out to a writer
-- (0 before the first), the rewind count, the identity's sequence cache,
-- then the transactions holding RowExclusiveLock on events (every writer
-- takes it before it draws an id, and keeps it until it ends), and whether
-- none of p_earlier (the writers an earlier call returned) still holds it.
-- Once those are gone, every row with an id up to that call's last_id is
-- committed or rolled back. A prepared transaction (PREPARE TRANSACTION)
-- holds the lock through a stand-in without a pid, which some PostgreSQL
-- releases name differently (-1/xid) from the writer seen before, so while
-- one holds it nothing counts as done. Security definer: reads a sequence the
-- relay's role may have no grant on.
CREATE FUNCTION :"schema".writers(p_earlier text[], OUT last_id bigint, OUT rewind_count bigint,
                                  OUT id_cache bigint, OUT writers text[],
                                  OUT earlier_done boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = :"schema", pg_catalog AS $$
DECLARE
    seq regclass := pg_get_serial_sequence('events', 'id');
BEGIN
    SELECT coalesce(pg_sequence_last_value(seq), 0), q.seqcache INTO last_id, id_cache
      FROM pg_sequence q WHERE q.seqrelid = seq;
    SELECT CASE WHEN r.is_called THEN r.last_value ELSE 0 END INTO rewind_count FROM rewinds r;
    SELECT coalesce(array_agg(l.virtualtransaction), '{}'),
           coalesce(bool_and(l.virtualtransaction <> ALL (p_earlier) AND l.pid IS NOT NULL), true)
      INTO writers, earlier_done
      FROM pg_locks l
     WHERE l.locktype = 'relation' AND l.relation = 'events'::regclass
       AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
       AND l.mode = 'RowExclusiveLock';
END
$$;

INSERT INTO :"schema".schema_migrations (version, name) VALUES (3, '003_rewinds');

-- ======== sql/004_least_privilege.sql ========
-- outbox-relay schema, version 4: least privilege. Applied by
-- `outbox-relay migrate`; by hand: psql -v schema=outbox -f sql/004_least_privilege.sql
--
-- Security definer functions run with their owner's rights (whoever ran
-- the migrations, often a superuser), so nothing a caller controls may
-- change what their bodies resolve to. PostgreSQL searches pg_temp first
-- for relations unless search_path names it: a caller's temporary view
-- called "rewinds" would have been read, with the owner's rights, in place
-- of the sequence. Every function below now names pg_temp last, and every
-- name in their bodies exists in the outbox schema or pg_catalog, which
-- only their owners can create in, so pg_temp is never reached (functions
-- and operators are never looked up there without a pg_temp. prefix).
-- See "Writing SECURITY DEFINER Functions Safely" in PostgreSQL's manual.
--
-- Writers need only USAGE on the schema and INSERT on events: the notify
-- trigger reads relay_state with its owner's rights instead of the
-- writer's. EXECUTE is revoked from PUBLIC on every function but
-- check_headers() (see below); `outbox-relay migrate --grant-relay ROLE`
-- grants the relay's role what it calls (docs/security.md).

-- The notify trigger read relay_state as the writer, which every writer
-- needed SELECT on for that alone. Security definer now; it runs once per
-- statement (not per row), and it already paid for the SET of its
-- search_path, so the definer switch adds next to nothing.
CREATE OR REPLACE FUNCTION :"schema".notify_relay() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = :"schema", pg_catalog, pg_temp AS $$
BEGIN
    IF pg_catalog.current_setting('outbox_relay.role', true) IS DISTINCT FROM 'relay'
       AND (SELECT s.waiting FROM relay_state s) THEN
        PERFORM pg_catalog.pg_notify(TG_TABLE_SCHEMA || '.events', '');
    END IF;
    RETURN NULL;
END
$$;

-- The rewind counter is looked up through the table the trigger fired on
-- (events or dead_letters, both in the outbox schema), never by a bare name.
CREATE OR REPLACE FUNCTION :"schema".note_rewind() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = :"schema", pg_catalog, pg_temp AS $$
BEGIN
    IF pg_catalog.current_setting('outbox_relay.role', true) IS DISTINCT FROM 'relay' THEN
        PERFORM pg_catalog.nextval(pg_catalog.format('%I.rewinds', TG_TABLE_SCHEMA)::regclass);
    END IF;
    RETURN NULL;
END
$$;

-- As in 003, with pg_temp last and events named through the schema the
-- function lives in (current_schema(): the first of its search_path).
CREATE OR REPLACE FUNCTION :"schema".writers(p_earlier text[], OUT last_id bigint,
                                             OUT rewind_count bigint, OUT id_cache bigint,
                                             OUT writers text[], OUT earlier_done boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = :"schema", pg_catalog, pg_temp AS $$
DECLARE
    ev regclass := pg_catalog.format('%I.events', pg_catalog.current_schema())::regclass;
    seq regclass := pg_catalog.pg_get_serial_sequence(ev::text, 'id');
BEGIN
    SELECT coalesce(pg_catalog.pg_sequence_last_value(seq), 0), q.seqcache INTO last_id, id_cache
      FROM pg_catalog.pg_sequence q WHERE q.seqrelid = seq;
    -- rewinds is the outbox schema's: the first of search_path, pg_temp the last.
    SELECT CASE WHEN r.is_called THEN r.last_value ELSE 0 END INTO rewind_count FROM rewinds r;
    SELECT coalesce(pg_catalog.array_agg(l.virtualtransaction), '{}'),
           coalesce(pg_catalog.bool_and(l.virtualtransaction <> ALL (p_earlier)
                                        AND l.pid IS NOT NULL), true)
      INTO writers, earlier_done
      FROM pg_catalog.pg_locks l
     WHERE l.locktype = 'relation' AND l.relation = ev
       AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                          WHERE d.datname = pg_catalog.current_database())
       AND l.mode = 'RowExclusiveLock';
END
$$;

-- The invoker's-rights functions gain nothing from a caller's temporary
-- objects, but the same search_path keeps every body resolving alike.
ALTER FUNCTION :"schema".record_failure(bigint, integer, text, integer, integer)
    SET search_path = :"schema", pg_catalog, pg_temp;
ALTER FUNCTION :"schema".replay(bigint, bigint, timestamptz, timestamptz, text, text, boolean)
    SET search_path = :"schema", pg_catalog, pg_temp;
ALTER FUNCTION :"schema".requeue_dead(bigint, text, boolean)
    SET search_path = :"schema", pg_catalog, pg_temp;

-- An installation from before this migration may run its relay as a role
-- that is neither the owner nor a superuser, which called these functions
-- through PUBLIC. Every role that may UPDATE events is such a relay (or an
-- operator): it keeps EXECUTE, so that `migrate` does not stop a running
-- relay. New roles get it from --grant-relay. (A DO body is quoted, so
-- the schema reaches it through a setting of this transaction.)
SELECT pg_catalog.set_config('outbox_relay.migrating_schema', :'schema', true);
DO $$
DECLARE
    s text := pg_catalog.current_setting('outbox_relay.migrating_schema');
    r name;
BEGIN
    FOR r IN SELECT a.rolname FROM pg_catalog.pg_roles a
              WHERE NOT a.rolsuper AND a.rolname NOT LIKE 'pg\_%'
                AND pg_catalog.has_table_privilege(a.oid, format('%I.events', s),
                                                   'UPDATE')
                AND a.oid <> (SELECT c.relowner FROM pg_catalog.pg_class c
                               WHERE c.oid = format('%I.events', s)::regclass)
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %1$I.writers(text[]), '
                       '%1$I.record_failure(bigint, integer, text, integer, integer), '
                       '%1$I.replay(bigint, bigint, timestamptz, timestamptz, text, text, boolean), '
                       '%1$I.requeue_dead(bigint, text, boolean) TO %2$I',
                       s, r);
    END LOOP;
END
$$;

-- Functions are executable by PUBLIC when created. Trigger functions need
-- no EXECUTE grant to fire; the others are for the relay and operators,
-- granted by `outbox-relay migrate --grant-relay ROLE`.
REVOKE EXECUTE ON FUNCTION :"schema".notify_relay() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION :"schema".note_rewind() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION :"schema".writers(text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION :"schema".record_failure(bigint, integer, text, integer, integer)
    FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION :"schema".replay(bigint, bigint, timestamptz, timestamptz, text, text,
                                           boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION :"schema".requeue_dead(bigint, text, boolean) FROM PUBLIC;
-- check_headers() stays executable by PUBLIC: every INSERT calls it from
-- the events CHECK with the writer's rights, so writers granted only
-- INSERT before this migration keep working. It reads nothing and has no
-- rights of its own to lend.

INSERT INTO :"schema".schema_migrations (version, name) VALUES (4, '004_least_privilege');

-- ======== sql/005_generations.sql ========
-- outbox-relay schema, version 5: row generations. Applied by
-- `outbox-relay migrate`; by hand: psql -v schema=outbox -f sql/005_generations.sql
--
-- What the relay remembers about a published row outside the database (an
-- acknowledgement waiting for its mark, a progress record of --exactly-once)
-- must never be applied to anything but the copy it published. Ids are not
-- enough: a row made pending again (replay(), requeue_dead(), an UPDATE by
-- hand) keeps its id, and after a restore or a failover that lost the tail
-- of the identity's sequence new rows get ids already published. So the
-- relay names a published row by id, event_id and generation, and marks it
-- sent only if all three still match. The generation counts the times the
-- row was made pending again, whoever did it.

ALTER TABLE :"schema".events ADD COLUMN generation bigint NOT NULL DEFAULT 0;
-- A dead letter keeps its generation, so that requeuing it counts one more.
ALTER TABLE :"schema".dead_letters ADD COLUMN generation bigint NOT NULL DEFAULT 0;

COMMENT ON COLUMN :"schema".events.generation IS
    'Times the row was made pending again (replay, requeue, an UPDATE by hand); the relay marks a published copy sent only while it matches.';

-- Any UPDATE that leaves a row pending, made by anyone but the relay, is a
-- return to pending: sent -> pending (replay(), a hand-made reset) and a
-- pending row touched by hand (it may be in flight with what it held
-- before). The relay's own updates never count: its marks set 'sent', and
-- record_failure() runs in its session (outbox_relay.role = 'relay').
-- The WHEN clause keeps the function call off every row the relay marks:
-- the condition is two comparisons, the first false for a mark.
CREATE FUNCTION :"schema".next_generation() RETURNS trigger
LANGUAGE plpgsql SET search_path = :"schema", pg_catalog, pg_temp AS $$
BEGIN
    -- Never backwards, even if the UPDATE itself set the column.
    NEW.generation := GREATEST(NEW.generation, OLD.generation + 1);
    RETURN NEW;
END
$$;

CREATE TRIGGER events_generation BEFORE UPDATE ON :"schema".events
    FOR EACH ROW
    WHEN (NEW.status = 'pending'
          AND pg_catalog.current_setting('outbox_relay.role', true) IS DISTINCT FROM 'relay')
    EXECUTE FUNCTION :"schema".next_generation();

-- Trigger functions need no EXECUTE grant to fire.
REVOKE EXECUTE ON FUNCTION :"schema".next_generation() FROM PUBLIC;

-- As in 001 and 004, and the row's generation goes with it to dead_letters.
CREATE OR REPLACE FUNCTION :"schema".record_failure(p_id bigint, p_attempts integer,
                                                    p_error text, p_retry_ms integer,
                                                    p_max_attempts integer)
RETURNS text
LANGUAGE plpgsql SET search_path = :"schema", pg_catalog, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    UPDATE events
       SET attempts = attempts + 1,
           last_error = p_error,
           first_attempt_at = coalesce(first_attempt_at, now()),
           last_attempt_at = now(),
           next_attempt_at = now() + p_retry_ms * interval '1 millisecond'
     WHERE id = p_id AND status = 'pending' AND attempts = p_attempts
    RETURNING attempts INTO n;
    IF n IS NULL THEN
        RETURN 'stale';
    END IF;
    IF n < p_max_attempts THEN
        RETURN 'retry';
    END IF;
    WITH moved AS (DELETE FROM events WHERE id = p_id RETURNING *)
    INSERT INTO dead_letters (id, event_id, topic, key, event_type, payload, payload_bytes,
                              headers, created_at, attempts, first_attempt_at,
                              last_attempt_at, reason, generation)
    SELECT id, event_id, topic, key, event_type, payload, payload_bytes,
           coalesce(headers, '{}'), coalesce(created_at, now()),
           attempts, first_attempt_at, last_attempt_at,
           coalesce(last_error, 'no error message given'), -- reason is NOT NULL
           coalesce(generation, 0)
      FROM moved;
    RETURN 'dead';
END
$$;

-- A requeued dead letter is a return to pending like any other: one
-- generation more than it had, so that nothing remembered about an earlier
-- copy of it (it may have been published before it failed) marks it sent.
CREATE OR REPLACE FUNCTION :"schema".requeue_dead(p_id bigint DEFAULT NULL,
                                                  p_topic text DEFAULT NULL,
                                                  p_all boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql SET search_path = :"schema", pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    IF p_id IS NULL AND p_topic IS NULL AND NOT p_all THEN
        RAISE EXCEPTION 'requeue_dead needs an id, a topic or p_all => true'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH moved AS (
        DELETE FROM dead_letters
         WHERE p_all OR id = p_id OR topic = p_topic
        RETURNING *)
    INSERT INTO events (id, event_id, topic, key, event_type, payload, payload_bytes, headers,
                        created_at, generation)
    OVERRIDING SYSTEM VALUE
    SELECT id, coalesce(event_id, gen_random_uuid()), topic, key, event_type, payload,
           payload_bytes, headers, created_at, coalesce(generation, 0) + 1
      FROM moved;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

INSERT INTO :"schema".schema_migrations (version, name) VALUES (5, '005_generations');

-- ======== sql/006_debezium.sql ========
-- outbox-relay schema, version 6: a way off Debezium's outbox event router.
-- Applied by `outbox-relay migrate`; by hand: psql -v schema=outbox -f sql/006_debezium.sql
--
-- Services that write Debezium's outbox layout (id uuid, aggregatetype,
-- aggregateid, type, payload) keep writing it: install_debezium_outbox()
-- puts an AFTER INSERT trigger on their table that copies each row into
-- events in the writer's transaction, shaped as the event router's defaults
-- shape its message (docs/migrating-from-debezium.md): topic
-- outbox.event.<aggregatetype>, key aggregateid, an "id" header, the payload
-- as is. Only INSERTs count, as for Debezium, so a row deleted right after
-- its insert (Debezium read it from the WAL) is still published.

-- The trigger: statement-level, reading the statement's new rows from its
-- transition table (debezium_rows), so that an INSERT of many rows costs
-- one INSERT into events, not one per row; the rows keep the order they
-- were inserted in, which is the order Debezium reads them from the WAL.
-- On a partitioned table it is a row trigger (PostgreSQL clones those to
-- every partition, and a row inserted straight into a partition fires no
-- statement trigger of the parent), reading NEW.
-- Security definer, owned by the outbox's owner: a service granted only
-- INSERT on its own outbox table has no right on events, and needs none.
-- Firing needs no EXECUTE grant; attaching it does, so EXECUTE is revoked
-- from PUBLIC below: whoever may attach it may write events.
-- Arguments, as install_debezium_outbox() writes them:
--   0 topic pattern, 1 id column, 2 route-by column, 3 key column,
--   4 payload column, 5 payload kind (jsonb, json, text or bytea),
--   6 event type column or '', then (header name, column) pairs.
-- Column names reach the statements through format('%I') only, the
-- pattern as a parameter.
CREATE FUNCTION :"schema".debezium_forward() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = :"schema", pg_catalog, pg_temp AS $$
DECLARE
    topic_sql text := pg_catalog.format(
        'pg_catalog.replace($1, %L, r.%I::text)', '${routedByValue}', TG_ARGV[2]);
    payload_sql text;
    headers_sql text := pg_catalog.format('%L, r.%I::text', 'id', TG_ARGV[1]);
    v_id text;
    v_route text;
    v_topic text;
    bad bigint;
    source text := CASE TG_LEVEL WHEN 'ROW' THEN '(SELECT ($2).*) r' ELSE 'debezium_rows r' END;
BEGIN
    -- The casts below run with the owner's rights: a column whose type
    -- became one its table's owner defined (with a cast of their own)
    -- since install_debezium_outbox() checked it must not reach them.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                 JOIN pg_catalog.pg_type y ON y.oid = a.atttypid
                WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped
                  AND a.attname::text = ANY (TG_ARGV)
                  AND CASE WHEN y.typtype = 'd' THEN y.typbasetype ELSE y.oid END >= 16384) THEN
        RAISE EXCEPTION 'Debezium outbox table %.% has a column of a type that is not built in: run outbox.install_debezium_outbox() again to see which',
            TG_TABLE_SCHEMA, TG_TABLE_NAME USING ERRCODE = 'datatype_mismatch';
    END IF;
    -- A row without an id or a topic Kafka would accept fails the
    -- service's INSERT, naming the row, as any bad row does.
    EXECUTE pg_catalog.format(
        'SELECT r.%I::text, r.%I::text, t.topic FROM %s, '
        'LATERAL (SELECT %s AS topic) t '
        'WHERE r.%I IS NULL OR t.topic IS NULL OR t.topic !~ %L '
        'OR pg_catalog.length(t.topic) > 249 OR t.topic IN (%L, %L) LIMIT 1',
        TG_ARGV[1], TG_ARGV[2], source, topic_sql, TG_ARGV[1], '^[A-Za-z0-9._-]+$', '.', '..')
        USING TG_ARGV[0], NEW INTO v_id, v_route, v_topic;
    GET DIAGNOSTICS bad = ROW_COUNT; -- EXECUTE leaves FOUND alone
    IF bad = 0 THEN
        NULL;
    ELSIF v_id IS NULL THEN
        RAISE EXCEPTION 'Debezium outbox row in %.% has a NULL % (the event id)',
            TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[1] USING ERRCODE = 'not_null_violation';
    ELSIF v_route IS NULL THEN
        RAISE EXCEPTION 'Debezium outbox row % in %.% has a NULL % (it names the topic)',
            v_id, TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[2]
            USING ERRCODE = 'not_null_violation';
    ELSE
        RAISE EXCEPTION 'Debezium outbox row % in %.%: topic "%" (from % "%") is not a Kafka topic name',
            v_id, TG_TABLE_SCHEMA, TG_TABLE_NAME, v_topic, TG_ARGV[2], v_route
            USING ERRCODE = 'check_violation';
    END IF;
    -- Debezium publishes jsonb as PostgreSQL prints it, json and text as
    -- written (UTF-8), bytea byte for byte: the bytes go to payload_bytes,
    -- but for jsonb, which the relay prints the same way.
    payload_sql := CASE TG_ARGV[5]
        WHEN 'jsonb' THEN pg_catalog.format('r.%I::jsonb, NULL::bytea', TG_ARGV[4])
        WHEN 'bytea' THEN pg_catalog.format('NULL::jsonb, r.%I::bytea', TG_ARGV[4])
        ELSE pg_catalog.format('NULL::jsonb, pg_catalog.convert_to(r.%I::text, %L)',
                               TG_ARGV[4], 'UTF8')
    END;
    FOR i IN 7 .. TG_NARGS - 2 BY 2 LOOP
        headers_sql := headers_sql || pg_catalog.format(', %L, r.%I::text', TG_ARGV[i],
                                                        TG_ARGV[i + 1]);
    END LOOP;
    EXECUTE pg_catalog.format(
        'INSERT INTO events (event_id, topic, key, event_type, payload, payload_bytes, headers) '
        'SELECT r.%I::uuid, %s, r.%I::text, %s, %s, '
        'pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(%s)) FROM %s',
        TG_ARGV[1], topic_sql, TG_ARGV[3],
        CASE WHEN TG_ARGV[6] = '' THEN 'NULL::text'
             ELSE pg_catalog.format('r.%I::text', TG_ARGV[6]) END,
        payload_sql, headers_sql, source)
        USING TG_ARGV[0], NEW;
    RETURN NULL;
END
$$;

-- The type of a live column of p_table, or an error naming the column and
-- the event router option that would name another one.
CREATE FUNCTION :"schema".debezium_column_type(p_table regclass, p_column name, p_option text)
RETURNS regtype
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t regtype;
BEGIN
    SELECT a.atttypid INTO t FROM pg_attribute a
     WHERE a.attrelid = p_table AND a.attname = p_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF t IS NULL THEN
        RAISE EXCEPTION 'table % has no column "%" (name another with %)', p_table, p_column, p_option
            USING ERRCODE = 'undefined_column';
    END IF;
    -- A domain counts as its base type.
    RETURN (SELECT CASE WHEN y.typtype = 'd' THEN y.typbasetype ELSE y.oid END
              FROM pg_type y WHERE y.oid = t);
END
$$;

-- Installs (or replaces) the trigger on p_table, after checking the table
-- has the columns with usable types. Parameters are named after the event
-- router's options. Run it again after changing the table's columns.
-- Invoker's rights: CREATE TRIGGER needs the table's owner (or TRIGGER on
-- it) and EXECUTE on debezium_forward(). Returns the trigger's name.
CREATE FUNCTION :"schema".install_debezium_outbox(
    p_table regclass,
    topic_pattern text DEFAULT 'outbox.event.${routedByValue}',
    event_id_field name DEFAULT 'id',
    route_by_field name DEFAULT 'aggregatetype',
    event_key_field name DEFAULT 'aggregateid',
    payload_field name DEFAULT 'payload',
    event_type_field name DEFAULT 'type',
    additional_placement text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql SET search_path = :"schema", pg_catalog, pg_temp AS $$
DECLARE
    text_types constant regtype[] := '{text,character varying,character,name}';
    args text[];
    kind text;
    t regtype;
    item text;
    parts text[];
    hdr text;
    seen text[] := '{id}';
    example text;
BEGIN
    IF p_table IS NULL THEN
        RAISE EXCEPTION 'install_debezium_outbox needs a table' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = p_table) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', p_table USING ERRCODE = 'wrong_object_type';
    END IF;
    IF topic_pattern IS NULL THEN
        RAISE EXCEPTION 'topic_pattern must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- Only ${routedByValue} is replaced; the rest must be legal in a topic
    -- name, or every row would be refused at INSERT.
    example := replace(topic_pattern, '${routedByValue}', 'x');
    IF example !~ '^[A-Za-z0-9._-]+$' OR length(example) > 249 OR example IN ('.', '..') THEN
        RAISE EXCEPTION 'topic_pattern "%" is not a Kafka topic name once ${routedByValue} is replaced (letters, digits, ".", "_", "-"; at most 249)',
            topic_pattern USING ERRCODE = 'invalid_parameter_value';
    END IF;

    t := debezium_column_type(p_table, event_id_field, 'table.field.event.id');
    IF t <> 'uuid'::regtype THEN
        RAISE EXCEPTION 'column "%" of % must be uuid, not %: it becomes the relay''s event_id',
            event_id_field, p_table, t USING ERRCODE = 'datatype_mismatch';
    END IF;
    t := debezium_column_type(p_table, route_by_field, 'route.by.field');
    IF NOT t = ANY (text_types) THEN
        RAISE EXCEPTION 'column "%" of % must be text or varchar, not %: it names the topic',
            route_by_field, p_table, t USING ERRCODE = 'datatype_mismatch';
    END IF;
    t := debezium_column_type(p_table, event_key_field, 'table.field.event.key');
    IF NOT t = ANY (text_types || '{uuid,smallint,integer,bigint}'::regtype[]) THEN
        RAISE EXCEPTION 'column "%" of % must be text, varchar, uuid or an integer, not %: it becomes the message key',
            event_key_field, p_table, t USING ERRCODE = 'datatype_mismatch';
    END IF;
    t := debezium_column_type(p_table, payload_field, 'table.field.event.payload');
    kind := CASE WHEN t = ANY (text_types) THEN 'text'
                 WHEN t IN ('jsonb'::regtype, 'json'::regtype, 'bytea'::regtype) THEN t::text END;
    IF kind IS NULL THEN
        RAISE EXCEPTION 'column "%" of % must be jsonb, json, text, varchar or bytea, not %: it becomes the message value',
            payload_field, p_table, t USING ERRCODE = 'datatype_mismatch';
    END IF;
    args := ARRAY[topic_pattern, event_id_field, route_by_field, event_key_field,
                  payload_field, kind, ''];
    -- The type column is optional (Debezium does not publish it by
    -- default): the relay keeps it as event_type, for routing nothing
    -- (the topic is set) but for its logs, dead letters and replays.
    IF event_type_field IS NOT NULL
       AND (event_type_field <> 'type'
            OR EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = p_table AND a.attname = event_type_field
                          AND a.attnum > 0 AND NOT a.attisdropped)) THEN
        t := debezium_column_type(p_table, event_type_field, 'event_type_field');
        IF NOT t = ANY (text_types) THEN
            RAISE EXCEPTION 'column "%" of % must be text or varchar, not %: it becomes the event_type',
                event_type_field, p_table, t USING ERRCODE = 'datatype_mismatch';
        END IF;
        args[7] := event_type_field;
    END IF;
    -- table.fields.additional.placement: column:header[:alias], comma-separated.
    FOREACH item IN ARRAY coalesce(string_to_array(additional_placement, ','), '{}') LOOP
        parts := string_to_array(btrim(item), ':');
        IF array_length(parts, 1) NOT IN (2, 3) OR parts[1] = '' THEN
            RAISE EXCEPTION 'additional_placement entry "%" is not column:header or column:header:alias',
                btrim(item) USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF parts[2] <> 'header' THEN
            RAISE EXCEPTION 'additional_placement entry "%": placement "%" is not supported, only header',
                btrim(item), parts[2] USING ERRCODE = 'feature_not_supported';
        END IF;
        t := debezium_column_type(p_table, parts[1], 'additional_placement');
        -- The trigger casts the value to text with its owner's rights: a
        -- cast the table's owner defined for a type of their own would run
        -- as the outbox's owner.
        IF t::oid >= 16384 THEN
            RAISE EXCEPTION 'additional_placement column "%" of % has type %, not a built-in type',
                parts[1], p_table, t USING ERRCODE = 'datatype_mismatch';
        END IF;
        hdr := coalesce(nullif(parts[3], ''), parts[1]);
        IF hdr = ANY (seen || '{event_id,event_type,outbox_id}'::text[]) THEN
            RAISE EXCEPTION 'additional_placement entry "%": header "%" is already set (by the relay or another entry)',
                btrim(item), hdr USING ERRCODE = 'invalid_parameter_value';
        END IF;
        seen := seen || hdr;
        args := args || ARRAY[hdr, parts[1]];
    END LOOP;

    EXECUTE format('CREATE OR REPLACE TRIGGER outbox_relay_debezium AFTER INSERT ON %s %s '
                   'EXECUTE FUNCTION %I.debezium_forward(%s)',
                   p_table,
                   CASE WHEN (SELECT c.relkind FROM pg_class c WHERE c.oid = p_table) = 'p'
                        THEN 'FOR EACH ROW'
                        ELSE 'REFERENCING NEW TABLE AS debezium_rows FOR EACH STATEMENT' END, (SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                              WHERE p.oid = 'debezium_forward'::regproc),
                   (SELECT string_agg(quote_literal(a), ', ') FROM unnest(args) a));
    RETURN 'outbox_relay_debezium';
END
$$;

-- Trigger functions need no EXECUTE grant to fire; attaching this one
-- lends its owner's INSERT on events, so only roles granted EXECUTE may.
-- The other two act with the caller's rights and read only the catalog,
-- but as every function of the schema but check_headers() they are not
-- PUBLIC's (docs/security.md): whoever installs the trigger and is not the
-- outbox's owner needs the grants docs/migrating-from-debezium.md lists.
REVOKE EXECUTE ON FUNCTION :"schema".debezium_forward() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION :"schema".debezium_column_type(regclass, name, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION :"schema".install_debezium_outbox(regclass, text, name, name, name,
                                                              name, name, text) FROM PUBLIC;

INSERT INTO :"schema".schema_migrations (version, name) VALUES (6, '006_debezium');
