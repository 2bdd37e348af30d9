#define _GNU_SOURCE
#include "BatonFakeVerbs.h"
#include "fabric.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

/* verbs.h turns these names into inline wrappers; this library defines the exported functions themselves. */
#undef ibv_get_device_list
#undef ibv_query_port
#undef ibv_reg_mr

const char baton_fakeverbs_emulated[] =
    "Baton's emulated verbs provider (shared-memory fabric, WRITEs by process_vm_writev; for tests only)";

/* Completion statuses, as a real HCA reports them for RC RDMA WRITE:
 *   IBV_WC_LOC_PROT_ERR    the local SGE's lkey is unknown, of another PD or process, or the SGE exceeds it
 *   IBV_WC_LOC_LEN_ERR     the message is longer than the port's max_msg_sz
 *   IBV_WC_REM_ACCESS_ERR  the rkey is unknown or stale, of another PD, lacks REMOTE_WRITE, the range is out
 *                          of the region, or the responder's QP does not allow remote writes (the responder's
 *                          QP goes to ERR too and its posted receives are flushed)
 *   IBV_WC_RETRY_EXC_ERR   nobody answers: no device or QP at the address, the QP is not connected back to
 *                          this one, not in RTR/RTS, its PSN does not match, or its process is gone
 *   IBV_WC_RNR_RETRY_EXC_ERR a WRITE with immediate found no posted receive
 *   IBV_WC_WR_FLUSH_ERR    the QP is in ERR: work requests posted or pending complete flushed
 * Any error moves the sending QP to ERR. Posting a send on a QP in RESET, INIT or RTR, a receive in RESET,
 * an unsupported opcode or too many SGEs fails at once with EINVAL; a full queue with ENOMEM. */

enum { PORT = 1, GID_TABLE = 1, PKEY_TABLE = 1 };

static const struct {
    const char *name;
    uint16_t lid;
    enum ibv_mtu active_mtu;
} device_info[FV_DEVICES] = {{"fakerdma0", 1, IBV_MTU_4096}, {"fakerdma1", 2, IBV_MTU_1024}};

static struct ibv_device devices[FV_DEVICES];
static pthread_once_t devices_once = PTHREAD_ONCE_INIT;

static void device_gid(uint32_t device, uint8_t gid[16]) {
    static const uint8_t prefix[8] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0};
    memcpy(gid, prefix, 8);
    const uint8_t guid[8] = {0xba, 0x70, 0x4e, 0xff, 0xfe, 0, 0, (uint8_t)(device + 1)};
    memcpy(gid + 8, guid, 8);
}

static void make_devices(void) {
    for (int i = 0; i < FV_DEVICES; i++) {
        devices[i].node_type = IBV_NODE_CA;
        devices[i].transport_type = IBV_TRANSPORT_IB;
        snprintf(devices[i].name, sizeof devices[i].name, "%s", device_info[i].name);
        snprintf(devices[i].dev_name, sizeof devices[i].dev_name, "uverbs%d", i);
        snprintf(devices[i].dev_path, sizeof devices[i].dev_path, "/sys/class/infiniband_verbs/uverbs%d", i);
        snprintf(devices[i].ibdev_path, sizeof devices[i].ibdev_path, "/sys/class/infiniband/%s", device_info[i].name);
    }
}

static int device_index(struct ibv_device *device) {
    for (int i = 0; i < FV_DEVICES; i++)
        if (device == &devices[i]) return i;
    return -1;
}

/* Process-local handles: the ABI structs the caller reads, plus the fabric slot they stand for. */
struct fv_context {
    struct verbs_context ibv; /* ibv.context is what the caller holds */
    uint32_t device;
};
struct fv_pd {
    struct ibv_pd ibv;
    uint32_t id;
};
struct fv_cq {
    struct ibv_cq ibv;
    uint32_t slot;
};
struct fv_qp {
    struct ibv_qp ibv;
    uint32_t slot;
};
struct fv_mr {
    struct ibv_mr ibv;
    uint32_t slot;
};

#define OWNER(type, pointer, member) ((type *)((char *)(pointer)-offsetof(type, member)))

static struct fv_context *context_of(struct ibv_context *context) {
    return OWNER(struct fv_context, context, ibv.context);
}

/* Entry points that return a pointer report failure as NULL with errno, the others return the errno. */
#define FAULT_OR(point, fail)                         \
    do {                                              \
        int fault_value;                              \
        if (fv_fault(point, &fault_value)) {          \
            errno = fault_value;                      \
            fail;                                     \
        }                                             \
    } while (0)

/* MARK: devices */

struct ibv_device **ibv_get_device_list(int *num_devices) {
    int rc = fv_attach();
    if (rc != 0) {
        errno = rc;
        return NULL;
    }
    pthread_once(&devices_once, make_devices);
    struct ibv_device **list = calloc(FV_DEVICES + 1, sizeof *list);
    if (!list) {
        errno = ENOMEM;
        return NULL;
    }
    for (int i = 0; i < FV_DEVICES; i++) list[i] = &devices[i];
    if (num_devices) *num_devices = FV_DEVICES;
    return list;
}

