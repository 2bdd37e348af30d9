#ifndef CIBVERBS_H
#define CIBVERBS_H

/* A thin C shim over libibverbs, loaded with dlopen("libibverbs.so.1") so that the binary has no hard
 * run-time dependency on it: on a machine without the library or without an RDMA device every call
 * fails cleanly with a message instead of the process failing to start. Another verbs library with the
 * same entry points can be loaded in its place (Baton's tests load an emulated provider).
 *
 * Every function that can fail returns 0 on success (or a handle) and otherwise -1 (or NULL) after
 * writing "<verbs call>: <reason>" into `error` (at most error_length bytes, NUL-terminated).
 * Handles are not thread-safe: one owner at a time. Swift wraps these in KVTransport's RDMA types. */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CIB_DEFAULT_LIBRARY "libibverbs.so.1"

/* A loaded verbs library. */
typedef struct cib_provider cib_provider;

/* Loads `library` (NULL: CIB_DEFAULT_LIBRARY) and resolves the symbols used here. Each library is loaded
 * once per process and stays loaded; thread-safe. */
cib_provider *cib_load(const char *library, char *error, size_t error_length);

/* The self-description an emulated provider exports (symbol `baton_fakeverbs_emulated`); NULL for a real
 * libibverbs. */
const char *cib_provider_emulated(const cib_provider *provider);

/* Lists RDMA devices. On success writes the count (possibly 0) and up to `max_names` names of at most
 * 64 bytes each into `names` (names + 64 * i). Fails with the errno of ibv_get_device_list (ENOSYS when
 * the kernel has no RDMA support). */
int cib_list_devices(cib_provider *provider, int *count, char *names, int max_names, char *error,
                     size_t error_length);

/* The local end of a reliable-connected queue pair, as the peer needs it. */
typedef struct cib_endpoint {
    uint32_t qp_number;
    uint32_t psn;
    uint8_t gid[16];
    uint16_t lid;
    uint8_t port;
    uint32_t mtu; /* enum ibv_mtu value */
} cib_endpoint;

/* A completion, reduced to what the transport uses. */
typedef struct cib_completion {
    uint64_t wr_id;
    int status;          /* enum ibv_wc_status; 0 = success */
    int opcode;          /* enum ibv_wc_opcode */
    uint32_t byte_len;
    uint32_t imm_data;   /* host order */
    int has_imm;
    char status_text[64];
} cib_completion;

typedef struct cib_context cib_context;
typedef struct cib_memory_region cib_memory_region;

/* Opens `device_name` (NULL = the first device), its protection domain and a completion queue of
 * `cq_entries`, and checks `port` is active. */
cib_context *cib_open(cib_provider *provider, const char *device_name, uint8_t port, int gid_index,
                      int cq_entries, char *error, size_t error_length);
void cib_close(cib_context *context);

/* Registers [address, address + length) for local use and, with allow_remote_write, remote RDMA WRITE. */
cib_memory_region *cib_register(cib_context *context, void *address, size_t length, int allow_remote_write,
                                char *error, size_t error_length);
uint32_t cib_memory_region_lkey(const cib_memory_region *region);
uint32_t cib_memory_region_rkey(const cib_memory_region *region);
void cib_deregister(cib_memory_region *region);

/* Creates the RC queue pair (moved to INIT) and describes it in `local`. */
int cib_create_queue_pair(cib_context *context, int max_send, int max_recv, cib_endpoint *local,
                          char *error, size_t error_length);
/* Moves the queue pair to RTR then RTS towards `remote`. */
int cib_connect_queue_pair(cib_context *context, const cib_endpoint *remote, char *error, size_t error_length);

/* One-sided RDMA WRITE with immediate of [local, local + length) (registered with lkey) to
 * remote_address (rkey), signalled. */
int cib_post_write_with_immediate(cib_context *context, uint64_t wr_id, const void *local, uint32_t length,
                                  uint32_t lkey, uint64_t remote_address, uint32_t rkey, uint32_t immediate,
                                  char *error, size_t error_length);
/* A zero-length receive: consumed by each incoming WRITE with immediate. */
int cib_post_receive(cib_context *context, uint64_t wr_id, char *error, size_t error_length);

/* Polls the completion queue; returns the number of completions written (0…max) or -1. */
int cib_poll(cib_context *context, cib_completion *completions, int max, char *error, size_t error_length);

#ifdef __cplusplus
}
#endif

#endif
