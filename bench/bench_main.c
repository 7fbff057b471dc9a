/* outbox-bench: the measuring half of the benchmark (bench/run.sh is the
 * other half). Picks the subcommand; each prints "name value" result lines. */
#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>

#include "bench.h"

static const char usage_text[] =
    "usage: outbox-bench COMMAND [options]   (each command has --help)\n"
    "  pg-ceiling      bare PostgreSQL claim-and-mark loop over the pending outbox rows\n"
    "  kafka-ceiling   bare idempotent librdkafka production of N outbox-like messages\n"
    "  kafka-latency   the dev Kafka alone: produce -> acknowledged -> read, at a fixed rate\n"
    "  hwm             sum of a topic's high-water offsets\n"
    "  topics          create topics on a real broker (Apache Kafka) and wait for their leaders\n"
    "  load            writers at a fixed event rate plus a consumer: end-to-end latency\n"
    "  split           load --dump joined with the relay's batch trace: the latency by step\n"
    "  monitor         a relay's CPU and RSS while it drains (or for a duration)\n"
    "  waits           what PostgreSQL client backends wait on, sampled\n"
    "  version         librdkafka and libpq versions in use\n";

int main(int argc, char **argv)
{
        static const struct {
                const char *name;
                int (*fn)(int, char **);
        } cmds[] = {
            {"pg-ceiling", bench_cmd_pg_ceiling},
            {"kafka-ceiling", bench_cmd_kafka_ceiling},
            {"kafka-latency", bench_cmd_kafka_latency},
            {"hwm", bench_cmd_hwm},
            {"topics", bench_cmd_topics},
            {"load", bench_cmd_load},
            {"split", bench_cmd_split},
            {"monitor", bench_cmd_monitor},
            {"waits", bench_cmd_waits},
        };

        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
                fputs(usage_text, argc < 2 ? stderr : stdout);
                return argc < 2 ? 2 : 0;
        }
        if (strcmp(argv[1], "version") == 0) {
                int v = PQlibVersion();

                printf("librdkafka %s\nlibpq %d.%d\n", rd_kafka_version_str(), v / 10000,
                       v % 10000);
                return 0;
        }
        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
                if (strcmp(argv[1], cmds[i].name) == 0)
                        return cmds[i].fn(argc - 1, argv + 1);
        }
        fprintf(stderr, "outbox-bench: unknown command '%s'\n%s", argv[1], usage_text);
        return 2;
}
