/*
 * C tests of the zmws C API (include/zmws.h).
 *
 * One process: a broker bound to free loopback ports, workers on threads or
 * polled from the test thread, clients. Every test_*() returns true on
 * success; main() runs them all (or those whose name contains argv[1]) and
 * exits 1 if any failed. Every wait is bounded by a count and a deadline.
 *
 * Environment: ZMWS_TEST_BATCH (default 10000) sets the batch sizes,
 * ZMWS_TEST_SLOW=1 stretches the deadlines (valgrind), ZMWS_TEST_LEAK=1
 * leaks one string on purpose (run.sh checks that valgrind notices).
 */
#define _POSIX_C_SOURCE 200809L

#include "zmws.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HEARTBEAT_MS 500
#define LIVENESS 6

static char *g_client_ep;
static char *g_worker_ep;
static int g_slow = 1; /* deadline multiplier */

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "    %s:%d: ", __FILE__, __LINE__);                                        \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        return false;                                                                              \
    } while (0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            FAIL("check failed: %s (last error: '%s')", #cond, zmws_last_error());                 \
    } while (0)

#define CHECK_RC(expr, want)                                                                       \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != (want))                                                                         \
            FAIL("%s returned %s, expected %s (last error: '%s')", #expr, zmws_code_name(rc_),     \
                 zmws_code_name(want), zmws_last_error());                                         \
    } while (0)

#define CHECK_OK(expr) CHECK_RC(expr, ZMWS_OK)

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool bytes_equal(const uint8_t *data, size_t len, const char *text) {
    return len == strlen(text) && memcmp(data, text, len) == 0;
}

/* ------------------------------------------------------------ worker threads */

/* STR-REV: the result is the payload reversed. A payload "progress:<rest>"
 * first sends the partials "1/2" and "2/2" and answers <rest> reversed. */
static int str_rev(void *user_data, zmws_job *job) {
    (void)user_data;
    const uint8_t *payload;
    size_t len;
    if (zmws_job_payload(job, &payload, &len) != ZMWS_OK)
        return ZMWS_INTERNAL;
    if (len >= 9 && memcmp(payload, "progress:", 9) == 0) {
        zmws_job_partial(job, (const uint8_t *)"1/2", 3);
        zmws_job_partial(job, (const uint8_t *)"2/2", 3);
        payload += 9;
        len -= 9;
    }
    uint8_t *out = malloc(len + 1);
    if (!out)
        return ZMWS_INTERNAL;
    for (size_t i = 0; i < len; i++)
        out[i] = payload[len - 1 - i];
    int rc = zmws_job_complete(job, out, len);
    free(out);
    return rc;
}

/* Always fails, not retryable, with a reason. */
static int always_fail(void *user_data, zmws_job *job) {
    (void)user_data;
    return zmws_job_fail(job, "boom: cannot handle this input", false);
}

/* Returns an error code without answering: the loop fails the job. */
static int forget_to_answer(void *user_data, zmws_job *job) {
    (void)user_data;
    (void)job;
    return 42;
}

/* Fails retryably on the first attempt and succeeds on the next one. */
static int flaky(void *user_data, zmws_job *job) {
    (void)user_data;
    uint32_t attempt = 0;
    if (zmws_job_attempt(job, &attempt) != ZMWS_OK)
        return ZMWS_INTERNAL;
    if (attempt < 2)
        return zmws_job_fail(job, "try again", true);
    char text[64];
    int n = snprintf(text, sizeof text, "ok on attempt %u", (unsigned)attempt);
    return zmws_job_complete(job, (const uint8_t *)text, (size_t)n);
}

typedef struct {
    zmws_worker *worker;
    pthread_t thread;
    zmws_job_fn handler;
    int rc;
} worker_thread;

static void *worker_main(void *arg) {
    worker_thread *wt = arg;
    wt->rc = zmws_worker_run(wt->worker, wt->handler, NULL);
    return NULL;
}

static bool wait_for_service(zmws_client *client, const char *service) {
    int64_t deadline = now_ms() + 10000 * g_slow;
    for (int i = 0; i < 10000 && now_ms() < deadline; i++) {
        bool available = false;
        if (zmws_client_service_available(client, service, &available) == ZMWS_OK && available)
            return true;
        sleep_ms(20);
    }
    fprintf(stderr, "    service '%s' did not appear\n", service);
    return false;
}

static bool start_worker(worker_thread *wt, const char *service, uint32_t capacity, zmws_job_fn handler) {
    memset(wt, 0, sizeof *wt);
    wt->handler = handler;
    wt->rc = -1;
    CHECK_OK(zmws_worker_new_with_heartbeat(g_worker_ep, service, capacity, HEARTBEAT_MS, LIVENESS,
                                            &wt->worker));
    if (pthread_create(&wt->thread, NULL, worker_main, wt) != 0) {
        zmws_worker_free(wt->worker);
        FAIL("pthread_create failed");
    }
    zmws_client *client = NULL;
    CHECK_OK(zmws_client_new(g_client_ep, &client));
    bool up = wait_for_service(client, service);
    zmws_client_free(client);
    return up;
}

/* Stops the loop from this thread (another thread than the one running it). */
static bool stop_worker(worker_thread *wt) {
    CHECK_OK(zmws_worker_stop(wt->worker));
    pthread_join(wt->thread, NULL);
    zmws_worker_free(wt->worker);
    CHECK_RC(wt->rc, ZMWS_OK);
    return true;
}

/* ------------------------------------------------------------ tests */

static bool test_version_and_codes(void) {
    const char *v = zmws_version();
    CHECK(v != NULL && strlen(v) >= 5 && strchr(v, '.') != NULL);
    CHECK(strcmp(zmws_code_name(ZMWS_OK), "ZMWS_OK") == 0);
    CHECK(strcmp(zmws_code_name(ZMWS_JOB_FAILED), "ZMWS_JOB_FAILED") == 0);
    CHECK(strcmp(zmws_code_name(ZMWS_IDLE), "ZMWS_IDLE") == 0);
    CHECK(strcmp(zmws_code_name(1234), "ZMWS_UNKNOWN") == 0);
    CHECK(ZMWS_TIMEOUT == 1 && ZMWS_NO_SUCH_SERVICE == 2 && ZMWS_INVALID_ARGUMENT == 3 &&
          ZMWS_INTERNAL == 11 && ZMWS_IDLE == 13);
    CHECK_RC(zmws_client_new(NULL, NULL), ZMWS_INVALID_ARGUMENT);
    CHECK(strlen(zmws_last_error()) > 0);
    CHECK_RC(zmws_broker_is_running(NULL, NULL), ZMWS_INVALID_ARGUMENT);
    bool running = true;
    zmws_broker *b = NULL;
    CHECK_OK(zmws_broker_new(&b));
    CHECK_OK(zmws_broker_is_running(b, &running));
    CHECK(!running);
    CHECK(strcmp(zmws_last_error(), "") == 0); /* success clears the last error */
    zmws_broker_free(b);
    if (getenv("ZMWS_TEST_LEAK")) {
        /* Negative control for the leak checker: lose a library string. */
        zmws_client *c = NULL;
        char *leaked = NULL;
        CHECK_OK(zmws_client_new(g_client_ep, &c));
        CHECK_OK(zmws_client_endpoint(c, &leaked));
        zmws_client_free(c);
        leaked = NULL;
    }
    return true;
}

