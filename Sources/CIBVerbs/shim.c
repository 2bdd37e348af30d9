#define _GNU_SOURCE
#include "CIBVerbs.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <infiniband/verbs.h>

/* One loaded verbs library: libibverbs.so.1, or another provider named by the caller (Baton's tests load
 * an emulated one). The functions are resolved with dlsym: the names are string literals, so verbs.h's
 * macros of the same names do not apply. */
struct cib_provider {
    char *library;
    void *handle;
    const char *emulated; /* the test provider's self-description, NULL for a real libibverbs */
    struct ibv_device **(*get_device_list)(int *);
    void (*free_device_list)(struct ibv_device **);
    const char *(*get_device_name)(struct ibv_device *);
    struct ibv_context *(*open_device)(struct ibv_device *);
    int (*close_device)(struct ibv_context *);
    struct ibv_pd *(*alloc_pd)(struct ibv_context *);
    int (*dealloc_pd)(struct ibv_pd *);
    struct ibv_cq *(*create_cq)(struct ibv_context *, int, void *, struct ibv_comp_channel *, int);
    int (*destroy_cq)(struct ibv_cq *);
    struct ibv_qp *(*create_qp)(struct ibv_pd *, struct ibv_qp_init_attr *);
    int (*destroy_qp)(struct ibv_qp *);
    int (*modify_qp)(struct ibv_qp *, struct ibv_qp_attr *, int);
    int (*query_port)(struct ibv_context *, uint8_t, struct _compat_ibv_port_attr *);
    int (*query_gid)(struct ibv_context *, uint8_t, int, union ibv_gid *);
    struct ibv_mr *(*reg_mr)(struct ibv_pd *, void *, size_t, int);
    int (*dereg_mr)(struct ibv_mr *);
    const char *(*wc_status_str)(enum ibv_wc_status);
};

/* Loaded providers are never unloaded: contexts and regions point into them. A process uses one or two. */
static cib_provider *providers[8];
static pthread_mutex_t providers_lock = PTHREAD_MUTEX_INITIALIZER;

static void set_error(char *error, size_t length, const char *call, int code) {
    if (error && length) snprintf(error, length, "%s: %s (errno %d)", call, strerror(code), code);
}

static void set_message(char *error, size_t length, const char *message) {
    if (error && length) snprintf(error, length, "%s", message);
}

#define RESOLVE(field, name)                                                                          \
    do {                                                                                              \
        *(void **)(&p->field) = dlsym(p->handle, name);                                               \
        if (!p->field) {                                                                              \
            if (error && error_length) snprintf(error, error_length, "dlsym(%s): %s", name, dlerror()); \
            dlclose(p->handle);                                                                       \
            free(p);                                                                                  \
            return NULL;                                                                              \
        }                                                                                             \
    } while (0)

static cib_provider *load(const char *library, char *error, size_t error_length) {
    cib_provider *p = calloc(1, sizeof *p);
    if (!p) {
        set_error(error, error_length, "calloc", ENOMEM);
        return NULL;
    }
    p->handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (!p->handle) {
        const char *reason = dlerror();
        if (error && error_length) snprintf(error, error_length, "dlopen(%s): %s", library, reason ? reason : "not found");
        free(p);
        return NULL;
    }
    RESOLVE(get_device_list, "ibv_get_device_list");
    RESOLVE(free_device_list, "ibv_free_device_list");
    RESOLVE(get_device_name, "ibv_get_device_name");
    RESOLVE(open_device, "ibv_open_device");
    RESOLVE(close_device, "ibv_close_device");
    RESOLVE(alloc_pd, "ibv_alloc_pd");
    RESOLVE(dealloc_pd, "ibv_dealloc_pd");
    RESOLVE(create_cq, "ibv_create_cq");
    RESOLVE(destroy_cq, "ibv_destroy_cq");
    RESOLVE(create_qp, "ibv_create_qp");
    RESOLVE(destroy_qp, "ibv_destroy_qp");
    RESOLVE(modify_qp, "ibv_modify_qp");
    RESOLVE(query_port, "ibv_query_port");
    RESOLVE(query_gid, "ibv_query_gid");
    RESOLVE(reg_mr, "ibv_reg_mr");
    RESOLVE(dereg_mr, "ibv_dereg_mr");
    RESOLVE(wc_status_str, "ibv_wc_status_str");
    p->emulated = dlsym(p->handle, "baton_fakeverbs_emulated");
    p->library = strdup(library);
    if (!p->library) {
        dlclose(p->handle);
        free(p);
        set_error(error, error_length, "strdup", ENOMEM);
        return NULL;
    }
    return p;
}

