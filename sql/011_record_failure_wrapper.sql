-- outbox-relay schema, version 11: the old record_failure is a thin wrapper.
-- Applied by `outbox-relay migrate`; by hand:
-- psql -v schema=outbox -f sql/011_record_failure_wrapper.sql
--
-- 010 kept the 6-argument record_failure (relays of version 8, until they
-- are replaced) as a full copy of the 7-argument body: two bodies to keep
-- alike. It now calls the 7-argument form with the row's current
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

INSERT INTO :"schema".schema_migrations (version, name) VALUES (11, '011_record_failure_wrapper');
