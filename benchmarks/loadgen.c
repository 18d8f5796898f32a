/* A compiled load generator on librdkafka, so that the client is not the bottleneck when the
 * broker is measured with small records (benchmarks/run.py --loadgen c builds and runs it).
 *
 *   loadgen produce BOOTSTRAP TOPIC PARTITIONS SIZE SECONDS MAX_RECORDS
 *   loadgen consume BOOTSTRAP TOPIC PARTITIONS EXPECTED TIMEOUT_SECONDS
 *
 * produce: SIZE-byte values round-robin over the partitions (acks=all, linger.ms=5, no
 * compression) for SECONDS or MAX_RECORDS, then a flush; warm-up of one record per partition
 * first. consume: assign() every partition from the beginning (no group) and read until
 * EXPECTED records arrived. Prints one JSON object: records, bytes, elapsed_s (first record
 * to the end of the flush / the last record), errors, client_cpu_s (this process, user+sys).
 * Build: gcc -O2 -o loadgen loadgen.c -lrdkafka  (Debian: librdkafka-dev).
 */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static long long delivered_ok, delivery_errors;
static char first_error[256];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    if (m->err) {
        if (!delivery_errors)
            snprintf(first_error, sizeof first_error, "%s", rd_kafka_err2str(m->err));
        delivery_errors++;
    } else {
        delivered_ok++;
    }
}

static void set(rd_kafka_conf_t *conf, const char *k, const char *v) {
    char err[512];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "config %s=%s: %s\n", k, v, err);
        exit(2);
    }
}

static int produce_one(rd_kafka_t *rk, const char *topic, int partition, void *buf, size_t size) {
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_VALUE(buf, size), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "produce: %s\n", rd_kafka_err2str(e));
            return -1;
        }
        rd_kafka_poll(rk, 1);
    }
}

static int produce(const char *bootstrap, const char *topic, int parts, size_t size,
                   double seconds, long long max_records) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", bootstrap);
    set(conf, "acks", "all");
    set(conf, "linger.ms", "5");
    set(conf, "queue.buffering.max.messages", "1000000");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "producer: %s\n", err);
        return 2;
    }
    unsigned char *buf = malloc(size ? size : 1);
    for (size_t i = 0; i < size; i++)
        buf[i] = (unsigned char)(rand() & 0xff);
    for (int p = 0; p < parts; p++)
        if (produce_one(rk, topic, p, buf, size))
            return 2;
    rd_kafka_flush(rk, 30000);
    if (delivery_errors) {
        fprintf(stderr, "warm-up failed: %s\n", first_error);
        return 2;
    }
    delivered_ok = 0;
    double cpu0 = cpu_s(), start = now_s(), deadline = start + seconds;
    long long n = 0;
    while (n < max_records) {
        if ((n & 1023) == 0) {
            if (now_s() >= deadline)
                break;
            rd_kafka_poll(rk, 0);
        }
        if (produce_one(rk, topic, (int)(n % parts), buf, size))
            return 2;
        n++;
    }
    int left = rd_kafka_flush(rk, 120000) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : rd_kafka_outq_len(rk);
    double elapsed = now_s() - start, cpu = cpu_s() - cpu0;
    printf("{\"records\": %lld, \"bytes\": %lld, \"elapsed_s\": %.6f, \"errors\": %lld, "
           "\"undelivered\": %d, \"client_cpu_s\": %.6f, \"total_records_in_topic\": %lld, "
           "\"error_samples\": [\"%s\"]}\n",
           delivered_ok, delivered_ok * (long long)size, elapsed, delivery_errors, left, cpu,
           delivered_ok + parts, first_error);
    rd_kafka_destroy(rk);
    free(buf);
    return 0;
}

static int consume(const char *bootstrap, const char *topic, int parts, long long expected,
                   double timeout) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", bootstrap);
    set(conf, "group.id", "loadgen-unused");
    set(conf, "enable.auto.commit", "false");
    set(conf, "enable.partition.eof", "false");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "consumer: %s\n", err);
        return 2;
    }
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(list, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    long long n = 0, bytes = 0, errors = 0;
    double cpu0 = cpu_s(), start = 0, last = 0, give_up = now_s() + timeout;
    rd_kafka_message_t *batch[1024];
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);
    while (n < expected && now_s() < give_up) {
        ssize_t got = rd_kafka_consume_batch_queue(q, 100, batch, 1024);
        for (ssize_t i = 0; i < got; i++) {
            if (batch[i]->err) {
                errors++;
            } else {
                if (!n) {
                    start = now_s();
                    cpu0 = cpu_s();
                }
                n++;
                bytes += (long long)batch[i]->len;
            }
            rd_kafka_message_destroy(batch[i]);
        }
        if (got > 0)
            last = now_s();
    }
    double cpu = cpu_s() - cpu0;
    printf("{\"records\": %lld, \"bytes\": %lld, \"elapsed_s\": %.6f, \"errors\": %lld, "
           "\"expected\": %lld, \"client_cpu_s\": %.6f}\n",
           n, bytes, n ? last - start : 0.0, errors, expected, cpu);
    rd_kafka_queue_destroy(q);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n >= expected ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 8 && !strcmp(argv[1], "produce"))
        return produce(argv[2], argv[3], atoi(argv[4]), (size_t)atol(argv[5]), atof(argv[6]),
                       atoll(argv[7]));
    if (argc == 7 && !strcmp(argv[1], "consume"))
        return consume(argv[2], argv[3], atoi(argv[4]), atoll(argv[5]), atof(argv[6]));
    fprintf(stderr, "usage: loadgen produce BOOTSTRAP TOPIC PARTITIONS SIZE SECONDS MAX_RECORDS\n"
                    "       loadgen consume BOOTSTRAP TOPIC PARTITIONS EXPECTED TIMEOUT_SECONDS\n");
    return 2;
}