void ibv_free_device_list(struct ibv_device **list) { free(list); }

const char *ibv_get_device_name(struct ibv_device *device) { return device ? device->name : NULL; }

static int query_port(struct ibv_context *context, uint8_t port, struct ibv_port_attr *attr, size_t length);
static int poll_cq(struct ibv_cq *cq, int entries, struct ibv_wc *wc);
static int post_send(struct ibv_qp *qp, struct ibv_send_wr *wr, struct ibv_send_wr **bad);
static int post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad);

/* Whether this process may write into a peer's memory, and be written into. */
static int check_cross_process_access(void) {
    FILE *file = fopen("/proc/sys/kernel/yama/ptrace_scope", "r");
    if (file) {
        int scope = 0;
        int read = fscanf(file, "%d", &scope);
        fclose(file);
        if (read == 1 && (scope >= 3 || (scope == 2 && geteuid() != 0))) return EPERM;
    }
    /* Under Yama scope 1 a process may only be accessed by its ancestors unless it says otherwise. */
    prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
    /* A seccomp filter may forbid the call itself: try it on our own memory. */
    static char probe;
    char source = 1;
    struct iovec local = {.iov_base = &source, .iov_len = 1}, remote = {.iov_base = &probe, .iov_len = 1};
    if (process_vm_writev(getpid(), &local, 1, &remote, 1, 0) != 1) return errno ? errno : EPERM;
    return 0;
}

struct ibv_context *ibv_open_device(struct ibv_device *device) {
    int index = device_index(device);
    if (index < 0) {
        errno = ENODEV;
        return NULL;
    }
    FAULT_OR("ibv_open_device", return NULL);
    int rc = fv_attach();
    if (rc == 0) rc = check_cross_process_access();
    if (rc != 0) {
        errno = rc;
        return NULL;
    }
    struct fv_context *c = calloc(1, sizeof *c);
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    c->device = (uint32_t)index;
    c->ibv.sz = sizeof c->ibv;
    c->ibv.query_port = query_port;
    c->ibv.context.device = device;
    c->ibv.context.cmd_fd = -1;
    c->ibv.context.async_fd = -1;
    c->ibv.context.num_comp_vectors = 1;
    c->ibv.context.abi_compat = __VERBS_ABI_IS_EXTENDED;
    c->ibv.context.ops.poll_cq = poll_cq;
    c->ibv.context.ops.post_send = post_send;
    c->ibv.context.ops.post_recv = post_recv;
    pthread_mutex_init(&c->ibv.context.mutex, NULL);
    return &c->ibv.context;
}

int ibv_close_device(struct ibv_context *context) {
    struct fv_context *c = context_of(context);
    pthread_mutex_destroy(&c->ibv.context.mutex);
    free(c);
    return 0;
}

static int query_port(struct ibv_context *context, uint8_t port, struct ibv_port_attr *attr, size_t length) {
    FAULT_OR("ibv_query_port", return errno);
    if (port != PORT) return EINVAL;
    uint32_t device = context_of(context)->device;
    struct ibv_port_attr a;
    memset(&a, 0, sizeof a);
    a.state = IBV_PORT_ACTIVE;
    int state;
    if (fv_fault("port_state", &state)) a.state = (enum ibv_port_state)state;
    a.max_mtu = IBV_MTU_4096;
    a.active_mtu = device_info[device].active_mtu;
    a.gid_tbl_len = GID_TABLE;
    a.max_msg_sz = 1U << 31;
    a.pkey_tbl_len = PKEY_TABLE;
    a.lid = device_info[device].lid;
    a.sm_lid = 1;
    a.max_vl_num = 1;
    a.active_width = 2;  /* 4x */
    a.active_speed = 32; /* EDR */
    a.phys_state = a.state == IBV_PORT_ACTIVE ? 5 : 3; /* LinkUp : Disabled */
    a.link_layer = IBV_LINK_LAYER_INFINIBAND;
    memcpy(attr, &a, length < sizeof a ? length : sizeof a);
    return 0;
}

/* The exported symbol takes the pre-extension layout: ibv_port_attr up to `flags`. */
int ibv_query_port(struct ibv_context *context, uint8_t port, struct _compat_ibv_port_attr *attr) {
    return query_port(context, port, (struct ibv_port_attr *)attr, offsetof(struct ibv_port_attr, port_cap_flags2));
}

int ibv_query_gid(struct ibv_context *context, uint8_t port, int index, union ibv_gid *gid) {
    FAULT_OR("ibv_query_gid", return -1);
    if (port != PORT || index < 0 || index >= GID_TABLE) {
        errno = EINVAL;
        return -1;
    }
    device_gid(context_of(context)->device, gid->raw);
    return 0;
}

/* MARK: protection domains */