static bool test_broker_lifecycle(void) {
    zmws_broker *b = NULL;
    char *ep = NULL;
    bool running = false;
    CHECK_OK(zmws_broker_new(&b));
    CHECK_OK(zmws_broker_set_client_endpoint(b, "tcp://127.0.0.1:*"));
    CHECK_OK(zmws_broker_set_worker_endpoint(b, "tcp://127.0.0.1:*"));
    CHECK_OK(zmws_broker_set_news_endpoint(b, "tcp://127.0.0.1:*"));
    CHECK_RC(zmws_broker_set_heartbeat_ms(b, 0), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_broker_set_liveness(b, 0), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_broker_set_hwm(b, -1), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_broker_set_job_timeout_ms(b, UINT64_MAX), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_broker_set_max_payload(b, SIZE_MAX), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_broker_set_spin_us(b, 10001), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_broker_set_spin_us(NULL, 100), ZMWS_INVALID_ARGUMENT);
    CHECK_OK(zmws_broker_set_heartbeat_ms(b, 250));
    CHECK_OK(zmws_broker_set_liveness(b, 4));
    CHECK_OK(zmws_broker_set_job_timeout_ms(b, 30000));
    CHECK_OK(zmws_broker_set_max_attempts(b, 2));
    CHECK_OK(zmws_broker_set_max_payload(b, 1 << 20));
    CHECK_OK(zmws_broker_set_max_queued(b, 1000));
    CHECK_OK(zmws_broker_set_result_ttl_ms(b, 60000));
    CHECK_OK(zmws_broker_set_history_len(b, 10));
    CHECK_OK(zmws_broker_set_hwm(b, 1000));
    CHECK_RC(zmws_broker_client_endpoint(b, &ep), ZMWS_CLOSED);
    CHECK_OK(zmws_broker_start(b));
    CHECK_RC(zmws_broker_start(b), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_broker_set_heartbeat_ms(b, 100), ZMWS_INVALID_ARGUMENT);
    CHECK_OK(zmws_broker_is_running(b, &running));
    CHECK(running);
    CHECK_OK(zmws_broker_client_endpoint(b, &ep));
    CHECK(strncmp(ep, "tcp://127.0.0.1:", 16) == 0 && strcmp(ep, "tcp://127.0.0.1:*") != 0);
    zmws_string_free(ep);
    CHECK_OK(zmws_broker_news_endpoint(b, &ep));
    CHECK(strncmp(ep, "tcp://127.0.0.1:", 16) == 0);
    zmws_string_free(ep);
    CHECK_OK(zmws_broker_stop(b));
    CHECK_OK(zmws_broker_stop(b)); /* idempotent */
    CHECK_OK(zmws_broker_is_running(b, &running));
    CHECK(!running);
    /* Publishing off: the news endpoint is not found. */
    CHECK_OK(zmws_broker_set_news_endpoint(b, NULL));
    CHECK_OK(zmws_broker_start(b)); /* restart after stop */
    CHECK_RC(zmws_broker_news_endpoint(b, &ep), ZMWS_NOT_FOUND);
    zmws_broker_free(b); /* frees a running broker: stops it */

    /* A durable broker: a job submitted before a restart is still known after it. */
    char dir[] = "/tmp/zmws-c-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char store[64];
    snprintf(store, sizeof store, "%s/store", dir);
    CHECK_OK(zmws_broker_new(&b));
    CHECK_OK(zmws_broker_set_client_endpoint(b, "tcp://127.0.0.1:*"));
    CHECK_OK(zmws_broker_set_worker_endpoint(b, "tcp://127.0.0.1:*"));
    CHECK_OK(zmws_broker_set_news_endpoint(b, NULL));
    CHECK_OK(zmws_broker_set_data_dir(b, store));
    CHECK_OK(zmws_broker_set_spin_us(b, 200)); /* a spinning broker serves the same */
    CHECK_OK(zmws_broker_start(b));
    zmws_worker *w = NULL;
    zmws_client *c = NULL;
    char *wep = NULL, *cep = NULL, *id = NULL, *json = NULL;
    CHECK_OK(zmws_broker_worker_endpoint(b, &wep));
    CHECK_OK(zmws_broker_client_endpoint(b, &cep));
    CHECK_OK(zmws_worker_new(wep, "durable", 1, &w)); /* makes the service known */
    CHECK_OK(zmws_client_new(cep, &c));
    if (!wait_for_service(c, "durable"))
        return false;
    zmws_worker_free(w); /* no worker: the job stays queued */
    CHECK_OK(zmws_client_submit(c, "durable", (const uint8_t *)"keep me", 7, &id));
    zmws_client_free(c);
    CHECK_OK(zmws_broker_stop(b));
    CHECK_OK(zmws_broker_start(b)); /* restores the store; same config, new ports */
    {
        /* A second broker on the same directory is refused, naming the problem. */
        zmws_broker *second = NULL;
        CHECK_OK(zmws_broker_new(&second));
        CHECK_OK(zmws_broker_set_client_endpoint(second, "tcp://127.0.0.1:*"));
        CHECK_OK(zmws_broker_set_worker_endpoint(second, "tcp://127.0.0.1:*"));
        CHECK_OK(zmws_broker_set_news_endpoint(second, NULL));
        CHECK_OK(zmws_broker_set_data_dir(second, store));
        CHECK(zmws_broker_start(second) == ZMWS_IO);
        CHECK(strstr(zmws_last_error(), "in use by another broker") != NULL);
        zmws_broker_free(second);
    }
    zmws_string_free(cep);
    CHECK_OK(zmws_broker_client_endpoint(b, &cep));
    CHECK_OK(zmws_client_new(cep, &c));
    CHECK_OK(zmws_client_status(c, id, &json));
    CHECK(strstr(json, "\"state\":\"queued\"") != NULL);
    zmws_string_free(json);
    zmws_client_free(c);
    zmws_string_free(id);
    zmws_string_free(wep);
    zmws_string_free(cep);
    zmws_broker_free(b);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);

    /* A port in use is reported by start. */
    CHECK_OK(zmws_broker_new(&b));
    CHECK_OK(zmws_broker_set_client_endpoint(b, g_client_ep));
    CHECK_OK(zmws_broker_set_worker_endpoint(b, "tcp://127.0.0.1:*"));
    CHECK_OK(zmws_broker_set_news_endpoint(b, ""));
    CHECK_RC(zmws_broker_start(b), ZMWS_IO);
    CHECK(strstr(zmws_last_error(), "bind") != NULL);
    zmws_broker_free(b);
    zmws_broker_free(NULL);
    return true;
}

typedef struct {
    int count;
    char last[16];
    zmws_client *client; /* the client of the call, to try a nested call */
    int nested_rc;
} partials;

static void on_partial(void *user_data, const uint8_t *data, size_t len) {
    partials *p = user_data;
    p->count++;
    if (p->client) {
        /* Using the calling client from its own callback is refused, not a deadlock. */
        char *json = NULL;
        p->nested_rc = zmws_client_workers(p->client, &json);
        zmws_string_free(json);
    }
    size_t n = len < sizeof p->last - 1 ? len : sizeof p->last - 1;
    memcpy(p->last, data, n);
    p->last[n] = '\0';
}

