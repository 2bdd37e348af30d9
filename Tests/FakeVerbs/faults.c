#define _GNU_SOURCE
#include "BatonFakeVerbs.h"
#include "fabric.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Faults are per process (each process of a test decides how its own device misbehaves). */
struct fault {
    char point[32];
    int value;
    int skip;
    int count; /* -1: every call */
};

static struct fault faults[16];
static int fault_count;
static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t environment_once = PTHREAD_ONCE_INIT;

static const struct {
    const char *name;
    int value;
} symbols[] = {
    {"EPERM", EPERM}, {"ENOMEM", ENOMEM}, {"EINVAL", EINVAL}, {"ENODEV", ENODEV}, {"EBUSY", EBUSY},
    {"EAGAIN", EAGAIN}, {"EFAULT", EFAULT}, {"ENOSYS", ENOSYS}, {"EIO", EIO}, {"EOPNOTSUPP", EOPNOTSUPP},
    {"IBV_PORT_DOWN", IBV_PORT_DOWN}, {"IBV_PORT_INIT", IBV_PORT_INIT},
    {"IBV_WC_LOC_LEN_ERR", IBV_WC_LOC_LEN_ERR}, {"IBV_WC_LOC_QP_OP_ERR", IBV_WC_LOC_QP_OP_ERR},
    {"IBV_WC_LOC_PROT_ERR", IBV_WC_LOC_PROT_ERR}, {"IBV_WC_WR_FLUSH_ERR", IBV_WC_WR_FLUSH_ERR},
    {"IBV_WC_REM_ACCESS_ERR", IBV_WC_REM_ACCESS_ERR}, {"IBV_WC_REM_OP_ERR", IBV_WC_REM_OP_ERR},
    {"IBV_WC_RETRY_EXC_ERR", IBV_WC_RETRY_EXC_ERR}, {"IBV_WC_RNR_RETRY_EXC_ERR", IBV_WC_RNR_RETRY_EXC_ERR},
    {"IBV_WC_FATAL_ERR", IBV_WC_FATAL_ERR}, {"IBV_WC_GENERAL_ERR", IBV_WC_GENERAL_ERR},
};

static int add_fault(const char *point, size_t point_length, int value, int skip, int count) {
    if (point_length == 0 || point_length >= sizeof faults[0].point || skip < 0 || count < -1) return EINVAL;
    if (count == 0) { /* remove the faults at this point */
        int kept = 0;
        for (int i = 0; i < fault_count; i++)
            if (strlen(faults[i].point) != point_length || strncmp(faults[i].point, point, point_length) != 0)
                faults[kept++] = faults[i];
        fault_count = kept;
        return 0;
    }
    if (fault_count == (int)(sizeof faults / sizeof faults[0])) return ENOSPC;
    struct fault *f = &faults[fault_count++];
    memcpy(f->point, point, point_length);
    f->point[point_length] = 0;
    f->value = value;
    f->skip = skip;
    f->count = count;
    return 0;
}

static int parse_value(const char *text, size_t length, int *value) {
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++)
        if (strlen(symbols[i].name) == length && strncmp(symbols[i].name, text, length) == 0) {
            *value = symbols[i].value;
            return 0;
        }
    char buffer[32];
    if (length == 0 || length >= sizeof buffer) return EINVAL;
    memcpy(buffer, text, length);
    buffer[length] = 0;
    char *end;
    long parsed = strtol(buffer, &end, 10);
    if (*end) return EINVAL;
    *value = (int)parsed;
    return 0;
}

/* BATON_FAKEVERBS_FAULTS="point=value[@skip][#count],…": e.g. "ibv_reg_mr=ENOMEM" (every registration
 * fails), "completion=IBV_WC_REM_OP_ERR@2#1" (the third send completion carries that status). */
static void read_environment(void) {
    const char *spec = getenv("BATON_FAKEVERBS_FAULTS");
    if (!spec || !*spec) return;
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *equals = memchr(p, '=', (size_t)(end - p));
        const char *at = equals ? memchr(equals, '@', (size_t)(end - equals)) : NULL;
        const char *hash = equals ? memchr(equals, '#', (size_t)(end - equals)) : NULL;
        const char *value_end = at ? at : hash ? hash : end;
        int value = 0, skip = 0, count = -1;
        int bad = !equals || parse_value(equals + 1, (size_t)(value_end - equals - 1), &value) != 0;
        if (!bad && at) bad = parse_value(at + 1, (size_t)((hash ? hash : end) - at - 1), &skip) != 0;
        if (!bad && hash) bad = parse_value(hash + 1, (size_t)(end - hash - 1), &count) != 0;
        if (!bad) bad = add_fault(p, (size_t)(equals - p), value, skip, count) != 0;
        if (bad) fprintf(stderr, "fakeverbs: ignoring malformed BATON_FAKEVERBS_FAULTS entry '%.*s'\n", (int)(end - p), p);
        p = *end ? end + 1 : end;
    }
}

int baton_fakeverbs_inject(const char *point, int value, int skip, int count) {
    pthread_once(&environment_once, read_environment);
    pthread_mutex_lock(&fault_lock);
    int rc;
    if (!point) {
        fault_count = 0;
        rc = 0;
    } else {
        rc = add_fault(point, strlen(point), value, skip, count);
    }
    pthread_mutex_unlock(&fault_lock);
    return rc;
}

int fv_fault(const char *point, int *value) {
    pthread_once(&environment_once, read_environment);
    pthread_mutex_lock(&fault_lock);
    int fired = 0;
    /* Each fault counts the calls at its point on its own; the first due one fires. */
    for (int i = 0; i < fault_count; i++) {
        struct fault *f = &faults[i];
        if (strcmp(f->point, point) != 0 || f->count == 0) continue;
        if (f->skip > 0) {
            f->skip--;
        } else if (!fired) {
            if (f->count > 0) f->count--;
            *value = f->value;
            fired = 1;
        }
    }
    pthread_mutex_unlock(&fault_lock);
    return fired;
}
