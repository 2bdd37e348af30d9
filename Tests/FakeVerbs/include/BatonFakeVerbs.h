#ifndef BATON_FAKEVERBS_H
#define BATON_FAKEVERBS_H

/* libBatonFakeVerbs.so: an emulated libibverbs provider for Baton's tests, loaded in place of
 * libibverbs.so.1 with BATON_IBVERBS_LIBRARY=/path/to/libBatonFakeVerbs.so. It exports the ibv_* entry
 * points Baton's CIBVerbs shim resolves and serves the inline data-path verbs (ibv_post_send,
 * ibv_post_recv, ibv_poll_cq) through its context's ops table, as a real provider does.
 *
 * What it emulates: two InfiniBand devices (fakerdma0: LID 1, active MTU 4096; fakerdma1: LID 2, active
 * MTU 1024), one active port each with one GID; protection domains; memory regions with lkey/rkey and
 * access flags; completion queues; reliable-connected queue pairs with the RESET→INIT→RTR→RTS state
 * machine (required and allowed attribute masks checked per transition), connected by QP number and GID
 * (or LID); RDMA WRITE and RDMA WRITE with immediate into a peer's registered memory, checked against
 * the rkey, the region's bounds and its access rights and the peer's QP state, connection and PSN; send
 * and receive completions with the status codes a real HCA reports (see the table in verbs.c).
 *
 * How: the devices' state lives in a POSIX shared-memory segment (the "fabric",
 * /dev/shm/baton-fakeverbs-v<layout>-<uid>, or BATON_FAKEVERBS_FABRIC) shared by every process that
 * loads the library; a WRITE copies the sender's bytes into the receiving process with
 * process_vm_writev. Both processes must therefore run as the same user, and the kernel must allow
 * ptrace-style access between them (the library calls prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY) so that
 * Yama's ptrace_scope 1 permits it; ptrace_scope 2 or 3, or a seccomp filter without process_vm_writev,
 * makes ibv_open_device fail with EPERM, and Baton falls back to TLS HTTP/2).
 *
 * Not emulated: SEND/RECV with data, RDMA READ, atomics, SRQs, UD/UC queue pairs, completion channels and
 * async events, memory windows. Work requests execute when posted (the completion is queued at once), and
 * a WRITE with immediate that finds no posted receive fails at once with IBV_WC_RNR_RETRY_EXC_ERR where
 * hardware would retry. The copy targets the registered virtual addresses: memory freed without
 * deregistering is written anyway (hardware would write the pinned pages). For tests only. */

#ifdef __cplusplus
extern "C" {
#endif

/* Present in this library only: tells a loader it has the emulated provider. */
extern const char baton_fakeverbs_emulated[];

/* Makes `point` misbehave in this process `count` times (-1: every time) after letting `skip` calls
 * through; count 0 removes the faults at `point`, a NULL point removes all. Points: an entry point's name
 * ("ibv_open_device", "ibv_alloc_pd", "ibv_create_cq", "ibv_create_qp", "ibv_modify_qp", "ibv_reg_mr",
 * "ibv_query_port", "ibv_query_gid", "ibv_post_send", "ibv_post_recv") fails with errno `value`;
 * "port_state" makes ibv_query_port report enum ibv_port_state `value`; "completion" gives the next send
 * completions enum ibv_wc_status `value` (the WRITE is not performed); "kill_on_receive" makes the
 * process raise signal `value` when ibv_poll_cq is about to return a receive completion (a peer that
 * dies mid-transfer, its queue pairs and regions left on the fabric). Returns 0 or an errno.
 * BATON_FAKEVERBS_FAULTS="point=value[@skip][#count],…" sets the same at load (value: a number or a name
 * such as ENOMEM, IBV_PORT_DOWN, IBV_WC_REM_OP_ERR). */
int baton_fakeverbs_inject(const char *point, int value, int skip, int count);

#ifdef __cplusplus
}
#endif

#endif