static bool test_round_trip(void) {
    worker_thread wt;
    if (!start_worker(&wt, "str-rev", 1, str_rev))
        return false;
    zmws_client *c = NULL;
    CHECK_OK(zmws_client_new(g_client_ep, &c));
    uint8_t *result = NULL;
    size_t len = 0;
    CHECK_OK(zmws_client_call(c, "str-rev", (const uint8_t *)"Hello", 5, 10000 * g_slow, NULL, NULL,
                              &result, &len));
    CHECK(bytes_equal(result, len, "olleH"));
    CHECK(result[len] == '\0' && strcmp((char *)result, "olleH") == 0);
    zmws_buffer_free(result);

    /* Binary payload with NUL bytes survives both ways. */
    const uint8_t bin[4] = {0, 1, 0, 2};
    CHECK_OK(zmws_client_call(c, "str-rev", bin, 4, 10000 * g_slow, NULL, NULL, &result, &len));
    CHECK(len == 4 && result[0] == 2 && result[1] == 0 && result[2] == 1 && result[3] == 0);
    zmws_buffer_free(result);

    /* Empty payload, NULL pointer. */
    CHECK_OK(zmws_client_call(c, "str-rev", NULL, 0, 10000 * g_slow, NULL, NULL, &result, &len));
    CHECK(len == 0 && result != NULL);
    zmws_buffer_free(result);

    /* Partial replies reach the callback before the result. */
    partials p = {0, "", c, -1};
    CHECK_OK(zmws_client_call(c, "str-rev", (const uint8_t *)"progress:abc", 12, 10000 * g_slow,
                              on_partial, &p, &result, &len));
    CHECK(bytes_equal(result, len, "cba"));
    CHECK(p.count == 2 && strcmp(p.last, "2/2") == 0);
    CHECK_RC(p.nested_rc, ZMWS_INVALID_ARGUMENT);
    zmws_buffer_free(result);

    char *json = NULL;
    CHECK_OK(zmws_client_workers(c, &json));
    CHECK(json[0] == '[' && strstr(json, "\"service\":\"str-rev\"") != NULL);
    zmws_string_free(json);
    CHECK_OK(zmws_client_services(c, &json));
    CHECK(strstr(json, "str-rev") != NULL);
    zmws_string_free(json);
    char *ep = NULL;
    CHECK_OK(zmws_client_endpoint(c, &ep));
    CHECK(strcmp(ep, g_client_ep) == 0);
    zmws_string_free(ep);
    zmws_client_free(c);

    uint64_t done = 0;
    CHECK_OK(zmws_worker_jobs_done(wt.worker, &done));
    CHECK(done == 4);
    return stop_worker(&wt);
}

static bool test_async_status_result(void) {
    worker_thread wt;
    if (!start_worker(&wt, "str-rev-async", 2, str_rev))
        return false;
    zmws_client *c = NULL;
    CHECK_OK(zmws_client_new(g_client_ep, &c));
    char *id = NULL;
    CHECK_OK(zmws_client_submit(c, "str-rev-async", (const uint8_t *)"async payload", 13, &id));
    CHECK(strlen(id) == 32 && strspn(id, "0123456789abcdef") == 32);

    char *json = NULL;
    bool complete = false;
    int64_t deadline = now_ms() + 10000 * g_slow;
    for (int i = 0; i < 1000 && !complete && now_ms() < deadline; i++) {
        CHECK_OK(zmws_client_status(c, id, &json));
        CHECK(strstr(json, id) != NULL);
        complete = strstr(json, "\"state\":\"complete\"") != NULL;
        zmws_string_free(json);
        if (!complete)
            sleep_ms(10);
    }
    CHECK(complete);

    uint8_t *result = NULL;
    size_t len = 0;
    CHECK_OK(zmws_client_result(c, id, &result, &len));
    CHECK(bytes_equal(result, len, "daolyap cnysa"));
    zmws_buffer_free(result);

    CHECK_OK(zmws_client_jobs(c, "history", &json));
    CHECK(json[0] == '[' && strstr(json, id) != NULL);
    zmws_string_free(json);
    CHECK_OK(zmws_client_jobs(c, "queued", &json));
    CHECK(json[0] == '[');
    zmws_string_free(json);
    CHECK_RC(zmws_client_jobs(c, "everything", &json), ZMWS_INVALID_ARGUMENT);

    CHECK_RC(zmws_client_cancel(c, id), ZMWS_INVALID_ARGUMENT); /* already finished */
    zmws_string_free(id);

    /* Idempotency keys: the same key gives the same job. */
    char *id1 = NULL, *id2 = NULL, *id3 = NULL;
    CHECK_OK(zmws_client_submit_unique(c, "str-rev-async", (const uint8_t *)"once", 4, "key-1", &id1));
    CHECK_OK(zmws_client_submit_unique(c, "str-rev-async", (const uint8_t *)"once", 4, "key-1", &id2));
    CHECK_OK(zmws_client_submit_unique(c, "str-rev-async", (const uint8_t *)"once", 4, "key-2", &id3));
    CHECK(strcmp(id1, id2) == 0 && strcmp(id1, id3) != 0);
    CHECK_RC(zmws_client_submit_unique(c, "str-rev-async", NULL, 0, NULL, &id2), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_submit_unique(c, "str-rev-async", NULL, 0, "", &id2), ZMWS_INVALID_ARGUMENT);
    zmws_string_free(id1);
    zmws_string_free(id2);
    zmws_string_free(id3);

    const char *unknown = "0123456789abcdef0123456789abcdef";
    CHECK_RC(zmws_client_status(c, unknown, &json), ZMWS_NOT_FOUND);
    CHECK_RC(zmws_client_result(c, unknown, &result, &len), ZMWS_NOT_FOUND);
    CHECK_RC(zmws_client_cancel(c, unknown), ZMWS_NOT_FOUND);
    zmws_client_free(c);
    return stop_worker(&wt);
}

static bool test_unknown_service(void) {
    zmws_client *c = NULL;
    CHECK_OK(zmws_client_new(g_client_ep, &c));
    uint8_t *result = NULL;
    size_t len = 0;
    char *id = NULL;
    CHECK_RC(zmws_client_call(c, "no-such-service", (const uint8_t *)"x", 1, 5000 * g_slow, NULL, NULL,
                              &result, &len),
             ZMWS_NO_SUCH_SERVICE);
    CHECK(strstr(zmws_last_error(), "no-such-service") != NULL);
    CHECK_RC(zmws_client_submit(c, "no-such-service", (const uint8_t *)"x", 1, &id), ZMWS_NO_SUCH_SERVICE);
    bool available = true;
    CHECK_OK(zmws_client_service_available(c, "no-such-service", &available));
    CHECK(!available);
    zmws_client_free(c);
    return true;
}

/* A polling worker takes the job too late: the call times out. Also checks
 * the polling API (next_job, next_event, accessors, double answers). */
