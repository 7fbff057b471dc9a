/* relay_produce: hands the rows of fetched batches to the producer, in id
 * order across batches, holding back the keys of rows left pending, and
 * takes the delivery reports. A full producer queue (QUEUE_FULL) pauses that in
 * the loop, which serves the delivery reports that make room and then
 * resumes here: producer_send never waits, so signals, probes and the
 * database keep being served while Kafka is slow or away. */
#include <limits.h>
#include <stdio.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "config.h"
#include "log.h"
#include "message.h"
#include "metrics.h"
#include "producer.h"
#include "relay_batch.h"
#include "relay_int.h"
#include "relay_txn_state.h"
#include "route.h"

/* ---- holding keys ---- */

/* The row stays pending (unsent, or failed and waiting for its retry):
 * later rows of its key must not be produced until its batch is done, by
 * when the database knows the failure (the fetch then holds the key back)
 * or the row is fetchable again, ahead of the rest of its key. */
void relay_hold_key(struct relay *r, const struct relay_row *row)
{
        row->batch->left_pending = 1;
        /* The newest batch: every row produced so far is in it or before. */
        if (row->m.key != NULL)
                json_object_set_new_nocheck(r->held, row->m.key,
                                            json_integer((json_int_t)r->batch_seq));
}

static int key_held(const struct relay *r, const struct relay_row *row)
{
        return row->m.key != NULL && json_object_get(r->held, row->m.key) != NULL;
}

/* A held key is left out of every fetch, and freed once every batch that
 * holds a row of it is done: by then the failure is in the database (where
 * the fetch holds the key back) or the rows are pending and not in flight
 * (and the next fetch returns them first, in order). Not while a fetch runs
 * or batches wait for a transaction: they may come from a fetch sent before
 * the key was held, without its rows then in flight but with later ones. */
void relay_release_keys(struct relay *r)
{
        unsigned long oldest = r->batches != NULL ? r->batches->seq : ULONG_MAX;
        const char *key;
        json_t *v;
        void *tmp;

        if (r->fetch_queued || relay_txn_waiting(r->tx))
                return;
        json_object_foreach_safe(r->held, tmp, key, v)
        {
                if ((unsigned long)json_integer_value(v) < oldest)
                        json_object_del(r->held, key);
        }
}

/* ---- delivery reports ---- */

static void fail_row(struct relay *r, struct relay_row *row, const char *reason)
{
        row->state = ROW_FAILED;
        if (row->fail == FAIL_NONE)
                batch_row_fail_set(row, FAIL_WAITING);
        /* Its failure waits for the reports of every row produced so far
         * (relay_fail.c); rows produced from now on of its key are held. */
        row->wait_seq = r->batch_seq;
        /* It goes back to PostgreSQL (last_error, the dead letter's reason),
         * which refuses text that is not UTF-8: a reason cut at a byte
         * limit inside a character, or holding a row's own bytes from a
         * database that does not check them, is made whole. NULL (out of
         * memory) records no text. */
        row->error = log_clean_text(reason, RELAY_REASON_MAX, 0);
        metrics_topic_add(r->metrics, METRICS_FAILED, row->topic, 1);
        relay_hold_key(r, row);
}

/* row goes again: the later rows of its key that Kafka may have appended
 * behind it (the dev Kafka appends the requests after a refused one;
 * Apache Kafka those after a new producer id's refused first) stay pending
 * to go again after it, so that the last copy of each row of a key still
 * comes after the last copy of the rows before it. Their batches cannot be
 * marked yet: marks wait for every earlier batch's reports (relay_mark.c). */
static void unsent_overtaken(struct relay *r, struct relay_row *row)
{
        int late = batch_unsent_overtaken(row->batch, row);

        if (late > 0)
                log_error(r->lg,
                          "a later row of a row gone back pending was marked sent already: per-key "
                          "order may be broken",
                          "{s:I,s:i}", "id", (json_int_t)row->m.id, "rows", late);
}

/* created_at to ack, on the wall clock (created_at is PostgreSQL's): a
 * database clock ahead of the relay's counts as 0. A replayed row is
 * published again on purpose, long after it was written: left out. */
static void observe_lag(struct relay *r, const struct relay_row *row)
{
        struct timespec ts;
        int64_t now;

        if (row->m.replays > 0)
                return;
        clock_gettime(CLOCK_REALTIME, &ts);
        now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        metrics_observe(r->metrics, METRICS_LAG_SECONDS,
                        now > row->m.created_at_us ? (double)(now - row->m.created_at_us) / 1e6
                                                   : 0);
}