struct ibv_pd *ibv_alloc_pd(struct ibv_context *context) {
    FAULT_OR("ibv_alloc_pd", return NULL);
    struct fv_pd *pd = calloc(1, sizeof *pd);
    if (!pd) {
        errno = ENOMEM;
        return NULL;
    }
    fv_lock();
    pd->id = fv->next_pd++;
    if (fv->next_pd == 0) fv->next_pd = 1;
    fv_unlock();
    pd->ibv.context = context;
    pd->ibv.handle = pd->id;
    return &pd->ibv;
}

int ibv_dealloc_pd(struct ibv_pd *ibv) {
    struct fv_pd *pd = OWNER(struct fv_pd, ibv, ibv);
    int busy = 0;
    fv_lock();
    for (int i = 0; i < FV_MAX_QPS && !busy; i++)
        busy = fv->qps[i].in_use && fv->qps[i].pd == pd->id && fv_is_self(&fv->qps[i].owner);
    for (int i = 0; i < FV_MAX_MRS && !busy; i++)
        busy = fv->mrs[i].in_use && fv->mrs[i].pd == pd->id && fv_is_self(&fv->mrs[i].owner);
    fv_unlock();
    if (busy) return EBUSY;
    free(pd);
    return 0;
}

/* MARK: slots */

#define FIND_FREE(array, count, result)                                     \
    do {                                                                    \
        result = -1;                                                        \
        for (int pass = 0; pass < 2 && result < 0; pass++) {                \
            if (pass == 1) fv_reclaim_dead();                               \
            for (int i = 0; i < (count); i++)                               \
                if (!fv->array[i].in_use) {                                 \
                    result = i;                                             \
                    break;                                                  \
                }                                                           \
        }                                                                   \
    } while (0)

/* MARK: completion queues */

struct ibv_cq *ibv_create_cq(struct ibv_context *context, int cqe, void *cq_context, struct ibv_comp_channel *channel,
                             int comp_vector) {
    FAULT_OR("ibv_create_cq", return NULL);
    if (cqe < 1 || cqe > FV_MAX_CQE || comp_vector != 0) {
        errno = EINVAL;
        return NULL;
    }
    if (channel) {
        errno = EOPNOTSUPP;
        return NULL;
    }
    struct fv_cq *cq = calloc(1, sizeof *cq);
    if (!cq) {
        errno = ENOMEM;
        return NULL;
    }
    fv_lock();
    int slot;
    FIND_FREE(cqs, FV_MAX_CQS, slot);
    if (slot < 0) {
        fv_unlock();
        free(cq);
        errno = ENOMEM;
        return NULL;
    }
    struct fv_cq_slot *s = &fv->cqs[slot];
    s->in_use = 1;
    s->owner = fv_self();
    s->capacity = (uint32_t)cqe;
    s->head = s->count = s->overrun = 0;
    fv_unlock();
    cq->slot = (uint32_t)slot;
    cq->ibv.context = context;
    cq->ibv.cq_context = cq_context;
    cq->ibv.handle = (uint32_t)slot;
    cq->ibv.cqe = cqe;
    pthread_mutex_init(&cq->ibv.mutex, NULL);
    pthread_cond_init(&cq->ibv.cond, NULL);
    return &cq->ibv;
}

int ibv_destroy_cq(struct ibv_cq *ibv) {
    struct fv_cq *cq = OWNER(struct fv_cq, ibv, ibv);
    fv_lock();
    for (int i = 0; i < FV_MAX_QPS; i++) {
        struct fv_qp_slot *q = &fv->qps[i];
        if (q->in_use && fv_is_self(&q->owner) && (q->send_cq == cq->slot || q->recv_cq == cq->slot)) {
            fv_unlock();
            return EBUSY;
        }
    }
    fv->cqs[cq->slot].in_use = 0;
    fv_unlock();
    pthread_mutex_destroy(&cq->ibv.mutex);
    pthread_cond_destroy(&cq->ibv.cond);
    free(cq);
    return 0;
}

/* Queues a completion (under the lock); a full queue loses it and goes to error. */
static void complete(uint32_t cq_slot, const struct ibv_wc *wc, int from_send_queue) {
    struct fv_cq_slot *cq = &fv->cqs[cq_slot];
    if (!cq->in_use) return;
    if (cq->count == cq->capacity) {
        cq->overrun = 1;
        return;
    }
    uint32_t at = (cq->head + cq->count) % cq->capacity;
    cq->entries[at] = *wc;
    cq->from_send_queue[at] = (uint8_t)from_send_queue;
    cq->count++;
}

static struct fv_qp_slot *own_qp_numbered(uint32_t qp_num) {
    for (int i = 0; i < FV_MAX_QPS; i++)
        if (fv->qps[i].in_use && fv->qps[i].qp_num == qp_num && fv_is_self(&fv->qps[i].owner)) return &fv->qps[i];
    return NULL;
}