static bool test_timeout_and_polling(void) {
    zmws_worker *w = NULL;
    CHECK_OK(zmws_worker_new_with_heartbeat(g_worker_ep, "sleepy", 1, HEARTBEAT_MS, LIVENESS, &w));
    zmws_client *c = NULL;
    CHECK_OK(zmws_client_new(g_client_ep, &c));
    if (!wait_for_service(c, "sleepy"))
        return false;

    uint8_t *result = NULL;
    size_t len = 0;
    int64_t t0 = now_ms();
    CHECK_RC(zmws_client_call(c, "sleepy", (const uint8_t *)"zzz", 3, 300, NULL, NULL, &result, &len),
             ZMWS_TIMEOUT);
    int64_t took = now_ms() - t0;
    CHECK(took >= 250 && took < 5000 * g_slow);
    CHECK(result == NULL);

    zmws_job *job = NULL;
    CHECK_OK(zmws_worker_next_job(w, 5000 * g_slow, &job));
    const char *id = NULL;
    uint32_t attempt = 0;
    const uint8_t *payload = NULL;
    CHECK_OK(zmws_job_id(job, &id));
    CHECK(strlen(id) == 32);
    CHECK_OK(zmws_job_attempt(job, &attempt));
    CHECK(attempt == 1);
    CHECK_OK(zmws_job_payload(job, &payload, &len));
    CHECK(bytes_equal(payload, len, "zzz"));
    CHECK_OK(zmws_job_partial(job, (const uint8_t *)"half", 4));
    CHECK_OK(zmws_job_complete(job, (const uint8_t *)"late", 4));
    CHECK_RC(zmws_job_complete(job, (const uint8_t *)"again", 5), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_job_fail(job, "again", false), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_job_partial(job, (const uint8_t *)"x", 1), ZMWS_INVALID_ARGUMENT);
    zmws_job_free(job);

    /* The late reply is skipped by the next call on the same client. */
    job = NULL;
    CHECK_RC(zmws_worker_next_job(w, 100, &job), ZMWS_TIMEOUT);
    CHECK(job == NULL);

    /* A quiet spell is reported once as ZMWS_IDLE by next_event. */
    bool idle = false;
    int64_t deadline = now_ms() + 10000 * g_slow;
    for (int i = 0; i < 1000 && !idle && now_ms() < deadline; i++) {
        int rc = zmws_worker_next_event(w, 200, &job);
        CHECK(rc == ZMWS_TIMEOUT || rc == ZMWS_IDLE);
        idle = rc == ZMWS_IDLE;
    }
    CHECK(idle);

    CHECK_OK(zmws_worker_stop(w));
    CHECK_RC(zmws_worker_next_job(w, 1000, &job), ZMWS_CLOSED);
    CHECK_RC(zmws_worker_run(w, str_rev, NULL), ZMWS_OK); /* returns at once: stopped */
    zmws_worker_free(w);
    zmws_client_free(c);
    return true;
}

static void *blocked_poll(void *arg) {
    zmws_worker *w = arg;
    zmws_job *job = NULL;
    int rc = zmws_worker_next_job(w, 60000, &job);
    if (rc == ZMWS_OK)
        zmws_job_free(job);
    return (void *)(intptr_t)rc;
}

/* In the child of a fork(), inherited handles answer ZMWS_CLOSED naming
 * fork() and freeing them returns at once (their threads live in the
 * parent); the parent's handles keep working. */
static bool test_fork(void) {
    if (g_slow > 1) {
        /* Under valgrind the child's exit check reports everything only the
         * parent's threads pointed to as lost: memcheck is for the parent. */
        fprintf(stderr, "    (test_fork skipped under valgrind)\n");
        return true;
    }
    worker_thread wt;
    if (!start_worker(&wt, "str-rev-fork", 1, str_rev))
        return false;
    zmws_client *c = NULL;
    CHECK_OK(zmws_client_new(g_client_ep, &c));
    zmws_worker *idle = NULL;
    CHECK_OK(zmws_worker_new(g_worker_ep, "fork-idle", 1, &idle));
    char *id = NULL;
    CHECK_OK(zmws_client_submit(c, "str-rev-fork", (const uint8_t *)"before", 6, &id));
    zmws_string_free(id);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int bad = 0;
        if (zmws_client_submit(c, "str-rev-fork", (const uint8_t *)"x", 1, &id) != ZMWS_CLOSED ||
            !strstr(zmws_last_error(), "fork"))
            bad |= 1;
        zmws_job *job = NULL;
        if (zmws_worker_next_job(idle, 10, &job) != ZMWS_CLOSED || !strstr(zmws_last_error(), "fork"))
            bad |= 2;
        zmws_client_free(c); /* releases nothing here, returns at once */
        zmws_worker_free(idle);
        _exit(bad);
    }
    int status = 0;
    int64_t deadline = now_ms() + 30000 * g_slow;
    pid_t got = 0;
    while ((got = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
        sleep_ms(20);
    if (got == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        FAIL("the forked child hung freeing inherited handles");
    }
    CHECK(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
        FAIL("checks failed in the forked child: mask %d (1 client, 2 worker)", WEXITSTATUS(status));
    uint8_t *result = NULL;
    size_t len = 0;
    CHECK_OK(zmws_client_call(c, "str-rev-fork", (const uint8_t *)"after", 5, 10000 * g_slow, NULL, NULL, &result, &len));
    CHECK(bytes_equal(result, len, "retfa"));
    zmws_buffer_free(result);
    zmws_worker_free(idle);
    zmws_client_free(c);
    return stop_worker(&wt);
}

/* zmws_worker_stop from another thread wakes a blocked poll promptly. */
static bool test_stop_wakes_poll(void) {
    zmws_worker *w = NULL;
    CHECK_OK(zmws_worker_new(g_worker_ep, "stoppable", 1, &w));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, blocked_poll, w) == 0);
    sleep_ms(100);
    int64_t t0 = now_ms();
    CHECK_OK(zmws_worker_stop(w));
    void *ret = NULL;
    pthread_join(t, &ret);
    CHECK((int)(intptr_t)ret == ZMWS_CLOSED);
    CHECK(now_ms() - t0 < 2000 * g_slow);
    zmws_worker_free(w);
    return true;
}

