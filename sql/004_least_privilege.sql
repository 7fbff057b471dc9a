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