void relay_on_delivery(void *arg, void *msg_opaque, rd_kafka_resp_err_t err, int32_t partition,
                       int64_t offset)
{
        struct relay *r = arg;
        struct relay_row *row = msg_opaque;

        if (row->batch->txn == BATCH_TXN_OPEN && err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                /* The transaction can only be aborted now. Abort at once:
                 * the messages queued behind this one would otherwise be
                 * reported only when they time out. */
                relay_txn_message_failed(r->tx);
        }
        if (row->batch->txn == BATCH_TXN_ABORTED) {
                /* Its transaction was aborted: whatever the report says,
                 * the row was not published. It stays as it was made
                 * (unsent) at the abort. */
        } else if (row->behind) {
                /* An earlier row of its key came back unpublished: this one
                 * stays pending, published or not, to go again after it. */
                row->state = ROW_UNSENT;
                relay_hold_key(r, row);
        } else if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                row->state = ROW_SENT;
                row->partition = partition;
                row->offset = offset;
                r->rebuild_attempt = 0;
                row->reported_us = now_us(); /* the metric's time, and the trace's */
                metrics_topic_add(r->metrics, METRICS_PUBLISHED, row->topic, 1);
                metrics_observe(r->metrics, METRICS_ACK_SECONDS,
                                (double)(row->reported_us - row->produced_us) / 1e6);
                observe_lag(r, row);
        } else if (producer_err_is_permanent(err)) {
                char reason[300];

                /* The topic named: an authorization failure (an ACL) or an
                 * unknown topic is about it, not the row's content. */
                snprintf(reason, sizeof(reason), "%s (topic %s)", rd_kafka_err2str(err),
                         row->topic);
                fail_row(r, row, reason);
        } else {
                /* Kafka or the producer failed, not the row: it stays pending
                 * without using an attempt, and its key waits behind it. */
                row->state = ROW_UNSENT;
                relay_hold_key(r, row);
                log_debug(r->lg, "delivery not confirmed, row stays pending", "{s:I,s:s}", "id",
                          (json_int_t)row->m.id, "error", rd_kafka_err2str(err));
                unsent_overtaken(r, row);
        }
        row->batch->outstanding--;
        r->hooks.batch_reported(r, row->batch);
}

/* ---- producing a row ---- */

/* Where row goes; NULL when it cannot go anywhere (it is failed then). */
static const char *topic_for(struct relay *r, struct relay_row *row)
{
        char err[512];
        const char *topic =
            route_topic(r->route, row->m.topic, row->m.event_type, err, sizeof(err));

        row->topic = topic != NULL ? topic : "(unrouted)";
        if (topic == NULL) {
                fail_row(r, row, err);
                return NULL;
        }
        /* Routes and --default-topic were checked at startup (route_guard);
         * a row's own topic (route_topic returns it as is) only by the
         * table's CHECK, which a user may have dropped: checked here. */
        if (topic == row->m.topic && !route_topic_name_ok(topic)) {
                snprintf(err, sizeof(err),
                         "topic \"%.64s\" is not a legal Kafka topic name ([A-Za-z0-9._-], 1 to "
                         "%d characters, not \".\" or \"..\")",
                         topic, ROUTE_TOPIC_MAX);
                row->topic = "(illegal)";
                fail_row(r, row, err);
                return NULL;
        }
        /* A writer chose a topic the relay must not write (Kafka's own, the
         * progress topic, or outside --allowed-topics): no retry can help. */
        if (topic == row->m.topic && route_refused(r->route, topic, err, sizeof(err)) != 0) {
                row->topic = "(refused)";
                fail_row(r, row, err);
                row->dead_now = 1;
                return NULL;
        }
        return topic;
}

/* Hands one row to the producer (or settles it: failed, held back).
 * Returns 0, or 1 when the producer's queue is full (nothing changed). */