static int poll_cq(struct ibv_cq *ibv, int entries, struct ibv_wc *wc) {
    struct fv_cq *cq = OWNER(struct fv_cq, ibv, ibv);
    fv_lock();
    struct fv_cq_slot *s = &fv->cqs[cq->slot];
    if (s->overrun) {
        fv_unlock();
        return -1;
    }
    int n = 0, die = 0;
    while (n < entries && s->count > 0 && !die) {
        wc[n] = s->entries[s->head];
        if (s->from_send_queue[s->head]) {
            struct fv_qp_slot *qp = own_qp_numbered(wc[n].qp_num);
            if (qp && qp->sq_outstanding > 0) qp->sq_outstanding--;
        } else if (wc[n].status == IBV_WC_SUCCESS && fv_fault("kill_on_receive", &die)) {
            break; /* this process dies before it sees the completion */
        }
        s->head = (s->head + 1) % s->capacity;
        s->count--;
        n++;
    }
    fv_unlock();
    if (die) raise(die);
    return n;
}

/* Drops a destroyed QP's completions, as providers clean their CQs. */
static void purge_completions(uint32_t cq_slot, uint32_t qp_num) {
    struct fv_cq_slot *cq = &fv->cqs[cq_slot];
    uint32_t kept = 0;
    for (uint32_t i = 0; i < cq->count; i++) {
        uint32_t from = (cq->head + i) % cq->capacity;
        if (cq->entries[from].qp_num == qp_num) continue;
        uint32_t to = (cq->head + kept) % cq->capacity;
        cq->entries[to] = cq->entries[from];
        cq->from_send_queue[to] = cq->from_send_queue[from];
        kept++;
    }
    cq->count = kept;
}

/* MARK: memory regions */

/* lkey and rkey differ (so that a caller swapping them fails), and both name the slot and its generation. */
static uint32_t lkey_of(uint32_t slot, uint32_t generation) { return (slot << 8) | (generation & 0xff); }
static uint32_t rkey_of(uint32_t slot, uint32_t generation) { return 0x80000000u | lkey_of(slot, generation); }

static struct fv_mr_slot *region_for_key(uint32_t key, int remote) {
    uint32_t slot = (key & 0x7fffffffu) >> 8;
    if (slot >= FV_MAX_MRS || ((key & 0x80000000u) != 0) != remote) return NULL;
    struct fv_mr_slot *mr = &fv->mrs[slot];
    if (!mr->in_use) return NULL;
    uint32_t expected = remote ? rkey_of(slot, mr->generation) : lkey_of(slot, mr->generation);
    return expected == key ? mr : NULL;
}

/* Whether every page of the range is mapped (hardware pins them at registration, and fails with EFAULT). */
static int mapped(const void *address, size_t length) {
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)address & ~(uintptr_t)(page - 1);
    uintptr_t end = (uintptr_t)address + length;
    size_t pages = (end - start + (size_t)page - 1) / (size_t)page;
    unsigned char *vector = malloc(pages);
    if (!vector) return 0;
    int ok = mincore((void *)start, end - start, vector) == 0;
    free(vector);
    return ok;
}

struct ibv_mr *ibv_reg_mr(struct ibv_pd *ibv_pd, void *address, size_t length, int access) {
    FAULT_OR("ibv_reg_mr", return NULL);
    const int known = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC;
    if (length == 0 || (access & ~known) ||
        ((access & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) && !(access & IBV_ACCESS_LOCAL_WRITE))) {
        errno = EINVAL;
        return NULL;
    }
    if (!address || !mapped(address, length)) {
        errno = EFAULT;
        return NULL;
    }
    struct fv_pd *pd = OWNER(struct fv_pd, ibv_pd, ibv);
    struct fv_mr *mr = calloc(1, sizeof *mr);
    if (!mr) {
        errno = ENOMEM;
        return NULL;
    }
    fv_lock();
    int slot;
    FIND_FREE(mrs, FV_MAX_MRS, slot);
    if (slot < 0) {
        fv_unlock();
        free(mr);
        errno = ENOMEM;
        return NULL;
    }
    struct fv_mr_slot *s = &fv->mrs[slot];
    s->in_use = 1;
    s->generation++;
    s->owner = fv_self();
    s->pd = pd->id;
    s->access = (uint32_t)access;
    s->addr = (uintptr_t)address;
    s->length = length;
    mr->ibv.lkey = lkey_of((uint32_t)slot, s->generation);
    mr->ibv.rkey = rkey_of((uint32_t)slot, s->generation);
    fv_unlock();
    mr->slot = (uint32_t)slot;
    mr->ibv.context = ibv_pd->context;
    mr->ibv.pd = ibv_pd;
    mr->ibv.addr = address;
    mr->ibv.length = length;
    mr->ibv.handle = (uint32_t)slot;
    return &mr->ibv;
}

int ibv_dereg_mr(struct ibv_mr *ibv) {
    struct fv_mr *mr = OWNER(struct fv_mr, ibv, ibv);
    /* Under the lock: once this returns no WRITE can reach the memory, so the caller may free it. */
    fv_lock();
    fv->mrs[mr->slot].in_use = 0;
    fv_unlock();
    free(mr);
    return 0;
}

/* MARK: queue pairs */