static bool test_invalid_arguments(void) {
    zmws_client *c = NULL;
    zmws_worker *w = NULL;
    zmws_broker *b = NULL;
    uint8_t *result = NULL;
    size_t len = 0;
    char *text = NULL;
    const char bad_utf8[] = {'s', (char)0xff, (char)0xfe, 0};
    const char bad_utf8_2[] = {(char)0xc3, (char)0x28, 0};

    CHECK_RC(zmws_client_new(NULL, &c), ZMWS_INVALID_ARGUMENT);
    CHECK(strstr(zmws_last_error(), "endpoints") != NULL);
    CHECK_RC(zmws_client_new(g_client_ep, NULL), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_new(bad_utf8, &c), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_new("", &c), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_new(" , ", &c), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_new("not-an-endpoint", &c), ZMWS_INVALID_ARGUMENT);
    CHECK(c == NULL);
    CHECK_OK(zmws_client_new(g_client_ep, &c));

    CHECK_RC(zmws_client_call(NULL, "str-rev", NULL, 0, 100, NULL, NULL, &result, &len),
             ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_call(c, NULL, NULL, 0, 100, NULL, NULL, &result, &len), ZMWS_INVALID_ARGUMENT);
    CHECK(strstr(zmws_last_error(), "service") != NULL);
    CHECK_RC(zmws_client_call(c, bad_utf8, NULL, 0, 100, NULL, NULL, &result, &len),
             ZMWS_INVALID_ARGUMENT);
    CHECK(strstr(zmws_last_error(), "UTF-8") != NULL);
    CHECK_RC(zmws_client_call(c, "", NULL, 0, 100, NULL, NULL, &result, &len), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_call(c, "str-rev", NULL, 5, 100, NULL, NULL, &result, &len),
             ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_call(c, "str-rev", NULL, 0, 100, NULL, NULL, NULL, &len), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_call(c, "str-rev", NULL, 0, 100, NULL, NULL, &result, NULL),
             ZMWS_INVALID_ARGUMENT);
    CHECK(result == NULL);
    CHECK_RC(zmws_client_submit(c, bad_utf8_2, NULL, 0, &text), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_submit(c, "str-rev", NULL, 0, NULL), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_status(c, NULL, &text), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_status(c, bad_utf8, &text), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_result(c, NULL, &result, &len), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_cancel(c, NULL), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_jobs(c, NULL, &text), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_workers(c, NULL), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_workers(NULL, &text), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_service_available(c, NULL, NULL), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_set_request_timeout(c, 0), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_set_request_timeout(NULL, 10), ZMWS_INVALID_ARGUMENT);
    zmws_batch *batch = NULL;
    size_t lens[1] = {1};
    CHECK_RC(zmws_client_batch(c, "str-rev", NULL, lens, 1, 100, &batch), ZMWS_INVALID_ARGUMENT);
    const uint8_t *ptrs[1] = {NULL};
    CHECK_RC(zmws_client_batch(c, "str-rev", ptrs, lens, 1, 100, &batch), ZMWS_INVALID_ARGUMENT);
    CHECK(strstr(zmws_last_error(), "payloads[0]") != NULL);
    CHECK_RC(zmws_client_batch(c, NULL, ptrs, lens, 0, 100, &batch), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_batch_count(NULL, &len), ZMWS_INVALID_ARGUMENT);
    CHECK(batch == NULL);
    /* An empty batch is fine. */
    CHECK_OK(zmws_client_batch(c, "str-rev", NULL, NULL, 0, 100, &batch));
    CHECK_OK(zmws_batch_count(batch, &len));
    CHECK(len == 0);
    const uint8_t *data = NULL;
    CHECK_RC(zmws_batch_result(batch, 0, &data, &len), ZMWS_INVALID_ARGUMENT);
    zmws_batch_free(batch);
    zmws_client_free(c);

    CHECK_RC(zmws_worker_new(NULL, "svc", 1, &w), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_worker_new(g_worker_ep, NULL, 1, &w), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_worker_new(g_worker_ep, bad_utf8_2, 1, &w), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_worker_new(g_worker_ep, "", 1, &w), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_worker_new(g_worker_ep, "svc", 0, &w), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_worker_new(g_worker_ep, "svc", 1, NULL), ZMWS_INVALID_ARGUMENT);
    CHECK(w == NULL);
    zmws_job *job = NULL;
    CHECK_RC(zmws_worker_next_job(NULL, 10, &job), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_worker_run(NULL, str_rev, NULL), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_worker_stop(NULL), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_worker_jobs_done(NULL, NULL), ZMWS_INVALID_ARGUMENT);
    CHECK_OK(zmws_worker_new(g_worker_ep, "svc-invalid", 1, &w));
    CHECK_RC(zmws_worker_run(w, NULL, NULL), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_worker_next_job(w, 10, NULL), ZMWS_INVALID_ARGUMENT);
    zmws_worker_free(w);

    const char *id = NULL;
    uint32_t attempt = 0;
    const uint8_t *payload = NULL;
    CHECK_RC(zmws_job_id(NULL, &id), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_job_attempt(NULL, &attempt), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_job_payload(NULL, &payload, &len), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_job_complete(NULL, NULL, 0), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_job_fail(NULL, "x", false), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_job_partial(NULL, NULL, 0), ZMWS_INVALID_ARGUMENT);

    CHECK_RC(zmws_broker_new(NULL), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_broker_start(NULL), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_broker_stop(NULL), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_broker_set_client_endpoint(NULL, "tcp://127.0.0.1:*"), ZMWS_INVALID_ARGUMENT);
    CHECK_OK(zmws_broker_new(&b));
    CHECK_RC(zmws_broker_set_client_endpoint(b, NULL), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_broker_set_worker_endpoint(b, bad_utf8), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_broker_set_news_endpoint(b, bad_utf8), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_broker_client_endpoint(b, NULL), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_broker_set_client_endpoint(b, "nonsense://x"), ZMWS_OK); /* checked at start */
    CHECK_OK(zmws_broker_set_news_endpoint(b, NULL));
    CHECK(zmws_broker_start(b) != ZMWS_OK);
    zmws_broker_free(b);
    CHECK_RC(zmws_log_init(bad_utf8), ZMWS_INVALID_ARGUMENT);

    /* Every free function takes NULL. */
    zmws_client_free(NULL);
    zmws_worker_free(NULL);
    zmws_job_free(NULL);
    zmws_batch_free(NULL);
    zmws_string_free(NULL);
    zmws_buffer_free(NULL);
    return true;
}

static bool test_failing_worker(void) {
    worker_thread wt, wf, wl;
    if (!start_worker(&wt, "always-fail", 1, always_fail))
        return false;
    if (!start_worker(&wf, "forgetful", 1, forget_to_answer))
        return false;
    if (!start_worker(&wl, "flaky", 1, flaky))
        return false;
    zmws_client *c = NULL;
    CHECK_OK(zmws_client_new(g_client_ep, &c));
    uint8_t *result = NULL;
    size_t len = 0;
    CHECK_RC(zmws_client_call(c, "always-fail", (const uint8_t *)"x", 1, 10000 * g_slow, NULL, NULL,
                              &result, &len),
             ZMWS_JOB_FAILED);
    CHECK(strstr(zmws_last_error(), "boom: cannot handle this input") != NULL);
    CHECK(result == NULL);

    /* Async: the failure reason comes back from zmws_client_result too. */
    char *id = NULL;
    CHECK_OK(zmws_client_submit(c, "always-fail", (const uint8_t *)"y", 1, &id));
    int rc = ZMWS_PENDING;
    int64_t deadline = now_ms() + 10000 * g_slow;
    for (int i = 0; i < 1000 && rc == ZMWS_PENDING && now_ms() < deadline; i++) {
        rc = zmws_client_result(c, id, &result, &len);
        if (rc == ZMWS_PENDING)
            sleep_ms(10);
    }
    CHECK_RC(rc, ZMWS_JOB_FAILED);
    CHECK(strstr(zmws_last_error(), "boom") != NULL);
    zmws_string_free(id);

    CHECK_RC(zmws_client_call(c, "forgetful", (const uint8_t *)"x", 1, 10000 * g_slow, NULL, NULL,
                              &result, &len),
             ZMWS_JOB_FAILED);
    CHECK(strstr(zmws_last_error(), "returned 42") != NULL);

    CHECK_OK(zmws_client_call(c, "flaky", (const uint8_t *)"x", 1, 10000 * g_slow, NULL, NULL, &result,
                              &len));
    CHECK(bytes_equal(result, len, "ok on attempt 2"));
    zmws_buffer_free(result);
    zmws_client_free(c);
    return stop_worker(&wt) && stop_worker(&wf) && stop_worker(&wl);
}

