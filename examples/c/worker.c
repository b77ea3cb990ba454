/*
 * A STR-REV worker: answers every job with its text reversed. A payload of
 * the form {"str":"Hello"} is answered as {"str":"olleH"}; any other payload
 * is reversed whole. Reversal is by UTF-8 character, not by byte.
 *
 *   worker [worker-endpoint [service]]
 *
 * Defaults: tcp://127.0.0.1:5556 and STR-REV. SIGINT or SIGTERM stop it
 * (zmws_worker_stop is safe to call from a signal handler).
 */
#define _POSIX_C_SOURCE 200809L

#include <zmws.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static zmws_worker *g_worker;

static void on_signal(int sig) {
    (void)sig;
    zmws_worker_stop(g_worker);
}

/* Writes the UTF-8 characters of in[0..len) into out in reverse order. */
static void reverse_utf8(const uint8_t *in, size_t len, uint8_t *out) {
    size_t i = 0;
    while (i < len) {
        size_t n = 1;
        while (i + n < len && (in[i + n] & 0xC0) == 0x80)
            n++; /* continuation bytes belong to this character */
        memcpy(out + len - i - n, in + i, n);
        i += n;
    }
}

/* Finds the value of "str" in a flat JSON object {"str":"..."} without
 * escapes; returns false for anything else. */
static bool find_str_field(const uint8_t *p, size_t len, size_t *start, size_t *end) {
    const char *key = "\"str\"";
    size_t klen = strlen(key), i = 0;
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    if (i >= len || p[i] != '{')
        return false;
    for (i++; i + klen <= len; i++) {
        if (memcmp(p + i, key, klen) != 0)
            continue;
        size_t j = i + klen;
        while (j < len && p[j] == ' ')
            j++;
        if (j >= len || p[j] != ':')
            return false;
        j++;
        while (j < len && p[j] == ' ')
            j++;
        if (j >= len || p[j] != '"')
            return false;
        size_t s = ++j;
        while (j < len && p[j] != '"') {
            if (p[j] == '\\')
                return false;
            j++;
        }
        if (j >= len)
            return false;
        *start = s;
        *end = j;
        return true;
    }
    return false;
}

static int str_rev(void *user_data, zmws_job *job) {
    unsigned long *count = user_data;
    const uint8_t *payload;
    size_t len, start = 0, end = 0;
    int rc = zmws_job_payload(job, &payload, &len);
    if (rc != ZMWS_OK)
        return rc;
    uint8_t *out = malloc(len + 1);
    if (out == NULL)
        return zmws_job_fail(job, "out of memory", true);
    if (find_str_field(payload, len, &start, &end)) {
        memcpy(out, payload, len); /* keep the JSON around the value */
        reverse_utf8(payload + start, end - start, out + start);
    } else {
        reverse_utf8(payload, len, out);
    }
    rc = zmws_job_complete(job, out, len);
    free(out);
    (*count)++;
    return rc;
}

int main(int argc, char **argv) {
    const char *endpoint = argc > 1 ? argv[1] : "tcp://127.0.0.1:5556";
    const char *service = argc > 2 ? argv[2] : "STR-REV";

    int rc = zmws_worker_new(endpoint, service, 1, &g_worker);
    if (rc != ZMWS_OK) {
        fprintf(stderr, "worker: %s (%s)\n", zmws_last_error(), zmws_code_name(rc));
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    fprintf(stderr, "worker: offering %s at %s\n", service, endpoint);
    unsigned long count = 0;
    rc = zmws_worker_run(g_worker, str_rev, &count);
    if (rc != ZMWS_OK)
        fprintf(stderr, "worker: %s (%s)\n", zmws_last_error(), zmws_code_name(rc));
    fprintf(stderr, "worker: stopped after %lu jobs\n", count);
    zmws_worker_free(g_worker);
    return rc == ZMWS_OK ? 0 : 1;
}