struct ibv_qp *ibv_create_qp(struct ibv_pd *ibv_pd, struct ibv_qp_init_attr *init) {
    FAULT_OR("ibv_create_qp", return NULL);
    if (init->qp_type != IBV_QPT_RC || init->srq || !init->send_cq || !init->recv_cq) {
        errno = init->qp_type != IBV_QPT_RC || init->srq ? EOPNOTSUPP : EINVAL;
        return NULL;
    }
    struct ibv_qp_cap *cap = &init->cap;
    if (cap->max_send_wr < 1 || cap->max_send_wr > FV_MAX_WR || cap->max_recv_wr > FV_MAX_WR ||
        cap->max_send_sge < 1 || cap->max_send_sge > FV_MAX_SGE || cap->max_recv_sge > FV_MAX_SGE ||
        cap->max_inline_data > 0) {
        errno = EINVAL;
        return NULL;
    }
    struct fv_pd *pd = OWNER(struct fv_pd, ibv_pd, ibv);
    struct fv_cq *send_cq = OWNER(struct fv_cq, init->send_cq, ibv);
    struct fv_cq *recv_cq = OWNER(struct fv_cq, init->recv_cq, ibv);
    struct fv_qp *qp = calloc(1, sizeof *qp);
    if (!qp) {
        errno = ENOMEM;
        return NULL;
    }
    fv_lock();
    int slot;
    FIND_FREE(qps, FV_MAX_QPS, slot);
    if (slot < 0) {
        fv_unlock();
        free(qp);
        errno = ENOMEM;
        return NULL;
    }
    /* QP numbers are 24 bits and unique on the fabric. */
    uint32_t number;
    for (;;) {
        number = fv->next_qp_num;
        fv->next_qp_num = (fv->next_qp_num + 1) & 0xFFFFFF;
        if (fv->next_qp_num < 0x100) fv->next_qp_num = 0x100;
        int taken = 0;
        for (int i = 0; i < FV_MAX_QPS && !taken; i++) taken = fv->qps[i].in_use && fv->qps[i].qp_num == number;
        if (!taken) break;
    }
    struct fv_qp_slot *s = &fv->qps[slot];
    memset(s, 0, offsetof(struct fv_qp_slot, rq_wr_id));
    s->in_use = 1;
    s->owner = fv_self();
    s->qp_num = number;
    s->device = context_of(ibv_pd->context)->device;
    s->pd = pd->id;
    s->state = IBV_QPS_RESET;
    s->send_cq = send_cq->slot;
    s->recv_cq = recv_cq->slot;
    s->max_send_wr = cap->max_send_wr;
    s->max_recv_wr = cap->max_recv_wr;
    s->max_send_sge = cap->max_send_sge;
    s->max_recv_sge = cap->max_recv_sge;
    s->sq_sig_all = init->sq_sig_all != 0;
    fv_unlock();
    qp->slot = (uint32_t)slot;
    qp->ibv.context = ibv_pd->context;
    qp->ibv.qp_context = init->qp_context;
    qp->ibv.pd = ibv_pd;
    qp->ibv.send_cq = init->send_cq;
    qp->ibv.recv_cq = init->recv_cq;
    qp->ibv.handle = (uint32_t)slot;
    qp->ibv.qp_num = number;
    qp->ibv.state = IBV_QPS_RESET;
    qp->ibv.qp_type = IBV_QPT_RC;
    pthread_mutex_init(&qp->ibv.mutex, NULL);
    pthread_cond_init(&qp->ibv.cond, NULL);
    return &qp->ibv;
}

int ibv_destroy_qp(struct ibv_qp *ibv) {
    struct fv_qp *qp = OWNER(struct fv_qp, ibv, ibv);
    fv_lock();
    struct fv_qp_slot *s = &fv->qps[qp->slot];
    purge_completions(s->send_cq, s->qp_num);
    if (s->recv_cq != s->send_cq) purge_completions(s->recv_cq, s->qp_num);
    s->in_use = 0;
    fv_unlock();
    pthread_mutex_destroy(&qp->ibv.mutex);
    pthread_cond_destroy(&qp->ibv.cond);
    free(qp);
    return 0;
}

/* Completes every posted receive flushed (the QP entered ERR). */
static void flush_receives(struct fv_qp_slot *qp) {
    while (qp->rq_count > 0) {
        struct ibv_wc wc = {.wr_id = qp->rq_wr_id[qp->rq_head], .status = IBV_WC_WR_FLUSH_ERR, .opcode = IBV_WC_RECV,
                            .qp_num = qp->qp_num};
        complete(qp->recv_cq, &wc, 0);
        qp->rq_head = (qp->rq_head + 1) % FV_MAX_WR;
        qp->rq_count--;
    }
}

static void enter_error(struct fv_qp_slot *qp) {
    qp->state = IBV_QPS_ERR;
    flush_receives(qp);
}

