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