static int produce_row(struct relay *r, struct batch *b, struct relay_row *row)
{
        char err[512];
        const char *topic;
        rd_kafka_headers_t *hdrs;
        rd_kafka_resp_err_t kerr;

        if (key_held(r, row)) {
                /* An earlier row of its key is not published. This one stays
                 * pending too, and the key stays held until its batch is done
                 * (else a fetch that left it out as in flight could hand a
                 * later row of the key over first). */
                row->state = ROW_UNSENT;
                relay_hold_key(r, row);
                return 0;
        }
        if ((topic = topic_for(r, row)) == NULL)
                return 0;
        if (row->m.event_id == NULL) {
                fail_row(r, row, "column event_id is NULL (was its NOT NULL constraint dropped?)");
                return 0;
        }
        if (message_headers_env(&row->m, r->envelope, topic, &hdrs, err, sizeof(err)) != 0) {
                fail_row(r, row, err);
                return 0;
        }
        row->state = ROW_INFLIGHT;
        row->produced_us = now_us();
        b->outstanding++;
        kerr = producer_send(r->producer, topic, &row->m, hdrs, row);
        if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
                row->produced = 1;
                return 0;
        }
        b->outstanding--;
        /* Full with nothing in it: the message alone exceeds
         * queue.buffering.max.kbytes and no report will ever make room. */
        if (kerr == RD_KAFKA_RESP_ERR__QUEUE_FULL && producer_outstanding(r->producer) == 0) {
                snprintf(err, sizeof(err),
                         "message larger than the producer's queue (queue.buffering.max.kbytes)");
                fail_row(r, row, err);
                return 0;
        }
        if (kerr == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                return 1;
        if (producer_err_is_permanent(kerr)) {
                snprintf(err, sizeof(err), "%s (topic %s)", rd_kafka_err2str(kerr), topic);
                fail_row(r, row, err);
        } else {
                row->state = ROW_UNSENT;
                relay_hold_key(r, row);
        }
        return 0;
}

/* The producer's queue is full (queue.buffering.max.messages or .kbytes):
 * the rest of the batch waits in the loop, which serves the delivery
 * reports that make room, instead of waiting inside librdkafka. Said at
 * most once a second, with how often it happened meanwhile. */
static void queue_full(struct relay *r, int was_full)
{
        int64_t now = now_ms();

        r->queue_full = 1;
        if (was_full)
                return; /* still the same wait */
        r->queue_full_count++;
        if (now - r->queue_full_logged_at < 1000)
                return;
        log_warn(r->lg, "kafka producer queue full: waiting for deliveries", "{s:i,s:I}",
                 "in_queue", producer_outstanding(r->producer), "times",
                 (json_int_t)r->queue_full_count);
        r->queue_full_logged_at = now;
        r->queue_full_count = 0;
}

/* Whether b's rows not produced yet will never be: its transaction is over
 * or doomed (--exactly-once), or shutdown gave up on deliveries. They stay
 * pending, like any row not delivered. */
static int produce_abandoned(const struct relay *r, const struct batch *b)
{
        return r->purged ||
               (r->tx != NULL && (b->txn != BATCH_TXN_OPEN || relay_txn_doomed(r->tx)));
}

/* Produces the rest of b; 1 if the queue filled before its end. */
static int produce_rest(struct relay *r, struct batch *b, int was_full)
{
        for (; b->next_row < b->n; b->next_row++) {
                struct relay_row *row = &b->rows[b->next_row];

                if (produce_abandoned(r, b)) {
                        row->state = ROW_UNSENT;
                        relay_hold_key(r, row);
                } else if (produce_row(r, b, row) != 0) {
                        queue_full(r, was_full);
                        return 1;
                }
        }
        batch_set_state(b, BATCH_IN_FLIGHT);
        r->hooks.batch_reported(r, b); /* may free b */
        return 0;
}

void relay_resume_producing(struct relay *r)
{
        int was_full = r->queue_full;

        r->queue_full = 0;
        /* In fetch order, and none before the one ahead is done: rows go to
         * the producer in id order. */
        for (struct batch *b = r->batches, *next; b != NULL; b = next) {
                next = b->next; /* b may be freed once produced */
                if (b->state == BATCH_PRODUCING && produce_rest(r, b, was_full) != 0)
                        return;
                was_full = 0; /* progress: a new wait if it fills again */
        }
}

void relay_produce_batch(struct relay *r, struct batch *b)
{
        batch_set_state(b, BATCH_PRODUCING);
        b->next_row = 0;
        if (!r->queue_full)
                relay_resume_producing(r);
}

int relay_envelope_init(struct relay *r, char *errbuf, size_t errsz)
{
        char source[1100];
        int ce = config_cloudevents(r->cfg);

        if (ce)
                config_cloudevents_source(r->cfg, source, sizeof(source));
        r->envelope = message_envelope_new(ce, ce ? source : NULL);
        if (r->envelope == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                return -1;
        }
        if (ce)
                log_info(r->lg, "publishing CloudEvents (binary content mode)", "{s:s}", "source",
                         source);
        return 0;
}