cib_provider *cib_load(const char *library, char *error, size_t error_length) {
    if (!library) library = CIB_DEFAULT_LIBRARY;
    pthread_mutex_lock(&providers_lock);
    cib_provider *found = NULL;
    size_t free_index = sizeof providers / sizeof providers[0];
    for (size_t i = 0; i < sizeof providers / sizeof providers[0]; i++) {
        if (providers[i] && strcmp(providers[i]->library, library) == 0) {
            found = providers[i];
            break;
        }
        if (!providers[i] && free_index == sizeof providers / sizeof providers[0]) free_index = i;
    }
    if (!found) {
        if (free_index == sizeof providers / sizeof providers[0]) {
            set_message(error, error_length, "cib_load: too many verbs libraries loaded");
        } else {
            found = load(library, error, error_length);
            providers[free_index] = found;
        }
    }
    pthread_mutex_unlock(&providers_lock);
    return found;
}

const char *cib_provider_emulated(const cib_provider *provider) { return provider->emulated; }

int cib_list_devices(cib_provider *verbs, int *count, char *names, int max_names, char *error, size_t error_length) {
    int n = 0;
    errno = 0;
    struct ibv_device **list = verbs->get_device_list(&n);
    if (!list) {
        set_error(error, error_length, "ibv_get_device_list", errno ? errno : ENODEV);
        return -1;
    }
    for (int i = 0; i < n && i < max_names && names; i++) {
        const char *name = verbs->get_device_name(list[i]);
        snprintf(names + 64 * i, 64, "%s", name ? name : "");
    }
    *count = n;
    verbs->free_device_list(list);
    return 0;
}

struct cib_context {
    cib_provider *verbs;
    struct ibv_context *device;
    struct ibv_pd *pd;
    struct ibv_cq *cq;
    struct ibv_qp *qp;
    uint8_t port;
    int gid_index;
    uint32_t local_psn;
    struct ibv_port_attr port_attr;
};

struct cib_memory_region {
    cib_provider *verbs;
    struct ibv_mr *mr;
};

static int query_port(cib_context *c, struct ibv_port_attr *attr) {
    /* As verbs.h's ___ibv_query_port: prefer the extended op, fall back to the exported symbol. */
    struct verbs_context *vctx = verbs_get_ctx_op(c->device, query_port);
    memset(attr, 0, sizeof *attr);
    if (vctx) return vctx->query_port(c->device, c->port, attr, sizeof *attr);
    return c->verbs->query_port(c->device, c->port, (struct _compat_ibv_port_attr *)attr);
}

void cib_close(cib_context *c) {
    if (!c) return;
    if (c->qp) c->verbs->destroy_qp(c->qp);
    if (c->cq) c->verbs->destroy_cq(c->cq);
    if (c->pd) c->verbs->dealloc_pd(c->pd);
    if (c->device) c->verbs->close_device(c->device);
    free(c);
}

