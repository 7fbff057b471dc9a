-- outbox-relay benchmark, writer cost: a service transaction that updates a business row and
-- inserts its event into the outbox (whose statement trigger NOTIFYs the relay at commit).
\set aid random(1, 100000)
\set n random(1, 1000000000)
\set k :n % 1000
BEGIN;
UPDATE bench.accounts SET balance = balance + 1, updated_at = now() WHERE id = :aid;
INSERT INTO outbox.events (topic, key, event_type, payload)
  VALUES ('writer', 'customer-' || :k::text, 'order.updated', bench.payload(:n));
END;
