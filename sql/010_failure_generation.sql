-- outbox-relay schema, version 10: a failure counts against the copy that
-- failed. Applied by `outbox-relay migrate`; by hand:
-- psql -v schema=outbox -f sql/010_failure_generation.sql
--
-- record_failure counted an attempt whenever the row was still pending with
-- the attempt count the relay had read. A row made pending again meanwhile
-- (an operator's UPDATE of a pending row, such as a payload made small
-- enough for Kafka, or replay() after a mark) keeps or resets that count,
-- so the failure of the copy the relay fetched before was counted against
-- the new copy, and could dead-letter it before it was ever tried
-- (tests/integration/test_replays.c, failure_of_an_earlier_copy_is_not_counted).
-- The relay now names the copy by its generation too (005), as its marks
-- do: a failure of another generation is 'stale', and the row is fetched
-- and tried again as it now is.

-- As in 007, plus p_generation. The 6-argument form stays for relays of
-- version 8 while they are replaced.
CREATE OR REPLACE FUNCTION :"schema".record_failure(p_id bigint, p_attempts integer,
                                                    p_error text, p_retry_ms integer,
                                                    p_max_attempts integer,
                                                    p_dead_letter_topic text,
                                                    p_generation bigint)
RETURNS text
LANGUAGE plpgsql SET search_path = :"schema", pg_catalog, pg_temp AS $$
DECLARE
    n integer;
    d dead_letters;
BEGIN
    UPDATE events
       SET attempts = attempts + 1,
           last_error = p_error,
           first_attempt_at = coalesce(first_attempt_at, now()),
           last_attempt_at = now(),
           next_attempt_at = now() + p_retry_ms * interval '1 millisecond'
     WHERE id = p_id AND status = 'pending' AND attempts = p_attempts
       AND coalesce(generation, 0) = p_generation
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
      FROM moved
    RETURNING * INTO d;
    IF p_dead_letter_topic IS NOT NULL AND d.topic IS DISTINCT FROM p_dead_letter_topic THEN
        -- The original key: a consumer of the topic sees a key's dead
        -- letters in the order they died.
        INSERT INTO events (topic, key, event_type, payload)
        VALUES (p_dead_letter_topic, d.key, 'outbox.dead_letter',
                pg_catalog.jsonb_build_object(
                    'event', pg_catalog.jsonb_build_object(
                        'id', d.id, 'event_id', d.event_id, 'topic', d.topic, 'key', d.key,
                        'event_type', d.event_type, 'payload', d.payload,
                        'payload_bytes_base64', pg_catalog.encode(d.payload_bytes, 'base64'),
                        'headers', d.headers, 'created_at', d.created_at),
                    'reason', d.reason, 'attempts', d.attempts,
                    'first_attempt_at', d.first_attempt_at,
                    'last_attempt_at', d.last_attempt_at, 'dead_at', d.dead_at));
    END IF;
    RETURN 'dead';
END
$$;

REVOKE EXECUTE ON FUNCTION
    :"schema".record_failure(bigint, integer, text, integer, integer, text, bigint) FROM PUBLIC;

-- Roles that run a relay now (EXECUTE on the 6-argument form) get the new
-- form too, so that the next relay started with the same role works
-- without another --grant-relay.
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

INSERT INTO :"schema".schema_migrations (version, name) VALUES (10, '010_failure_generation');
