/*
 * A zmws broker on a background thread, stopped by SIGINT or SIGTERM.
 *
 *   broker [client-endpoint [worker-endpoint [news-endpoint]]]
 *
 * Defaults: tcp://127.0.0.1:5555, tcp://127.0.0.1:5556, tcp://127.0.0.1:5557.
 * "tcp://127.0.0.1:*" binds a free port; the bound endpoints are printed as
 * "client <endpoint>", "worker <endpoint>", "news <endpoint>" on stdout.
 * A news endpoint of "" turns job-event publishing off.
 */
#define _POSIX_C_SOURCE 200809L

#include <zmws.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t g_stop = 0;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int fail(const char *what, int rc) {
    fprintf(stderr, "broker: %s: %s (%s)\n", what, zmws_last_error(), zmws_code_name(rc));
    return 1;
}

int main(int argc, char **argv) {
    const char *client_ep = argc > 1 ? argv[1] : "tcp://127.0.0.1:5555";
    const char *worker_ep = argc > 2 ? argv[2] : "tcp://127.0.0.1:5556";
    const char *news_ep = argc > 3 ? argv[3] : "tcp://127.0.0.1:5557";

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    zmws_broker *broker = NULL;
    int rc = zmws_broker_new(&broker);
    if (rc != ZMWS_OK)
        return fail("new", rc);
    if ((rc = zmws_broker_set_client_endpoint(broker, client_ep)) != ZMWS_OK ||
        (rc = zmws_broker_set_worker_endpoint(broker, worker_ep)) != ZMWS_OK ||
        (rc = zmws_broker_set_news_endpoint(broker, news_ep)) != ZMWS_OK ||
        (rc = zmws_broker_start(broker)) != ZMWS_OK) {
        zmws_broker_free(broker);
        return fail("start", rc);
    }

    char *ep = NULL;
    if (zmws_broker_client_endpoint(broker, &ep) == ZMWS_OK) {
        printf("client %s\n", ep);
        zmws_string_free(ep);
    }
    if (zmws_broker_worker_endpoint(broker, &ep) == ZMWS_OK) {
        printf("worker %s\n", ep);
        zmws_string_free(ep);
    }
    if (zmws_broker_news_endpoint(broker, &ep) == ZMWS_OK) {
        printf("news %s\n", ep);
        zmws_string_free(ep);
    }
    fflush(stdout);

    while (!g_stop) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    rc = zmws_broker_stop(broker);
    zmws_broker_free(broker);
    if (rc != ZMWS_OK)
        return fail("stop", rc);
    fprintf(stderr, "broker: stopped\n");
    return 0;
}