/* The attributes each RC transition requires and allows, as the kernel's ib_modify_qp_is_ok checks them. */
static int transition_masks(enum ibv_qp_state from, enum ibv_qp_state to, int *required, int *optional) {
    *required = IBV_QP_STATE;
    *optional = 0;
    if (to == IBV_QPS_RESET || to == IBV_QPS_ERR) return 0;
    if (from == IBV_QPS_RESET && to == IBV_QPS_INIT) {
        *required |= IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
        return 0;
    }
    if (from == IBV_QPS_INIT && to == IBV_QPS_INIT) {
        *optional = IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
        return 0;
    }
    if (from == IBV_QPS_INIT && to == IBV_QPS_RTR) {
        *required |= IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
                     IBV_QP_MIN_RNR_TIMER;
        *optional = IBV_QP_ALT_PATH | IBV_QP_ACCESS_FLAGS | IBV_QP_PKEY_INDEX;
        return 0;
    }
    if (from == IBV_QPS_RTR && to == IBV_QPS_RTS) {
        *required |= IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC;
        *optional = IBV_QP_CUR_STATE | IBV_QP_ALT_PATH | IBV_QP_ACCESS_FLAGS | IBV_QP_MIN_RNR_TIMER |
                    IBV_QP_PATH_MIG_STATE;
        return 0;
    }
    if (from == IBV_QPS_RTS && to == IBV_QPS_RTS) {
        *optional = IBV_QP_CUR_STATE | IBV_QP_ACCESS_FLAGS | IBV_QP_ALT_PATH | IBV_QP_PATH_MIG_STATE |
                    IBV_QP_MIN_RNR_TIMER;
        return 0;
    }
    return EINVAL;
}

int ibv_modify_qp(struct ibv_qp *ibv, struct ibv_qp_attr *attr, int mask) {
    FAULT_OR("ibv_modify_qp", return errno);
    struct fv_qp *qp = OWNER(struct fv_qp, ibv, ibv);
    if (!(mask & IBV_QP_STATE)) return EINVAL; /* state-preserving modifies are not emulated */
    fv_lock();
    struct fv_qp_slot *s = &fv->qps[qp->slot];
    enum ibv_qp_state from = (enum ibv_qp_state)s->state, to = attr->qp_state;
    int required, optional;
    int rc = transition_masks(from, to, &required, &optional);
    if (rc == 0 && ((mask & required) != required || (mask & ~(required | optional)))) rc = EINVAL;
    if (rc == 0 && (mask & IBV_QP_CUR_STATE) && attr->cur_qp_state != from) rc = EINVAL;
    if (rc == 0 && (mask & IBV_QP_PORT) && attr->port_num != PORT) rc = EINVAL;
    if (rc == 0 && (mask & IBV_QP_PKEY_INDEX) && attr->pkey_index >= PKEY_TABLE) rc = EINVAL;
    if (rc == 0 && (mask & IBV_QP_PATH_MTU) &&
        (attr->path_mtu < IBV_MTU_256 || attr->path_mtu > device_info[s->device].active_mtu))
        rc = EINVAL;
    if (rc == 0 && (mask & IBV_QP_DEST_QPN) && attr->dest_qp_num > 0xFFFFFF) rc = EINVAL;
    if (rc == 0 && (mask & IBV_QP_AV)) {
        const struct ibv_ah_attr *ah = &attr->ah_attr;
        if (ah->port_num != PORT || (ah->is_global && ah->grh.sgid_index >= GID_TABLE) ||
            (!ah->is_global && ah->dlid == 0))
            rc = EINVAL;
    }
    if (rc != 0) {
        fv_unlock();
        return rc;
    }
    if (mask & IBV_QP_ACCESS_FLAGS) s->access = attr->qp_access_flags;
    if (mask & IBV_QP_PATH_MTU) s->path_mtu = attr->path_mtu;
    if (mask & IBV_QP_DEST_QPN) s->dest_qp_num = attr->dest_qp_num;
    if (mask & IBV_QP_RQ_PSN) s->rq_psn = attr->rq_psn & 0xFFFFFF;
    if (mask & IBV_QP_SQ_PSN) s->sq_psn = attr->sq_psn & 0xFFFFFF;
    if (mask & IBV_QP_RNR_RETRY) s->rnr_retry = attr->rnr_retry;
    if (mask & IBV_QP_AV) {
        s->is_global = attr->ah_attr.is_global;
        s->dlid = attr->ah_attr.dlid;
        memcpy(s->dgid, attr->ah_attr.grh.dgid.raw, 16);
    }
    switch (to) {
    case IBV_QPS_RESET:
        s->rq_head = s->rq_count = 0;
        s->sq_outstanding = 0;
        s->dest_qp_num = 0;
        s->state = IBV_QPS_RESET;
        break;
    case IBV_QPS_ERR:
        enter_error(s);
        break;
    default:
        s->state = to;
    }
    ibv->state = (enum ibv_qp_state)s->state;
    fv_unlock();
    return 0;
}

/* MARK: data path */

