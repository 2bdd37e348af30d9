#define _GNU_SOURCE
#include "fabric.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FV_MAGIC 0x4241544f4e465642ULL /* "BATONFVB" */

struct fv_fabric *fv;

static pthread_once_t attach_once = PTHREAD_ONCE_INIT;
static int attach_error;
static char name[128];

const char *fv_fabric_name(void) { return name; }

static void sleep_ms(int ms) {
    struct timespec t = {.tv_sec = 0, .tv_nsec = ms * 1000000L};
    nanosleep(&t, NULL);
}

static void attach(void) {
    const char *configured = getenv("BATON_FAKEVERBS_FABRIC");
    if (configured && *configured)
        snprintf(name, sizeof name, "%s%s", configured[0] == '/' ? "" : "/", configured);
    else
        snprintf(name, sizeof name, "/baton-fakeverbs-v%d-%u", FV_LAYOUT_VERSION, (unsigned)getuid());
    const size_t size = sizeof(struct fv_fabric);

    int created = 1;
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 && errno == EEXIST) {
        created = 0;
        fd = shm_open(name, O_RDWR, 0600);
    }
    if (fd < 0) {
        attach_error = errno;
        return;
    }
    if (created) {
        if (ftruncate(fd, (off_t)size) != 0) {
            attach_error = errno;
            close(fd);
            shm_unlink(name);
            return;
        }
    } else {
        /* Another process is creating it: wait (briefly) for its size. */
        struct stat st;
        for (int i = 0; i < 200 && fstat(fd, &st) == 0 && st.st_size == 0; i++) sleep_ms(10);
        if (fstat(fd, &st) != 0 || (size_t)st.st_size != size) {
            fprintf(stderr, "fakeverbs: %s has %lld bytes where this build expects %zu; remove /dev/shm%s\n", name,
                    (long long)st.st_size, size, name);
            attach_error = EPROTO;
            close(fd);
            return;
        }
    }
    void *mapped = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int map_error = errno;
    close(fd);
    if (mapped == MAP_FAILED) {
        attach_error = map_error;
        return;
    }
    struct fv_fabric *fabric = mapped;
    if (created) {
        pthread_mutexattr_t attr;
        pthread_mutexattr_init(&attr);
        pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
        pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
        pthread_mutex_init(&fabric->lock, &attr);
        pthread_mutexattr_destroy(&attr);
        fabric->magic = FV_MAGIC;
        fabric->version = FV_LAYOUT_VERSION;
        fabric->size = (uint32_t)size;
        fabric->next_qp_num = 0x100;
        fabric->next_pd = 1;
        atomic_store(&fabric->ready, 1);
    } else {
        for (int i = 0; i < 200 && !atomic_load(&fabric->ready); i++) sleep_ms(10);
        if (!atomic_load(&fabric->ready) || fabric->magic != FV_MAGIC || fabric->version != FV_LAYOUT_VERSION ||
            fabric->size != size) {
            fprintf(stderr, "fakeverbs: %s is not a fabric of this build (or its creator died); remove /dev/shm%s\n",
                    name, name);
            munmap(mapped, size);
            attach_error = EPROTO;
            return;
        }
    }
    fv = fabric;
}

int fv_attach(void) {
    pthread_once(&attach_once, attach);
    return fv ? 0 : attach_error;
}

void fv_lock(void) {
    if (pthread_mutex_lock(&fv->lock) == EOWNERDEAD) {
        /* Its owner died mid-update: every update is a few stores to one slot, so the slot may be stale but
         * the fabric is consistent; that process's slots are reclaimed as dead. */
        pthread_mutex_consistent(&fv->lock);
    }
}

void fv_unlock(void) { pthread_mutex_unlock(&fv->lock); }

/* Start time (field 22 of /proc/<pid>/stat), or 0 if the process is gone or a zombie. */
static uint64_t start_time_of(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *file = fopen(path, "r");
    if (!file) return 0;
    char line[1024];
    size_t n = fread(line, 1, sizeof line - 1, file);
    fclose(file);
    line[n] = 0;
    char *p = strrchr(line, ')'); /* the command name may contain spaces and parentheses */
    if (!p || p[1] != ' ') return 0;
    p += 2;
    if (*p == 'Z' || *p == 'X') return 0;
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p) return 0;
        p++;
    }
    return strtoull(p, NULL, 10);
}

struct fv_owner fv_self(void) {
    static pid_t cached_pid;
    static uint64_t cached_start;
    pid_t pid = getpid();
    if (pid != cached_pid) { /* first call, or after fork */
        cached_start = start_time_of(pid);
        cached_pid = pid;
    }
    return (struct fv_owner){.pid = pid, .start_time = cached_start};
}

int fv_is_self(const struct fv_owner *owner) {
    struct fv_owner self = fv_self();
    return owner->pid == self.pid && owner->start_time == self.start_time;
}

int fv_alive(const struct fv_owner *owner) {
    if (fv_is_self(owner)) return 1;
    uint64_t start = start_time_of(owner->pid);
    return start != 0 && start == owner->start_time;
}

void fv_reclaim_dead(void) {
    for (int i = 0; i < FV_MAX_QPS; i++)
        if (fv->qps[i].in_use && !fv_alive(&fv->qps[i].owner)) fv->qps[i].in_use = 0;
    for (int i = 0; i < FV_MAX_CQS; i++)
        if (fv->cqs[i].in_use && !fv_alive(&fv->cqs[i].owner)) fv->cqs[i].in_use = 0;
    for (int i = 0; i < FV_MAX_MRS; i++)
        if (fv->mrs[i].in_use && !fv_alive(&fv->mrs[i].owner)) fv->mrs[i].in_use = 0;
}
