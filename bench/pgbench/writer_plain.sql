-- outbox-relay benchmark, writer cost baseline: the same transaction inserting into
-- bench.plain_events, outbox.events' definition without the NOTIFY trigger.
\set aid random(1, 100000)
\set n random(1, 1000000000)
\set k :n % 1000
BEGIN;
UPDATE bench.accounts SET balance = balance + 1, updated_at = now() WHERE id = :aid;
INSERT INTO bench.plain_events (topic, key, event_type, payload)
  VALUES ('writer', 'customer-' || :k::text, 'order.updated', bench.payload(:n));
END;