static bool test_cancel(void) {
    zmws_worker *w = NULL;
    CHECK_OK(zmws_worker_new_with_heartbeat(g_worker_ep, "held", 1, HEARTBEAT_MS, LIVENESS, &w));
    zmws_client *c = NULL;
    CHECK_OK(zmws_client_new(g_client_ep, &c));
    if (!wait_for_service(c, "held"))
        return false;
    char *id = NULL;
    char *json = NULL;
    CHECK_OK(zmws_client_submit(c, "held", (const uint8_t *)"never mind", 10, &id));
    CHECK_OK(zmws_client_cancel(c, id));
    CHECK_OK(zmws_client_cancel(c, id)); /* idempotent */
    CHECK_OK(zmws_client_status(c, id, &json));
    CHECK(strstr(json, "\"state\":\"cancelled\"") != NULL);
    zmws_string_free(json);
    uint8_t *result = NULL;
    size_t len = 0;
    CHECK_RC(zmws_client_result(c, id, &result, &len), ZMWS_JOB_FAILED);
    zmws_string_free(id);
    zmws_client_free(c);
    /* The worker may have received the job before the cancel: drain it. */
    zmws_job *job = NULL;
    if (zmws_worker_next_job(w, 200, &job) == ZMWS_OK)
        zmws_job_free(job);
    zmws_worker_free(w);
    return true;
}

static bool test_failover(void) {
    worker_thread wt;
    if (!start_worker(&wt, "str-rev-failover", 1, str_rev))
        return false;
    /* The first endpoint has no broker: requests move on to the second. */
    char endpoints[256];
    snprintf(endpoints, sizeof endpoints, "tcp://127.0.0.1:1,%s", g_client_ep);
    zmws_client *c = NULL;
    CHECK_OK(zmws_client_new(endpoints, &c));
    CHECK_OK(zmws_client_set_request_timeout(c, 300));
    char *id = NULL;
    CHECK_OK(zmws_client_submit(c, "str-rev-failover", (const uint8_t *)"abc", 3, &id));
    zmws_string_free(id);
    char *ep = NULL;
    CHECK_OK(zmws_client_endpoint(c, &ep));
    CHECK(strcmp(ep, g_client_ep) == 0);
    zmws_string_free(ep);
    zmws_client_free(c);
    return stop_worker(&wt);
}

static void *error_on_other_thread(void *arg) {
    (void)arg;
    /* A fresh thread starts with an empty last error. */
    return (void *)(intptr_t)(strcmp(zmws_last_error(), "") == 0);
}

static bool test_last_error_is_per_thread(void) {
    CHECK_RC(zmws_client_new(NULL, NULL), ZMWS_INVALID_ARGUMENT);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, error_on_other_thread, NULL) == 0);
    void *ret = NULL;
    pthread_join(t, &ret);
    CHECK((intptr_t)ret == 1);
    CHECK(strlen(zmws_last_error()) > 0);
    return true;
}

static bool test_batch(void) {
    size_t n = 10000;
    const char *env = getenv("ZMWS_TEST_BATCH");
    if (env && atol(env) > 0)
        n = (size_t)atol(env);
    worker_thread wt;
    if (!start_worker(&wt, "str-rev-batch", 64, str_rev))
        return false;

    char (*texts)[16] = calloc(n, sizeof *texts);
    const uint8_t **ptrs = calloc(n, sizeof *ptrs);
    size_t *lens = calloc(n, sizeof *lens);
    CHECK(texts && ptrs && lens);
    for (size_t i = 0; i < n; i++) {
        lens[i] = (size_t)snprintf(texts[i], sizeof texts[i], "job-%06zu", i);
        ptrs[i] = (const uint8_t *)texts[i];
    }
    zmws_client *c = NULL;
    CHECK_OK(zmws_client_new(g_client_ep, &c));
    zmws_batch *batch = NULL;
    int64_t t0 = now_ms();
    CHECK_OK(zmws_client_batch(c, "str-rev-batch", ptrs, lens, n, 120000 * (uint64_t)g_slow, &batch));
    int64_t took = now_ms() - t0;
    size_t count = 0, failed = 1;
    CHECK_OK(zmws_batch_count(batch, &count));
    CHECK(count == n);
    CHECK_OK(zmws_batch_failed(batch, &failed));
    CHECK(failed == 0);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *data = NULL;
        size_t len = 0;
        CHECK_OK(zmws_batch_result(batch, i, &data, &len));
        if (len != lens[i])
            FAIL("item %zu: length %zu, expected %zu", i, len, lens[i]);
        for (size_t k = 0; k < len; k++)
            if (data[k] != (uint8_t)texts[i][len - 1 - k])
                FAIL("item %zu: result out of order or wrong", i);
    }
    const uint8_t *data = NULL;
    size_t len = 0;
    CHECK_RC(zmws_batch_result(batch, n, &data, &len), ZMWS_INVALID_ARGUMENT);
    zmws_batch_free(batch);
    fprintf(stderr, "    batch of %zu jobs in %lld ms\n", n, (long long)took);

    /* A batch to an unknown service: every slot carries the error. */
    CHECK_OK(zmws_client_batch(c, "no-such-batch-service", ptrs, lens, 3, 10000 * (uint64_t)g_slow, &batch));
    CHECK_OK(zmws_batch_failed(batch, &failed));
    CHECK(failed == 3);
    CHECK_RC(zmws_batch_result(batch, 1, &data, &len), ZMWS_NO_SUCH_SERVICE);
    zmws_batch_free(batch);

    zmws_client_free(c);
    free(texts);
    free(ptrs);
    free(lens);
    return stop_worker(&wt);
}

/* Waits (bounded) for the result of job `id` and compares it with `want`. */
static bool wait_result(zmws_client *c, const char *id, const char *want) {
    int64_t deadline = now_ms() + 20000 * g_slow;
    for (;;) {
        uint8_t *result = NULL;
        size_t len = 0;
        int rc = zmws_client_result(c, id, &result, &len);
        if (rc == ZMWS_OK) {
            bool same = bytes_equal(result, len, want);
            zmws_buffer_free(result);
            if (!same)
                FAIL("job %s: wrong result (expected '%s')", id, want);
            return true;
        }
        if (rc != ZMWS_PENDING)
            FAIL("job %s: %s (%s)", id, zmws_code_name(rc), zmws_last_error());
        if (now_ms() >= deadline)
            FAIL("job %s did not finish in time", id);
        sleep_ms(5);
    }
}

static bool is_job_id(const char *id) {
    return strlen(id) == 32 && strspn(id, "0123456789abcdef") == 32;
}

static int compare_ids(const void *a, const void *b) {
    return memcmp(a, b, ZMWS_JOB_ID_SIZE);
}

