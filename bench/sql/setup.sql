-- outbox-relay benchmark: the service side of the benchmark, applied after
-- `outbox-relay migrate`. A business table for the writer transaction, the
-- event payload (one definition for bulk loads, writers and pgbench), and a
-- plain table like outbox.events without its NOTIFY trigger.

CREATE SCHEMA bench;

-- The row a writer transaction updates alongside its outbox insert.
CREATE TABLE bench.accounts (
    id         integer PRIMARY KEY,
    owner      text NOT NULL,
    balance    bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO bench.accounts (id, owner) SELECT g, 'owner-' || g FROM generate_series(1, 100000) g;

-- An order event of about 500 bytes of JSON text (as the relay publishes it).
CREATE FUNCTION bench.payload(n bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'event', 'order.updated', 'order_id', n, 'customer_id', n % 1000,
        'status', 'confirmed', 'amount', round((n % 100000) / 100.0, 2), 'currency', 'EUR',
        'shipping', jsonb_build_object('street', '12 Example Street', 'city', 'Springfield',
                                       'postcode', '12345', 'country', 'DE'),
        'items', jsonb_build_array(
            jsonb_build_object('sku', 'sku-' || n % 97, 'qty', 1 + n % 3, 'price', 19.99),
            jsonb_build_object('sku', 'sku-' || n % 89, 'qty', 1, 'price', 4.50)),
        'note', repeat('x', 200))
$$;

-- Writer-cost baseline: outbox.events' columns, defaults, identity, CHECK
-- constraints and indexes (LIKE ... INCLUDING ALL), but no trigger, so no NOTIFY.
CREATE TABLE bench.plain_events (LIKE outbox.events INCLUDING ALL);

VACUUM ANALYZE bench.accounts;