static int post_recv(struct ibv_qp *ibv, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad) {
    struct fv_qp *qp = OWNER(struct fv_qp, ibv, ibv);
    int fault;
    if (fv_fault("ibv_post_recv", &fault)) {
        *bad = wr;
        return fault;
    }
    fv_lock();
    struct fv_qp_slot *s = &fv->qps[qp->slot];
    for (; wr; wr = wr->next) {
        int rc = 0;
        if (s->state == IBV_QPS_RESET || wr->num_sge < 0 || (uint32_t)wr->num_sge > s->max_recv_sge) rc = EINVAL;
        else if (s->rq_count == s->max_recv_wr) rc = ENOMEM;
        if (rc != 0) {
            fv_unlock();
            *bad = wr;
            return rc;
        }
        s->rq_wr_id[(s->rq_head + s->rq_count) % FV_MAX_WR] = wr->wr_id;
        s->rq_count++;
        if (s->state == IBV_QPS_ERR) flush_receives(s);
    }
    fv_unlock();
    return 0;
}

static uint32_t mtu_bytes(uint32_t mtu) { return 128u << mtu; } /* IBV_MTU_256 = 1 … IBV_MTU_4096 = 5 */

static int addressed_to(const struct fv_qp_slot *from, uint32_t device) {
    if (from->is_global) {
        uint8_t gid[16];
        device_gid(device, gid);
        return memcmp(gid, from->dgid, 16) == 0;
    }
    return from->dlid == device_info[device].lid;
}

/* The peer QP a connected QP's packets reach, if any answers. */
static struct fv_qp_slot *responder_for(const struct fv_qp_slot *requester) {
    for (uint32_t device = 0; device < FV_DEVICES; device++) {
        if (!addressed_to(requester, device)) continue;
        for (int i = 0; i < FV_MAX_QPS; i++) {
            struct fv_qp_slot *q = &fv->qps[i];
            if (q->in_use && q->device == device && q->qp_num == requester->dest_qp_num) return q;
        }
    }
    return NULL;
}

/* Performs one RDMA WRITE (under the lock) and returns its completion status. */
static enum ibv_wc_status rdma_write(struct fv_qp_slot *requester, const struct ibv_send_wr *wr, uint32_t *length) {
    struct iovec local[FV_MAX_SGE];
    uint64_t total = 0;
    for (int i = 0; i < wr->num_sge; i++) {
        const struct ibv_sge *sge = &wr->sg_list[i];
        struct fv_mr_slot *mr = region_for_key(sge->lkey, 0);
        if (!mr || mr->pd != requester->pd || !fv_is_self(&mr->owner) || sge->addr < mr->addr ||
            sge->addr + sge->length > mr->addr + mr->length)
            return IBV_WC_LOC_PROT_ERR;
        local[i] = (struct iovec){.iov_base = (void *)(uintptr_t)sge->addr, .iov_len = sge->length};
        total += sge->length;
    }
    if (total > (1ULL << 31)) return IBV_WC_LOC_LEN_ERR;
    *length = (uint32_t)total;

    struct fv_qp_slot *responder = responder_for(requester);
    if (!responder || !fv_alive(&responder->owner) ||
        (responder->state != IBV_QPS_RTR && responder->state != IBV_QPS_RTS) ||
        responder->dest_qp_num != requester->qp_num || !addressed_to(responder, requester->device))
        return IBV_WC_RETRY_EXC_ERR;
    if (responder->rq_psn != requester->sq_psn) return IBV_WC_RETRY_EXC_ERR;

    if (total > 0) {
        struct fv_mr_slot *mr = region_for_key(wr->wr.rdma.rkey, 1);
        uint64_t address = wr->wr.rdma.remote_addr;
        if (!(responder->access & IBV_ACCESS_REMOTE_WRITE) || !mr || mr->pd != responder->pd ||
            mr->owner.pid != responder->owner.pid || mr->owner.start_time != responder->owner.start_time ||
            !(mr->access & IBV_ACCESS_REMOTE_WRITE) || address < mr->addr || address + total > mr->addr + mr->length) {
            enter_error(responder);
            return IBV_WC_REM_ACCESS_ERR;
        }
    }
    int with_immediate = wr->opcode == IBV_WR_RDMA_WRITE_WITH_IMM;
    if (with_immediate && responder->rq_count == 0) return IBV_WC_RNR_RETRY_EXC_ERR;

    if (total > 0) {
        struct iovec remote = {.iov_base = (void *)(uintptr_t)wr->wr.rdma.remote_addr, .iov_len = total};
        ssize_t written = process_vm_writev(responder->owner.pid, local, (unsigned long)wr->num_sge, &remote, 1, 0);
        if (written != (ssize_t)total) {
            int error = written < 0 ? errno : EFAULT;
            if (error == ESRCH) return IBV_WC_RETRY_EXC_ERR;
            if (error == EFAULT) return IBV_WC_REM_ACCESS_ERR; /* registered but no longer mapped */
            fprintf(stderr, "fakeverbs: process_vm_writev into pid %d: %s\n", responder->owner.pid, strerror(error));
            return IBV_WC_REM_OP_ERR;
        }
    }
    uint32_t packets = total == 0 ? 1 : (uint32_t)((total + mtu_bytes(requester->path_mtu) - 1) / mtu_bytes(requester->path_mtu));
    requester->sq_psn = (requester->sq_psn + packets) & 0xFFFFFF;
    responder->rq_psn = (responder->rq_psn + packets) & 0xFFFFFF;
    if (with_immediate) {
        struct ibv_wc wc = {
            .wr_id = responder->rq_wr_id[responder->rq_head], .status = IBV_WC_SUCCESS,
            .opcode = IBV_WC_RECV_RDMA_WITH_IMM, .byte_len = (uint32_t)total, .imm_data = wr->imm_data,
            .qp_num = responder->qp_num, .src_qp = requester->qp_num, .wc_flags = IBV_WC_WITH_IMM,
            .slid = device_info[requester->device].lid,
        };
        responder->rq_head = (responder->rq_head + 1) % FV_MAX_WR;
        responder->rq_count--;
        complete(responder->recv_cq, &wc, 0);
    }
    return IBV_WC_SUCCESS;
}