cib_context *cib_open(cib_provider *verbs, const char *device_name, uint8_t port, int gid_index, int cq_entries,
                      char *error, size_t error_length) {
    int n = 0;
    errno = 0;
    struct ibv_device **list = verbs->get_device_list(&n);
    if (!list) {
        set_error(error, error_length, "ibv_get_device_list", errno ? errno : ENODEV);
        return NULL;
    }
    struct ibv_device *chosen = NULL;
    for (int i = 0; i < n; i++) {
        if (!device_name || strcmp(verbs->get_device_name(list[i]), device_name) == 0) {
            chosen = list[i];
            break;
        }
    }
    if (!chosen) {
        if (error && error_length)
            snprintf(error, error_length, "ibv_get_device_list: no RDMA device%s%s", device_name ? " named " : "",
                     device_name ? device_name : "");
        verbs->free_device_list(list);
        return NULL;
    }
    cib_context *c = calloc(1, sizeof *c);
    if (!c) {
        verbs->free_device_list(list);
        set_error(error, error_length, "calloc", ENOMEM);
        return NULL;
    }
    c->verbs = verbs;
    c->port = port;
    c->gid_index = gid_index;
    errno = 0;
    c->device = verbs->open_device(chosen);
    verbs->free_device_list(list);
    if (!c->device) {
        set_error(error, error_length, "ibv_open_device", errno ? errno : ENODEV);
        cib_close(c);
        return NULL;
    }
    int rc = query_port(c, &c->port_attr);
    if (rc != 0) {
        set_error(error, error_length, "ibv_query_port", rc > 0 ? rc : errno);
        cib_close(c);
        return NULL;
    }
    if (c->port_attr.state != IBV_PORT_ACTIVE) {
        if (error && error_length)
            snprintf(error, error_length, "ibv_query_port: port %u is not active (state %d)", port,
                     (int)c->port_attr.state);
        cib_close(c);
        return NULL;
    }
    errno = 0;
    c->pd = c->verbs->alloc_pd(c->device);
    if (!c->pd) {
        set_error(error, error_length, "ibv_alloc_pd", errno ? errno : ENOMEM);
        cib_close(c);
        return NULL;
    }
    errno = 0;
    c->cq = c->verbs->create_cq(c->device, cq_entries, NULL, NULL, 0);
    if (!c->cq) {
        set_error(error, error_length, "ibv_create_cq", errno ? errno : ENOMEM);
        cib_close(c);
        return NULL;
    }
    return c;
}

cib_memory_region *cib_register(cib_context *c, void *address, size_t length, int allow_remote_write,
                                char *error, size_t error_length) {
    cib_memory_region *r = calloc(1, sizeof *r);
    if (!r) {
        set_error(error, error_length, "calloc", ENOMEM);
        return NULL;
    }
    int access = IBV_ACCESS_LOCAL_WRITE;
    if (allow_remote_write) access |= IBV_ACCESS_REMOTE_WRITE;
    errno = 0;
    r->verbs = c->verbs;
    r->mr = c->verbs->reg_mr(c->pd, address, length, access);
    if (!r->mr) {
        set_error(error, error_length, "ibv_reg_mr", errno ? errno : ENOMEM);
        free(r);
        return NULL;
    }
    return r;
}

uint32_t cib_memory_region_lkey(const cib_memory_region *r) { return r->mr->lkey; }
uint32_t cib_memory_region_rkey(const cib_memory_region *r) { return r->mr->rkey; }

void cib_deregister(cib_memory_region *r) {
    if (!r) return;
    if (r->mr) r->verbs->dereg_mr(r->mr);
    free(r);
}

