-- outbox-relay benchmark: the REFERENCE schema of issue #18, the schema of
-- commit 7416745 (migrations 001-003, which later migrations never edit),
-- frozen here so that `outbox-bench pg-ceiling --schema ref --copy-from
-- outbox` runs today's claim-and-mark loop of that issue on the same rows in
-- every benchmark run, and drains are reported as a multiple of it. Install
-- once into its own schema, in one transaction:
--   psql -1 -v schema=ref -f bench/sql/reference_schema.sql
-- Do not edit: a change here moves the yardstick.

-- ======== sql/001_init.sql at 7416745 ========
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

-- ======== sql/002_outbox_id.sql at 7416745 ========
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

-- ======== sql/003_rewinds.sql at 7416745 ========
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
