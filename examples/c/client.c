/*
 * A zmws client: submits a job asynchronously, polls its status, fetches
 * its result, then runs the same job synchronously.
 *
 *   client [client-endpoint [service [text]]]
 *
 * Defaults: tcp://127.0.0.1:5555, STR-REV, Hello. The payload sent is
 * {"str":"<text>"} (the text must not need JSON escaping).
 */
#define _POSIX_C_SOURCE 200809L

#include <zmws.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int fail(zmws_client *client, const char *what, int rc) {
    fprintf(stderr, "client: %s: %s (%s)\n", what, zmws_last_error(), zmws_code_name(rc));
    zmws_client_free(client);
    return 1;
}

int main(int argc, char **argv) {
    const char *endpoint = argc > 1 ? argv[1] : "tcp://127.0.0.1:5555";
    const char *service = argc > 2 ? argv[2] : "STR-REV";
    const char *text = argc > 3 ? argv[3] : "Hello";

    char payload[1024];
    int n = snprintf(payload, sizeof payload, "{\"str\":\"%s\"}", text);
    if (n < 0 || (size_t)n >= sizeof payload) {
        fprintf(stderr, "client: text too long\n");
        return 1;
    }

    zmws_client *client = NULL;
    int rc = zmws_client_new(endpoint, &client);
    if (rc != ZMWS_OK)
        return fail(NULL, "connect", rc);

    /* Give a worker up to 5 s to appear. */
    bool available = false;
    for (int i = 0; i < 50 && !available; i++) {
        rc = zmws_client_service_available(client, service, &available);
        if (rc != ZMWS_OK)
            return fail(client, "mmi.service", rc);
        if (!available)
            sleep_ms(100);
    }
    if (!available)
        fprintf(stderr, "client: no worker offers %s yet; submitting anyway\n", service);

    /* 1. Asynchronous: submit, poll the status, fetch the result. */
    char *job_id = NULL;
    rc = zmws_client_submit(client, service, (const uint8_t *)payload, (size_t)n, &job_id);
    if (rc != ZMWS_OK)
        return fail(client, "submit", rc);
    printf("submitted %s\n", job_id);

    char *status = NULL;
    for (int i = 0; i < 100; i++) {
        rc = zmws_client_status(client, job_id, &status);
        if (rc != ZMWS_OK) {
            zmws_string_free(job_id);
            return fail(client, "status", rc);
        }
        bool done = strstr(status, "\"state\":\"queued\"") == NULL && strstr(status, "\"state\":\"active\"") == NULL;
        if (done || i == 99)
            break;
        zmws_string_free(status);
        status = NULL;
        sleep_ms(50);
    }
    printf("status %s\n", status);
    zmws_string_free(status);

    uint8_t *result = NULL;
    size_t len = 0;
    rc = zmws_client_result(client, job_id, &result, &len);
    zmws_string_free(job_id);
    if (rc != ZMWS_OK)
        return fail(client, "result", rc);
    printf("async result %.*s\n", (int)len, (const char *)result);
    zmws_buffer_free(result);

    /* 2. Synchronous: one call, wait up to 5 s. */
    rc = zmws_client_call(client, service, (const uint8_t *)payload, (size_t)n, 5000, NULL, NULL, &result, &len);
    if (rc != ZMWS_OK)
        return fail(client, "call", rc);
    printf("sync result %.*s\n", (int)len, (const char *)result);
    zmws_buffer_free(result);

    zmws_client_free(client);
    return 0;
}
