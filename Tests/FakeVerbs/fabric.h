#ifndef FAKEVERBS_FABRIC_H
#define FAKEVERBS_FABRIC_H

/* The emulated fabric: one POSIX shared-memory segment that every process using the fake provider maps.
 * It holds the state a real HCA keeps in hardware and that a peer's one-sided operation must see: queue
 * pairs (state, connection, PSNs, posted receives), completion queues (their entries, so that a peer can
 * deliver a receive completion) and memory regions (address, length, access, keys). The registered memory
 * itself stays where its owner allocated it; a WRITE reaches it with process_vm_writev.
 *
 * Every field is read and written under `lock`, a process-shared robust mutex: a process killed while
 * holding it leaves the fabric usable. Slots name their owner by pid and start time, so that a dead
 * process's slots are recognised (and reclaimed) even if its pid is reused. */

#include <infiniband/verbs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* Bump when the layout changes: the segment's name carries it, so builds of different layouts never share. */
#define FV_LAYOUT_VERSION 1

enum {
    FV_DEVICES = 2,
    FV_MAX_QPS = 128,
    FV_MAX_CQS = 128,
    FV_MAX_MRS = 512,
    FV_MAX_CQE = 1024, /* per completion queue */
    FV_MAX_WR = 1024,  /* per send or receive queue */
    FV_MAX_SGE = 4,
};

struct fv_owner {
    int32_t pid;
    uint64_t start_time; /* /proc/<pid>/stat field 22 */
};

struct fv_mr_slot {
    uint32_t in_use;
    uint32_t generation; /* low byte of the keys: a stale key never matches a reused slot */
    struct fv_owner owner;
    uint32_t pd;
    uint32_t access;
    uint64_t addr;
    uint64_t length;
};

struct fv_cq_slot {
    uint32_t in_use;
    struct fv_owner owner;
    uint32_t capacity;
    uint32_t head;
    uint32_t count;
    uint32_t overrun; /* a completion was lost: the CQ is in error, as after IBV_EVENT_CQ_ERR */
    struct ibv_wc entries[FV_MAX_CQE];
    uint8_t from_send_queue[FV_MAX_CQE]; /* frees a send-queue slot when polled */
};

struct fv_qp_slot {
    uint32_t in_use;
    struct fv_owner owner;
    uint32_t qp_num;
    uint32_t device;
    uint32_t pd;
    uint32_t state; /* enum ibv_qp_state */
    uint32_t send_cq, recv_cq; /* slot indices */
    uint32_t max_send_wr, max_recv_wr, max_send_sge, max_recv_sge;
    uint32_t sq_sig_all;
    uint32_t access; /* qp_access_flags */
    uint32_t path_mtu; /* enum ibv_mtu */
    uint32_t dest_qp_num;
    uint16_t dlid;
    uint8_t is_global;
    uint8_t dgid[16];
    uint8_t rnr_retry;
    uint32_t sq_psn; /* next PSN this QP sends */
    uint32_t rq_psn; /* next PSN this QP expects */
    uint32_t sq_outstanding; /* send WRs whose completion has not been polled */
    uint32_t rq_head, rq_count;
    uint64_t rq_wr_id[FV_MAX_WR];
};

struct fv_fabric {
    uint64_t magic;
    uint32_t version;
    uint32_t size;
    _Atomic uint32_t ready;
    pthread_mutex_t lock;
    uint32_t next_qp_num;
    uint32_t next_pd;
    struct fv_qp_slot qps[FV_MAX_QPS];
    struct fv_cq_slot cqs[FV_MAX_CQS];
    struct fv_mr_slot mrs[FV_MAX_MRS];
};

/* Internal to the library: only the ibv_* entry points and baton_fakeverbs_* are exported. */
#pragma GCC visibility push(hidden)

/* The mapped segment, once fv_attach succeeded. */
extern struct fv_fabric *fv;

/* Maps (creating on first use) the segment named by BATON_FAKEVERBS_FABRIC, default
 * /baton-fakeverbs-v<layout>-<uid>. Idempotent; returns 0 or an errno. */
int fv_attach(void);
/* The segment's name, for messages. */
const char *fv_fabric_name(void);

void fv_lock(void);
void fv_unlock(void);

struct fv_owner fv_self(void);
int fv_is_self(const struct fv_owner *owner);
/* Whether the owner still runs (not exited, not a zombie, pid not reused). */
int fv_alive(const struct fv_owner *owner);

/* Frees the slots of processes that are gone (under the lock). */
void fv_reclaim_dead(void);

/* Test faults (faults.c): whether `point` fails now, and with which value. */
int fv_fault(const char *point, int *value);

#pragma GCC visibility pop

#endif
