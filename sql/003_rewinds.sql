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
