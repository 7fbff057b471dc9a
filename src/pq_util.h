/* pq_util: libpq's messages made fit for a log line or an operator's
 * terminal. Internal to the modules that talk to PostgreSQL. */
#ifndef OUTBOX_PQ_UTIL_H
#define OUTBOX_PQ_UTIL_H

#include <stddef.h>

#include <libpq-fe.h>

/* libpq's message msg as one line, without the trailing newline nor the
 * statement excerpt of a positioned error; "unknown error" for none. */
void pq_error_line(const char *msg, char *errbuf, size_t errsz);
/* Why res (or, without its own message, conn) failed, as one line: the
 * server's primary message when it sent one. libpq's messages name host
 * and port at most, never the conninfo or its password. */
void pq_failure(PGconn *conn, const PGresult *res, char *errbuf, size_t errsz);

#endif