int cib_create_queue_pair(cib_context *c, int max_send, int max_recv, cib_endpoint *local, char *error,
                          size_t error_length) {
    if (c->qp) {
        set_message(error, error_length, "ibv_create_qp: queue pair already created");
        return -1;
    }
    struct ibv_qp_init_attr init = {0};
    init.send_cq = c->cq;
    init.recv_cq = c->cq;
    init.qp_type = IBV_QPT_RC;
    init.cap.max_send_wr = (uint32_t)max_send;
    init.cap.max_recv_wr = (uint32_t)max_recv;
    init.cap.max_send_sge = 1;
    init.cap.max_recv_sge = 1;
    errno = 0;
    c->qp = c->verbs->create_qp(c->pd, &init);
    if (!c->qp) {
        set_error(error, error_length, "ibv_create_qp", errno ? errno : ENOMEM);
        return -1;
    }
    struct ibv_qp_attr attr = {0};
    attr.qp_state = IBV_QPS_INIT;
    attr.pkey_index = 0;
    attr.port_num = c->port;
    attr.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
    int rc = c->verbs->modify_qp(c->qp, &attr, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
    if (rc != 0) {
        set_error(error, error_length, "ibv_modify_qp(INIT)", rc);
        return -1;
    }
    union ibv_gid gid;
    memset(&gid, 0, sizeof gid);
    if (c->gid_index >= 0) {
        rc = c->verbs->query_gid(c->device, c->port, c->gid_index, &gid);
        if (rc != 0) {
            set_error(error, error_length, "ibv_query_gid", rc > 0 ? rc : errno);
            return -1;
        }
    }
    memset(local, 0, sizeof *local);
    local->qp_number = c->qp->qp_num;
    c->local_psn = (uint32_t)(random() & 0xFFFFFF);
    local->psn = c->local_psn;
    memcpy(local->gid, gid.raw, 16);
    local->lid = c->port_attr.lid;
    local->port = c->port;
    local->mtu = (uint32_t)c->port_attr.active_mtu;
    return 0;
}

int cib_connect_queue_pair(cib_context *c, const cib_endpoint *remote, char *error, size_t error_length) {
    if (!c->qp) {
        set_message(error, error_length, "ibv_modify_qp: no queue pair (create it first)");
        return -1;
    }
    struct ibv_qp_attr attr = {0};
    attr.qp_state = IBV_QPS_RTR;
    uint32_t mtu = remote->mtu < (uint32_t)c->port_attr.active_mtu ? remote->mtu : (uint32_t)c->port_attr.active_mtu;
    attr.path_mtu = (enum ibv_mtu)mtu;
    attr.dest_qp_num = remote->qp_number;
    attr.rq_psn = remote->psn;
    attr.max_dest_rd_atomic = 1;
    attr.min_rnr_timer = 12;
    attr.ah_attr.dlid = remote->lid;
    attr.ah_attr.port_num = c->port;
    if (c->gid_index >= 0) {
        attr.ah_attr.is_global = 1;
        memcpy(attr.ah_attr.grh.dgid.raw, remote->gid, 16);
        attr.ah_attr.grh.sgid_index = (uint8_t)c->gid_index;
        attr.ah_attr.grh.hop_limit = 1;
    }
    int rc = c->verbs->modify_qp(c->qp, &attr,
                             IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                                 IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
    if (rc != 0) {
        set_error(error, error_length, "ibv_modify_qp(RTR)", rc);
        return -1;
    }
    struct ibv_qp_attr rts = {0};
    rts.qp_state = IBV_QPS_RTS;
    rts.timeout = 14;
    rts.retry_cnt = 7;
    rts.rnr_retry = 7;
    rts.sq_psn = c->local_psn; /* chosen at creation and told to the peer */
    rts.max_rd_atomic = 1;
    rc = c->verbs->modify_qp(c->qp, &rts,
                         IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                             IBV_QP_MAX_QP_RD_ATOMIC);
    if (rc != 0) {
        set_error(error, error_length, "ibv_modify_qp(RTS)", rc);
        return -1;
    }
    return 0;
}

int cib_post_write_with_immediate(cib_context *c, uint64_t wr_id, const void *local, uint32_t length,
                                  uint32_t lkey, uint64_t remote_address, uint32_t rkey, uint32_t immediate,
                                  char *error, size_t error_length) {
    struct ibv_sge sge = {.addr = (uintptr_t)local, .length = length, .lkey = lkey};
    struct ibv_send_wr wr = {0};
    struct ibv_send_wr *bad = NULL;
    wr.wr_id = wr_id;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.imm_data = htonl(immediate);
    wr.wr.rdma.remote_addr = remote_address;
    wr.wr.rdma.rkey = rkey;
    int rc = ibv_post_send(c->qp, &wr, &bad);
    if (rc != 0) {
        set_error(error, error_length, "ibv_post_send(RDMA_WRITE_WITH_IMM)", rc);
        return -1;
    }
    return 0;
}

int cib_post_receive(cib_context *c, uint64_t wr_id, char *error, size_t error_length) {
    struct ibv_recv_wr wr = {0};
    struct ibv_recv_wr *bad = NULL;
    wr.wr_id = wr_id;
    wr.sg_list = NULL;
    wr.num_sge = 0;
    int rc = ibv_post_recv(c->qp, &wr, &bad);
    if (rc != 0) {
        set_error(error, error_length, "ibv_post_recv", rc);
        return -1;
    }
    return 0;
}

int cib_poll(cib_context *c, cib_completion *out, int max, char *error, size_t error_length) {
    struct ibv_wc wc[16];
    if (max > 16) max = 16;
    int n = ibv_poll_cq(c->cq, max, wc);
    if (n < 0) {
        set_message(error, error_length, "ibv_poll_cq: completion queue error");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].wr_id = wc[i].wr_id;
        out[i].status = (int)wc[i].status;
        out[i].opcode = (int)wc[i].opcode;
        out[i].byte_len = wc[i].byte_len;
        out[i].has_imm = (wc[i].wc_flags & IBV_WC_WITH_IMM) != 0;
        out[i].imm_data = out[i].has_imm ? ntohl(wc[i].imm_data) : 0;
        snprintf(out[i].status_text, sizeof out[i].status_text, "%s", c->verbs->wc_status_str(wc[i].status));
    }
    return n;
}
