/* producer: the idempotent librdkafka producer. Owns the rd_kafka_t, turns
 * its delivery reports into calls of the relay's callback (in the relay's
 * thread, from producer_poll), and signals readiness through a pipe that
 * the relay's poll() watches. Rebuilt by the relay after a fatal error. */
#ifndef OUTBOX_PRODUCER_H
#define OUTBOX_PRODUCER_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "compiler.h"

struct config;
struct log;
struct message_row;
struct metrics;

struct producer;

/* One delivery report: msg_opaque is what producer_send was given. */
typedef void (*producer_dr_cb)(void *arg, void *msg_opaque, rd_kafka_resp_err_t err,
                               int32_t partition, int64_t offset);

/* metrics receives the queue depth, broker state and round-trip times. */
struct producer *producer_new(const struct config *cfg, struct log *lg, struct metrics *metrics,
                              producer_dr_cb cb, void *arg, char *errbuf,
                              size_t errsz) OUTBOX_MUST_CHECK;
/* Purges what is still queued or in flight (their reports arrive with a
 * purge error, so every message gets exactly one report) and destroys. */
void producer_free(struct producer *p);

/* Enqueues one message (key, value and headers borrowed from row, which
 * must stay valid until its report). Returns RD_KAFKA_RESP_ERR_NO_ERROR or
 * the error that made librdkafka refuse it (e.g. MSG_SIZE_TOO_LARGE).
 * Never blocks: RD_KAFKA_RESP_ERR__QUEUE_FULL means try again once
 * producer_poll has served delivery reports (hdrs is freed either way). */
rd_kafka_resp_err_t producer_send(struct producer *p, const char *topic,
                                  const struct message_row *row, rd_kafka_headers_t *hdrs,
                                  void *msg_opaque) OUTBOX_MUST_CHECK;

/* ---- --exactly-once (a transactional producer) ----
 * A fatal error also sets producer_fatal (the producer must be rebuilt). */
/* What a transactional call ended with: the convention's 0 and -1 (with
 * errbuf), and the two outcomes that tell the caller what to do next. */
enum producer_txn_result {
        PRODUCER_TXN_DONE = 0,
        PRODUCER_TXN_FAILED = -1,     /* errbuf says why */
        PRODUCER_TXN_RETRY = -2,      /* not done yet (Kafka slow or away): call again */
        PRODUCER_TXN_MUST_ABORT = -3, /* commit refused: the transaction must be aborted */
};
/* Once per producer, by the leader: fences older producers of the same
 * transactional.id and aborts their open transaction. Resumable: waits at
 * most timeout_ms. */
enum producer_txn_result producer_txn_init(struct producer *p, int timeout_ms, char *errbuf,
                                           size_t errsz) OUTBOX_MUST_CHECK;
enum producer_txn_result producer_txn_begin(struct producer *p, char *errbuf,
                                            size_t errsz) OUTBOX_MUST_CHECK;
/* The transaction's progress record (copied), on partition 0 of topic. */
rd_kafka_resp_err_t producer_send_progress(struct producer *p, const char *topic, const char *key,
                                           const char *value) OUTBOX_MUST_CHECK;
/* Commit and abort, resumable: each call waits at most timeout_ms, and
 * PRODUCER_TXN_RETRY means call the same again (the operation goes on in
 * librdkafka meanwhile; no other transactional call is allowed until it
 * ends). 0 when committed (its messages are visible to read_committed
 * consumers) or aborted; commit may return PRODUCER_TXN_MUST_ABORT; -1 when
 * the outcome is left to the next producer (producer_fatal is then set). */
enum producer_txn_result producer_txn_commit(struct producer *p, int timeout_ms, char *errbuf,
                                             size_t errsz) OUTBOX_MUST_CHECK;
enum producer_txn_result producer_txn_abort(struct producer *p, int timeout_ms, char *errbuf,
                                            size_t errsz) OUTBOX_MUST_CHECK;
/* Leaves a commit or abort that does not end to the next producer: sets
 * producer_fatal with why. */
void producer_txn_give_up(struct producer *p, const char *why);
/* The fatal error is that a newer producer of the transactional.id exists. */
int producer_fenced(const struct producer *p);

/* Serves delivery reports, logs and errors without blocking. */
void producer_poll(struct producer *p);
/* Readable when producer_poll has something to serve. */
int producer_fd(const struct producer *p);
/* Non-zero once the producer hit a fatal error and must be rebuilt;
 * errbuf gets the reason. */
int producer_fatal(const struct producer *p, char *errbuf, size_t errsz);
/* Non-zero while the brokers refuse the relay's connections for a reason
 * of its setup (authentication, TLS), until a broker is up again; errbuf
 * gets the cause. Rows wait meanwhile; none spends an attempt. */
int producer_refused(const struct producer *p, char *errbuf, size_t errsz);
/* Messages not yet reported. */
int producer_outstanding(const struct producer *p);
/* Fails everything queued or in flight now (reports follow on poll). */
void producer_purge(struct producer *p);

/* Errors that say the message will never be accepted as it is (count an
 * attempt), as opposed to the producer or cluster being unavailable. */
int producer_err_is_permanent(rd_kafka_resp_err_t err);

#endif