static bool test_submit_batch(void) {
    worker_thread wt;
    if (!start_worker(&wt, "str-rev-sbatch", 8, str_rev))
        return false;
    zmws_client *c = NULL;
    CHECK_OK(zmws_client_new(g_client_ep, &c));

    /* A few jobs, one of them empty (NULL pointer, length 0). */
    const char *texts[] = {"first", "second", "", "fourth", "fifth job"};
    const char *reversed[] = {"tsrif", "dnoces", "", "htruof", "boj htfif"};
    enum { N = 5 };
    const uint8_t *ptrs[N];
    size_t lens[N];
    for (size_t i = 0; i < N; i++) {
        lens[i] = strlen(texts[i]);
        ptrs[i] = lens[i] ? (const uint8_t *)texts[i] : NULL;
    }
    char ids[N * ZMWS_JOB_ID_SIZE];
    CHECK_OK(zmws_client_submit_batch(c, "str-rev-sbatch", ptrs, lens, N, ids, sizeof ids));
    for (size_t i = 0; i < N; i++) {
        const char *id = ids + i * ZMWS_JOB_ID_SIZE;
        CHECK(is_job_id(id));
        for (size_t k = 0; k < i; k++)
            CHECK(strcmp(id, ids + k * ZMWS_JOB_ID_SIZE) != 0);
    }
    /* Ids in input order: job i ran payload i. */
    for (size_t i = 0; i < N; i++)
        if (!wait_result(c, ids + i * ZMWS_JOB_ID_SIZE, reversed[i]))
            return false;
    char *json = NULL;
    CHECK_OK(zmws_client_status(c, ids, &json));
    CHECK(strstr(json, "\"service\":\"str-rev-sbatch\"") != NULL);
    zmws_string_free(json);

    /* A larger buffer than needed is fine; nothing is written past the ids. */
    char roomy[2 * ZMWS_JOB_ID_SIZE + 8];
    memset(roomy, '#', sizeof roomy);
    CHECK_OK(zmws_client_submit_batch(c, "str-rev-sbatch", ptrs, lens, 2, roomy, sizeof roomy));
    CHECK(is_job_id(roomy) && is_job_id(roomy + ZMWS_JOB_ID_SIZE));
    for (size_t k = 2 * ZMWS_JOB_ID_SIZE; k < sizeof roomy; k++)
        CHECK(roomy[k] == '#');
    CHECK(wait_result(c, roomy, "tsrif") && wait_result(c, roomy + ZMWS_JOB_ID_SIZE, "dnoces"));

    /* A big batch (ZMWS_TEST_BATCH, at most ZMWS_MAX_SUBMIT_BATCH). */
    size_t n = ZMWS_MAX_SUBMIT_BATCH;
    const char *env = getenv("ZMWS_TEST_BATCH");
    if (env && atol(env) > 0)
        n = (size_t)atol(env);
    if (n > ZMWS_MAX_SUBMIT_BATCH)
        n = ZMWS_MAX_SUBMIT_BATCH;
    char (*big)[16] = calloc(n, sizeof *big);
    const uint8_t **bptrs = calloc(n, sizeof *bptrs);
    size_t *blens = calloc(n, sizeof *blens);
    char *bids = malloc(n * ZMWS_JOB_ID_SIZE);
    char *sorted = malloc(n * ZMWS_JOB_ID_SIZE);
    CHECK(big && bptrs && blens && bids && sorted);
    for (size_t i = 0; i < n; i++) {
        blens[i] = (size_t)snprintf(big[i], sizeof big[i], "sb-%06zu", i);
        bptrs[i] = (const uint8_t *)big[i];
    }
    int64_t t0 = now_ms();
    CHECK_OK(zmws_client_submit_batch(c, "str-rev-sbatch", bptrs, blens, n, bids, n * ZMWS_JOB_ID_SIZE));
    int64_t took = now_ms() - t0;
    memcpy(sorted, bids, n * ZMWS_JOB_ID_SIZE);
    qsort(sorted, n, ZMWS_JOB_ID_SIZE, compare_ids);
    for (size_t i = 0; i < n; i++) {
        CHECK(is_job_id(bids + i * ZMWS_JOB_ID_SIZE));
        if (i > 0 && compare_ids(sorted + (i - 1) * ZMWS_JOB_ID_SIZE, sorted + i * ZMWS_JOB_ID_SIZE) == 0)
            FAIL("duplicate job id %s", sorted + i * ZMWS_JOB_ID_SIZE);
    }
    for (size_t i = 0; i < n; i++) {
        char want[16];
        size_t len = blens[i];
        for (size_t k = 0; k < len; k++)
            want[k] = big[i][len - 1 - k];
        want[len] = 0;
        if (!wait_result(c, bids + i * ZMWS_JOB_ID_SIZE, want))
            FAIL("item %zu of the big batch", i);
    }
    fprintf(stderr, "    submit_batch of %zu jobs accepted in %lld ms\n", n, (long long)took);
    free(big);
    free(bptrs);
    free(blens);
    free(bids);
    free(sorted);

    /* Errors leave the output buffer untouched. */
    char untouched[N * ZMWS_JOB_ID_SIZE];
    memset(untouched, '#', sizeof untouched);
    CHECK_RC(zmws_client_submit_batch(c, "no-such-sbatch-service", ptrs, lens, N, untouched, sizeof untouched),
             ZMWS_NO_SUCH_SERVICE);
    CHECK(strstr(zmws_last_error(), "no-such-sbatch-service") != NULL);
    CHECK_RC(zmws_client_submit_batch(NULL, "str-rev-sbatch", ptrs, lens, N, untouched, sizeof untouched),
             ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_submit_batch(c, NULL, ptrs, lens, N, untouched, sizeof untouched),
             ZMWS_INVALID_ARGUMENT);
    CHECK(strstr(zmws_last_error(), "service") != NULL);
    CHECK_RC(zmws_client_submit_batch(c, "", ptrs, lens, N, untouched, sizeof untouched), ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_submit_batch(c, "str-rev-sbatch", NULL, lens, N, untouched, sizeof untouched),
             ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_submit_batch(c, "str-rev-sbatch", ptrs, NULL, N, untouched, sizeof untouched),
             ZMWS_INVALID_ARGUMENT);
    CHECK_RC(zmws_client_submit_batch(c, "str-rev-sbatch", ptrs, lens, N, NULL, sizeof untouched),
             ZMWS_INVALID_ARGUMENT);
    CHECK(strstr(zmws_last_error(), "job_ids_out") != NULL);
    CHECK_RC(zmws_client_submit_batch(c, "str-rev-sbatch", ptrs, lens, N, untouched, sizeof untouched - 1),
             ZMWS_INVALID_ARGUMENT);
    CHECK(strstr(zmws_last_error(), "job_ids_size") != NULL);
    /* A NULL payload pointer is allowed only with length 0. */
    const uint8_t *holes[2] = {(const uint8_t *)"ok", NULL};
    size_t hole_lens[2] = {2, 3};
    CHECK_RC(zmws_client_submit_batch(c, "str-rev-sbatch", holes, hole_lens, 2, untouched, sizeof untouched),
             ZMWS_INVALID_ARGUMENT);
    CHECK(strstr(zmws_last_error(), "payloads[1]") != NULL);
    for (size_t k = 0; k < sizeof untouched; k++)
        CHECK(untouched[k] == '#');

    /* More than ZMWS_MAX_SUBMIT_BATCH payloads. */
    size_t too_many = ZMWS_MAX_SUBMIT_BATCH + 1;
    const uint8_t **zptrs = calloc(too_many, sizeof *zptrs);
    size_t *zlens = calloc(too_many, sizeof *zlens);
    char *zids = malloc(too_many * ZMWS_JOB_ID_SIZE);
    CHECK(zptrs && zlens && zids);
    CHECK_RC(zmws_client_submit_batch(c, "str-rev-sbatch", zptrs, zlens, too_many, zids,
                                      too_many * ZMWS_JOB_ID_SIZE),
             ZMWS_INVALID_ARGUMENT);
    CHECK(strstr(zmws_last_error(), "at most") != NULL);
    free(zptrs);
    free(zlens);
    free(zids);

    /* count 0: nothing to do, NULL arrays and buffer are fine; the service is still checked. */
    CHECK_OK(zmws_client_submit_batch(c, "str-rev-sbatch", NULL, NULL, 0, NULL, 0));
    CHECK_OK(zmws_client_submit_batch(c, "never-offered-but-empty", NULL, NULL, 0, NULL, 0));
    CHECK_RC(zmws_client_submit_batch(c, NULL, NULL, NULL, 0, NULL, 0), ZMWS_INVALID_ARGUMENT);
    zmws_client_free(c);
    return stop_worker(&wt);
}

