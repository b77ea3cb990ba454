typedef enum zmws_code {
    ZMWS_OK = 0,
    ZMWS_TIMEOUT = 1,
    ZMWS_NO_SUCH_SERVICE = 2,
    ZMWS_INVALID_ARGUMENT = 3,
    ZMWS_JOB_FAILED = 4,
    ZMWS_QUEUE_FULL = 5,
    ZMWS_CLOSED = 6,
    ZMWS_NOT_FOUND = 7,
    ZMWS_PENDING = 8,
    ZMWS_TOO_LARGE = 9,
    ZMWS_PROTOCOL = 10,
    ZMWS_INTERNAL = 11,
    ZMWS_IO = 12,
    ZMWS_IDLE = 13,
} zmws_code;

typedef struct zmws_batch zmws_batch;

typedef struct zmws_broker zmws_broker;

typedef struct zmws_client zmws_client;

typedef struct zmws_job zmws_job;

typedef struct zmws_worker zmws_worker;

typedef void (*zmws_partial_fn)(void *user_data, const uint8_t *data, size_t len);

typedef int (*zmws_job_fn)(void *user_data, struct zmws_job *job);

const char *zmws_version(void);

const char *zmws_last_error(void);

const char *zmws_code_name(int code);

void zmws_string_free(char *string);

void zmws_buffer_free(uint8_t *buffer);

int zmws_log_init(const char *filter);

int zmws_broker_new(struct zmws_broker **broker_out);

void zmws_broker_free(struct zmws_broker *broker);

int zmws_broker_set_client_endpoint(struct zmws_broker *broker, const char *endpoint);

int zmws_broker_set_worker_endpoint(struct zmws_broker *broker, const char *endpoint);

int zmws_broker_set_news_endpoint(struct zmws_broker *broker, const char *endpoint);

int zmws_broker_set_heartbeat_ms(struct zmws_broker *broker, uint64_t heartbeat_ms);

int zmws_broker_set_liveness(struct zmws_broker *broker, uint32_t liveness);

int zmws_broker_set_job_timeout_ms(struct zmws_broker *broker, uint64_t job_timeout_ms);

int zmws_broker_set_max_attempts(struct zmws_broker *broker, uint32_t max_attempts);

int zmws_broker_set_max_payload(struct zmws_broker *broker, size_t max_payload);

int zmws_broker_set_max_queued(struct zmws_broker *broker, size_t max_queued);

int zmws_broker_set_result_ttl_ms(struct zmws_broker *broker, uint64_t result_ttl_ms);

int zmws_broker_set_history_len(struct zmws_broker *broker, size_t history_len);

int zmws_broker_set_data_dir(struct zmws_broker *broker, const char *path);

int zmws_broker_set_hwm(struct zmws_broker *broker, int hwm);

int zmws_broker_set_spin_us(struct zmws_broker *broker, uint32_t spin_us);

int zmws_broker_start(struct zmws_broker *broker);

int zmws_broker_stop(struct zmws_broker *broker);

int zmws_broker_is_running(const struct zmws_broker *broker, bool *running_out);

int zmws_broker_client_endpoint(const struct zmws_broker *broker, char **endpoint_out);

int zmws_broker_worker_endpoint(const struct zmws_broker *broker, char **endpoint_out);

int zmws_broker_news_endpoint(const struct zmws_broker *broker, char **endpoint_out);

int zmws_client_new(const char *endpoints, struct zmws_client **client_out);

void zmws_client_free(struct zmws_client *client);

int zmws_client_set_request_timeout(struct zmws_client *client, uint64_t timeout_ms);

int zmws_client_endpoint(struct zmws_client *client, char **endpoint_out);

int zmws_client_submit(struct zmws_client *client,
                       const char *service,
                       const uint8_t *payload,
                       size_t payload_len,
                       char **job_id_out);

int zmws_client_submit_unique(struct zmws_client *client,
                              const char *service,
                              const uint8_t *payload,
                              size_t payload_len,
                              const char *key,
                              char **job_id_out);

int zmws_client_submit_batch(struct zmws_client *client,
                             const char *service,
                             const uint8_t *const *payloads,
                             const size_t *lens,
                             size_t count,
                             char *job_ids_out,
                             size_t job_ids_size);

int zmws_client_call(struct zmws_client *client,
                     const char *service,
                     const uint8_t *payload,
                     size_t payload_len,
                     uint64_t timeout_ms,
                     zmws_partial_fn on_partial,
                     void *user_data,
                     uint8_t **result_out,
                     size_t *result_len_out);

int zmws_client_status(struct zmws_client *client, const char *job_id, char **json_out);

int zmws_client_result(struct zmws_client *client,
                       const char *job_id,
                       uint8_t **result_out,
                       size_t *result_len_out);

int zmws_client_cancel(struct zmws_client *client, const char *job_id);

int zmws_client_jobs(struct zmws_client *client, const char *which, char **json_out);

int zmws_client_workers(struct zmws_client *client, char **json_out);

int zmws_client_services(struct zmws_client *client, char **json_out);

int zmws_client_service_available(struct zmws_client *client,
                                  const char *service,
                                  bool *available_out);

int zmws_client_batch(struct zmws_client *client,
                      const char *service,
                      const uint8_t *const *payloads,
                      const size_t *lens,
                      size_t count,
                      uint64_t timeout_ms,
                      struct zmws_batch **batch_out);

int zmws_batch_count(const struct zmws_batch *batch, size_t *count_out);

int zmws_batch_failed(const struct zmws_batch *batch, size_t *failed_out);

int zmws_batch_result(const struct zmws_batch *batch,
                      size_t index,
                      const uint8_t **data_out,
                      size_t *len_out);

void zmws_batch_free(struct zmws_batch *batch);

int zmws_job_id(const struct zmws_job *job, const char **id_out);

int zmws_job_attempt(const struct zmws_job *job, uint32_t *attempt_out);

int zmws_job_payload(const struct zmws_job *job, const uint8_t **payload_out, size_t *len_out);

int zmws_job_complete(struct zmws_job *job, const uint8_t *result, size_t result_len);

int zmws_job_fail(struct zmws_job *job, const char *reason, bool retryable);

int zmws_job_partial(struct zmws_job *job, const uint8_t *data, size_t data_len);

void zmws_job_free(struct zmws_job *job);

int zmws_worker_new(const char *endpoints,
                    const char *service,
                    uint32_t capacity,
                    struct zmws_worker **worker_out);

int zmws_worker_new_with_heartbeat(const char *endpoints,
                                   const char *service,
                                   uint32_t capacity,
                                   uint64_t heartbeat_ms,
                                   uint32_t liveness,
                                   struct zmws_worker **worker_out);

void zmws_worker_free(struct zmws_worker *worker);

int zmws_worker_next_job(struct zmws_worker *worker,
                         uint64_t timeout_ms,
                         struct zmws_job **job_out);

int zmws_worker_next_event(struct zmws_worker *worker,
                           uint64_t timeout_ms,
                           struct zmws_job **job_out);

int zmws_worker_run(struct zmws_worker *worker, zmws_job_fn handler, void *user_data);

int zmws_worker_stop(struct zmws_worker *worker);

int zmws_worker_jobs_done(const struct zmws_worker *worker, uint64_t *jobs_done_out);