static int post_send(struct ibv_qp *ibv, struct ibv_send_wr *wr, struct ibv_send_wr **bad) {
    struct fv_qp *qp = OWNER(struct fv_qp, ibv, ibv);
    int fault;
    if (fv_fault("ibv_post_send", &fault)) {
        *bad = wr;
        return fault;
    }
    fv_lock();
    struct fv_qp_slot *s = &fv->qps[qp->slot];
    for (; wr; wr = wr->next) {
        int rc = 0;
        if (s->state != IBV_QPS_RTS && s->state != IBV_QPS_ERR) rc = EINVAL;
        else if (wr->opcode != IBV_WR_RDMA_WRITE && wr->opcode != IBV_WR_RDMA_WRITE_WITH_IMM) rc = EINVAL;
        else if (wr->num_sge < 0 || (uint32_t)wr->num_sge > s->max_send_sge) rc = EINVAL;
        else if (s->sq_outstanding == s->max_send_wr) rc = ENOMEM;
        if (rc != 0) {
            fv_unlock();
            *bad = wr;
            return rc;
        }
        enum ibv_wc_status status;
        uint32_t length = 0;
        int injected;
        if (s->state == IBV_QPS_ERR) status = IBV_WC_WR_FLUSH_ERR;
        else if (fv_fault("completion", &injected)) status = (enum ibv_wc_status)injected;
        else status = rdma_write(s, wr, &length);
        if (status != IBV_WC_SUCCESS) s->state = IBV_QPS_ERR;
        if (status != IBV_WC_SUCCESS || s->sq_sig_all || (wr->send_flags & IBV_SEND_SIGNALED)) {
            struct ibv_wc wc = {.wr_id = wr->wr_id, .status = status, .opcode = IBV_WC_RDMA_WRITE,
                                .vendor_err = status == IBV_WC_SUCCESS ? 0 : 0xfa, .qp_num = s->qp_num};
            complete(s->send_cq, &wc, 1);
            s->sq_outstanding++;
        }
    }
    ibv->state = (enum ibv_qp_state)s->state;
    fv_unlock();
    return 0;
}

/* MARK: status text, as libibverbs words it */

const char *ibv_wc_status_str(enum ibv_wc_status status) {
    static const char *const text[] = {
        [IBV_WC_SUCCESS] = "success",
        [IBV_WC_LOC_LEN_ERR] = "local length error",
        [IBV_WC_LOC_QP_OP_ERR] = "local QP operation error",
        [IBV_WC_LOC_EEC_OP_ERR] = "local EE context operation error",
        [IBV_WC_LOC_PROT_ERR] = "local protection error",
        [IBV_WC_WR_FLUSH_ERR] = "Work Request Flushed Error",
        [IBV_WC_MW_BIND_ERR] = "memory management operation error",
        [IBV_WC_BAD_RESP_ERR] = "bad response error",
        [IBV_WC_LOC_ACCESS_ERR] = "local access error",
        [IBV_WC_REM_INV_REQ_ERR] = "remote invalid request error",
        [IBV_WC_REM_ACCESS_ERR] = "remote access error",
        [IBV_WC_REM_OP_ERR] = "remote operation error",
        [IBV_WC_RETRY_EXC_ERR] = "transport retry counter exceeded",
        [IBV_WC_RNR_RETRY_EXC_ERR] = "RNR retry counter exceeded",
        [IBV_WC_LOC_RDD_VIOL_ERR] = "local RDD violation error",
        [IBV_WC_REM_INV_RD_REQ_ERR] = "remote invalid RD request",
        [IBV_WC_REM_ABORT_ERR] = "aborted error",
        [IBV_WC_INV_EECN_ERR] = "invalid EE context number",
        [IBV_WC_INV_EEC_STATE_ERR] = "invalid EE context state",
        [IBV_WC_FATAL_ERR] = "fatal error",
        [IBV_WC_RESP_TIMEOUT_ERR] = "response timeout error",
        [IBV_WC_GENERAL_ERR] = "general error",
        [IBV_WC_TM_ERR] = "TM error",
        [IBV_WC_TM_RNDV_INCOMPLETE] = "TM software rendezvous",
    };
    if ((unsigned)status >= sizeof text / sizeof text[0] || !text[status]) return "unknown";
    return text[status];
}