/* A broker of its own with small limits: a batch is accepted whole or not at all. */
static bool test_submit_batch_limits(void) {
    zmws_broker *b = NULL;
    char *client_ep = NULL, *worker_ep = NULL;
    CHECK_OK(zmws_broker_new(&b));
    CHECK_OK(zmws_broker_set_client_endpoint(b, "tcp://127.0.0.1:*"));
    CHECK_OK(zmws_broker_set_worker_endpoint(b, "tcp://127.0.0.1:*"));
    CHECK_OK(zmws_broker_set_news_endpoint(b, NULL));
    CHECK_OK(zmws_broker_set_heartbeat_ms(b, HEARTBEAT_MS));
    CHECK_OK(zmws_broker_set_liveness(b, LIVENESS));
    CHECK_OK(zmws_broker_set_max_queued(b, 3));
    CHECK_OK(zmws_broker_set_max_payload(b, 8));
    CHECK_OK(zmws_broker_start(b));
    CHECK_OK(zmws_broker_client_endpoint(b, &client_ep));
    CHECK_OK(zmws_broker_worker_endpoint(b, &worker_ep));

    /* A worker offers the service once and leaves: jobs then wait in the queue. */
    zmws_client *c = NULL;
    CHECK_OK(zmws_client_new(client_ep, &c));
    zmws_worker *w = NULL;
    CHECK_OK(zmws_worker_new_with_heartbeat(worker_ep, "limited", 1, HEARTBEAT_MS, LIVENESS, &w));
    if (!wait_for_service(c, "limited"))
        return false;
    zmws_worker_free(w);
    bool gone = false;
    int64_t deadline = now_ms() + 10000 * g_slow;
    while (!gone && now_ms() < deadline) {
        bool available = true;
        CHECK_OK(zmws_client_service_available(c, "limited", &available));
        gone = !available;
        if (!gone)
            sleep_ms(20);
    }
    CHECK(gone);

    const uint8_t *ptrs[4] = {(const uint8_t *)"a", (const uint8_t *)"b", (const uint8_t *)"c",
                              (const uint8_t *)"d"};
    size_t lens[4] = {1, 1, 1, 1};
    char ids[4 * ZMWS_JOB_ID_SIZE];
    char *json = NULL;
    /* 4 jobs do not fit in a queue of 3: none is queued. */
    CHECK_RC(zmws_client_submit_batch(c, "limited", ptrs, lens, 4, ids, sizeof ids), ZMWS_QUEUE_FULL);
    CHECK_OK(zmws_client_jobs(c, "queued", &json));
    CHECK(strcmp(json, "[]") == 0);
    zmws_string_free(json);
    /* One payload over the limit refuses the whole batch. */
    const uint8_t *big[2] = {(const uint8_t *)"a", (const uint8_t *)"123456789"};
    size_t big_lens[2] = {1, 9};
    CHECK_RC(zmws_client_submit_batch(c, "limited", big, big_lens, 2, ids, sizeof ids), ZMWS_TOO_LARGE);
    CHECK_OK(zmws_client_jobs(c, "queued", &json));
    CHECK(strcmp(json, "[]") == 0);
    zmws_string_free(json);
    /* 3 fit. */
    CHECK_OK(zmws_client_submit_batch(c, "limited", ptrs, lens, 3, ids, sizeof ids));
    CHECK_OK(zmws_client_jobs(c, "queued", &json));
    for (size_t i = 0; i < 3; i++)
        CHECK(strstr(json, ids + i * ZMWS_JOB_ID_SIZE) != NULL);
    zmws_string_free(json);
    CHECK_RC(zmws_client_submit_batch(c, "limited", ptrs, lens, 1, ids, sizeof ids), ZMWS_QUEUE_FULL);

    zmws_client_free(c);
    CHECK_OK(zmws_broker_stop(b));
    zmws_broker_free(b);
    zmws_string_free(client_ep);
    zmws_string_free(worker_ep);
    return true;
}

/* ------------------------------------------------------------ main */

typedef struct {
    const char *name;
    bool (*run)(void);
} test_case;

int main(int argc, char **argv) {
    const char *only = argc > 1 ? argv[1] : NULL;
    const char *slow = getenv("ZMWS_TEST_SLOW");
    if (slow && *slow && strcmp(slow, "0") != 0)
        g_slow = 4;

    zmws_broker *broker = NULL;
    if (zmws_broker_new(&broker) != ZMWS_OK ||
        zmws_broker_set_client_endpoint(broker, "tcp://127.0.0.1:*") != ZMWS_OK ||
        zmws_broker_set_worker_endpoint(broker, "tcp://127.0.0.1:*") != ZMWS_OK ||
        zmws_broker_set_news_endpoint(broker, NULL) != ZMWS_OK ||
        zmws_broker_set_heartbeat_ms(broker, HEARTBEAT_MS) != ZMWS_OK ||
        zmws_broker_set_liveness(broker, LIVENESS) != ZMWS_OK || zmws_broker_start(broker) != ZMWS_OK ||
        zmws_broker_client_endpoint(broker, &g_client_ep) != ZMWS_OK ||
        zmws_broker_worker_endpoint(broker, &g_worker_ep) != ZMWS_OK) {
        fprintf(stderr, "cannot start the test broker: %s\n", zmws_last_error());
        zmws_broker_free(broker);
        return 1;
    }
    fprintf(stderr, "zmws %s, broker: clients %s, workers %s\n", zmws_version(), g_client_ep, g_worker_ep);

    const test_case tests[] = {
        {"version_and_codes", test_version_and_codes},
        {"broker_lifecycle", test_broker_lifecycle},
        {"invalid_arguments", test_invalid_arguments},
        {"last_error_is_per_thread", test_last_error_is_per_thread},
        {"round_trip", test_round_trip},
        {"async_status_result", test_async_status_result},
        {"unknown_service", test_unknown_service},
        {"timeout_and_polling", test_timeout_and_polling},
        {"stop_wakes_poll", test_stop_wakes_poll},
        {"fork", test_fork},
        {"failing_worker", test_failing_worker},
        {"cancel", test_cancel},
        {"failover", test_failover},
        {"batch", test_batch},
        {"submit_batch", test_submit_batch},
        {"submit_batch_limits", test_submit_batch_limits},
    };
    int failures = 0, ran = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (only && !strstr(tests[i].name, only))
            continue;
        ran++;
        int64_t t0 = now_ms();
        bool ok = tests[i].run();
        fprintf(stderr, "%s test_%s (%lld ms)\n", ok ? "ok  " : "FAIL", tests[i].name,
                (long long)(now_ms() - t0));
        if (!ok)
            failures++;
    }
    int rc = zmws_broker_stop(broker);
    if (rc != ZMWS_OK) {
        fprintf(stderr, "broker stop: %s: %s\n", zmws_code_name(rc), zmws_last_error());
        failures++;
    }
    zmws_broker_free(broker);
    zmws_string_free(g_client_ep);
    zmws_string_free(g_worker_ep);
    fprintf(stderr, "%d of %d C tests passed\n", ran - failures, ran);
    return failures == 0 && ran > 0 ? 0 : 1;
}
