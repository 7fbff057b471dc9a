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
