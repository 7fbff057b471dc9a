/* The world of the several-outboxes tests (test_outboxes*.c): two
 * PostgreSQL servers and the dev Kafka, three outboxes a, b (two schemas of
 * one database) and c (a database of the second server) in one
 * --outboxes-file, and what the cases do with them. */
#ifndef OUTBOXES_WORLD_H
#define OUTBOXES_WORLD_H

#include <libpq-fe.h>

#include "fault_harness.h"
#include "fixture.h"

extern struct fx_pg *pg, *pg2;
extern struct fx_kafka *kafka;

#define BROKERS fx_kafka_bootstraps(kafka)
#define N_OB    3
#define KEYS    7

/* One outbox of the test: where its rows are and where they go. */
struct ob {
        const char *name, *schema;
        char topic[64];
        char *ci; /* superuser conninfo of its database */
        PGconn *c;
        int next; /* the payload number of its next row */
};

struct world {
        char dir[128];
        char *file; /* the --outboxes-file */
        struct ob ob[N_OB];
};

void servers_start(void);
void servers_stop(void);
void world_new_c(struct world *w, const char *tag, const char *extra, const char *extra_c);
void world_new(struct world *w, const char *tag, const char *extra);
void world_free(struct world *w);
struct fx_relay *start_env(const struct world *w, int http_port, const char *const more[],
                           const char *const env[]);
struct fx_relay *start(const struct world *w, int http_port, const char *const more[]);
void insert(struct ob *o, int n);
long long wait_sent(struct ob *o, long long n, int timeout_ms);
void check_read(struct ob *o, int twice);
int log_has(const struct fx_relay *r, const char *what);
double scrape(int port, const char *series);
double wait_metric(int port, const char *series, double v, int timeout_ms);
/* o's topic against its table (check_read in outboxes_world.c). */
#define check(o) check_read((o), 0)

#endif
