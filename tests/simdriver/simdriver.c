/*
 * simdriver.c - a simulated NVIDIA driver library, libnvidia-ml.so.1, for vramtop's tests and
 * benchmarks.
 *
 * Where it sits: vramtop (or nvitop, or any NVML client) -> nvidia-ml-py's ctypes code ->
 * dlopen("libnvidia-ml.so.1") -> *this library* (found first through LD_LIBRARY_PATH). The GPUs
 * it reports come from a scenario file named by VRAMTOP_SIMDRIVER_SCENARIO, re-read whenever the
 * file changes, so a test can move memory for real child processes while vramtop runs.
 *
 * Written from the public NVML API documentation (nvml.h): entry point names, return codes,
 * struct layouts and the two-call sizing protocol are the driver's; the values are scripted.
 * No dependency beyond libc. See README.md beside this file for the scenario format.
 *
 * Build-time variants (the exported symbol set cannot change at run time):
 *   -DSIM_V3_RECORD=24  what nvmlDeviceGet*RunningProcesses_v3 writes per record: 24 (the
 *                       nvmlProcessInfo_v2_t layout, current drivers), 32 (R535's first
 *                       nvmlProcessInfo_v3_t with usedGpuCcProtectedMemory), 16 (a v1-sized
 *                       record), or 0 (no _v3 symbol at all, as before R510).
 *   -DSIM_CC_EXPORTS=1  export nvmlDeviceGetConfComputeMemSizeInfo
 *   -DSIM_DETAIL_LIST=1 export nvmlDeviceGetRunningProcessDetailList
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef SIM_V3_RECORD
#define SIM_V3_RECORD 24
#endif
#ifndef SIM_CC_EXPORTS
#define SIM_CC_EXPORTS 1
#endif
#ifndef SIM_DETAIL_LIST
#define SIM_DETAIL_LIST 1
#endif

#define EXPORT __attribute__((visibility("default")))

/* -- NVML types and codes (nvml.h) ---------------------------------------------------------- */

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

#define VALUE_NOT_AVAILABLE 0xFFFFFFFFFFFFFFFFULL
#define NO_INSTANCE 0xFFFFFFFFu
#define STRUCT_VERSION(type, ver) ((unsigned int)(sizeof(type) | ((ver) << 24U)))

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

typedef struct {
    unsigned long long bar1Total, bar1Free, bar1Used;
} nvmlBAR1Memory_t;

typedef struct {
    unsigned int gpu, memory;
} nvmlUtilization_t;

typedef struct {
    unsigned int version;
    int sensorType;
    int temperature;
} nvmlTemperature_v1_t;

typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
} proc_v1_t;

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} proc_v2_t;

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
    unsigned long long usedGpuCcProtectedMemory;
} proc_v3cc_t;

typedef struct {
    unsigned int pid;
    unsigned long long timeStamp;
    unsigned int smUtil, memUtil, encUtil, decUtil;
} nvmlProcessUtilizationSample_t;

typedef struct {
    unsigned int version;
    unsigned long long protectedMemSizeKib, unprotectedMemSizeKib;
} nvmlConfComputeMemSizeInfo_t;

/* -- the simulated world ---------------------------------------------------------------------- */

#define MAX_GPUS 16
#define MAX_MIG 7
#define MAX_PROCS 4096
#define MAX_RULES 256
#define MAX_COUNTERS 160
#define GIB (1ULL << 30)
#define MIB (1ULL << 20)

enum { KIND_COMPUTE = 1, KIND_GRAPHICS = 2, KIND_MPS = 4 };

/* A handle is a pointer into this table; it stays valid across scenario reloads. */
struct sim_handle {
    int gpu, mig; /* mig -1: the physical GPU */
};
typedef struct sim_handle *nvmlDevice_t;

struct sim_dev {
    int present;
    char name[96], uuid[96];
    unsigned long long total, reserved, used;
    int used_set;
    unsigned util_gpu, util_mem, temp, fan, power, power_limit, clock_sm, clock_mem, clock_max;
    unsigned pstate, gi, ci;
    int mig_mode; /* -1: not MIG capable */
    int lost;
};

struct sim_proc {
    int gpu, mig;
    unsigned pid, kinds, sm, mem;
    int has_util, used_na;
    unsigned long long used, max;
    double rate; /* bytes per second since the scenario was loaded */
};

struct sim_rule {
    int gpu, mig; /* gpu -2: any device or none */
    char func[72];
    int code;
    long delay_us;
};

struct sim_state {
    char driver[80], nvml[80];
    int cuda, ngpus;
    unsigned util_period_ms;
    double loaded_at;
    struct sim_dev gpus[MAX_GPUS];
    struct sim_dev migs[MAX_GPUS][MAX_MIG];
    int nprocs;
    struct sim_proc procs[MAX_PROCS];
    int nrules;
    struct sim_rule rules[MAX_RULES];
};

struct counter {
    const char *name;
    unsigned long long calls;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct sim_state state, parsed;
static struct sim_handle handles[MAX_GPUS][MAX_MIG + 1];
static int initialised, loaded_once;
static struct timespec seen_mtime;
static ino_t seen_ino;
static off_t seen_size;
static char seen_path[4096];
static double stats_at;
static struct counter counters[MAX_COUNTERS];
static int ncounters;

static double monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned long long wall_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL;
}

/* -- scenario parsing ------------------------------------------------------------------------- */

static void default_dev(struct sim_dev *d, int gpu, int mig) {
    memset(d, 0, sizeof(*d));
    if (mig < 0) {
        snprintf(d->name, sizeof(d->name), "NVIDIA H100 80GB HBM3");
        snprintf(d->uuid, sizeof(d->uuid), "GPU-5171d000-0000-4000-8000-0000000000%02d", gpu);
        d->total = 80 * GIB;
        d->reserved = 512 * MIB;
    } else {
        snprintf(d->name, sizeof(d->name), "NVIDIA H100 80GB HBM3 MIG 1g.10gb");
        snprintf(d->uuid, sizeof(d->uuid), "MIG-5171d000-0000-4000-8000-0000%02d0000%02d", gpu, mig);
        d->total = 10 * GIB;
        d->reserved = 64 * MIB;
        d->gi = (unsigned)mig + 1;
        d->ci = 0;
    }
    d->util_gpu = 0;
    d->util_mem = 0;
    d->temp = 40;
    d->fan = 30;
    d->power = 90000;
    d->power_limit = 700000;
    d->clock_sm = 1980;
    d->clock_mem = 2619;
    d->clock_max = 1980;
    d->pstate = 0;
    d->mig_mode = -1;
}

static void default_state(struct sim_state *s) {
    memset(s, 0, sizeof(*s));
    snprintf(s->driver, sizeof(s->driver), "550.54.15");
    snprintf(s->nvml, sizeof(s->nvml), "12.550.54.15");
    s->cuda = 12040;
    s->ngpus = 0;
    s->util_period_ms = 200;
    for (int g = 0; g < MAX_GPUS; g++) {
        default_dev(&s->gpus[g], g, -1);
        for (int m = 0; m < MAX_MIG; m++) default_dev(&s->migs[g][m], g, m);
    }
}

/* "80G", "512M", "1.5G", "1000" -> bytes */
static unsigned long long parse_size(const char *text) {
    char *end = NULL;
    double value = strtod(text, &end);
    if (end != NULL) {
        switch (*end) {
        case 'K': case 'k': value *= 1024.0; break;
        case 'M': case 'm': value *= (double)MIB; break;
        case 'G': case 'g': value *= (double)GIB; break;
        case 'T': case 't': value *= (double)GIB * 1024.0; break;
        default: break;
        }
    }
    return value < 0 ? 0 : (unsigned long long)value;
}

/* "0" -> (0, -1); "0:2" -> (0, 2); "*" -> (-2, -1). Returns 0 when malformed. */
static int parse_dev(const char *text, int *gpu, int *mig) {
    if (strcmp(text, "*") == 0) {
        *gpu = -2;
        *mig = -1;
        return 1;
    }
    char *end = NULL;
    long g = strtol(text, &end, 10);
    if (end == text || g < 0 || g >= MAX_GPUS) return 0;
    *gpu = (int)g;
    *mig = -1;
    if (*end == ':') {
        long m = strtol(end + 1, &end, 10);
        if (m < 0 || m >= MAX_MIG) return 0;
        *mig = (int)m;
    }
    return *end == '\0';
}

static unsigned parse_kinds(const char *text) {
    unsigned kinds = 0;
    if (strstr(text, "compute")) kinds |= KIND_COMPUTE;
    if (strstr(text, "graphics")) kinds |= KIND_GRAPHICS;
    if (strstr(text, "mps")) kinds |= KIND_MPS;
    return kinds ? kinds : KIND_COMPUTE;
}

static void parse_gpu_line(struct sim_state *s, char **tok, int ntok, const char *rest) {
    int gpu, mig;
    if (ntok < 3 || !parse_dev(tok[1], &gpu, &mig) || gpu < 0) return;
    struct sim_dev *d = mig < 0 ? &s->gpus[gpu] : &s->migs[gpu][mig];
    const char *key = tok[2];
    d->present = 1;
    if (gpu + 1 > s->ngpus) s->ngpus = gpu + 1;
    unsigned v1 = ntok > 3 ? (unsigned)strtoul(tok[3], NULL, 10) : 0;
    unsigned v2 = ntok > 4 ? (unsigned)strtoul(tok[4], NULL, 10) : 0;
    if (strcmp(key, "name") == 0 && rest) {
        snprintf(d->name, sizeof(d->name), "%s", rest);
    } else if (strcmp(key, "uuid") == 0 && ntok > 3) {
        snprintf(d->uuid, sizeof(d->uuid), "%s", tok[3]);
    } else if (strcmp(key, "memory") == 0 && ntok > 3) {
        d->total = parse_size(tok[3]);
        if (ntok > 4) d->reserved = parse_size(tok[4]);
    } else if (strcmp(key, "used") == 0 && ntok > 3) {
        d->used = parse_size(tok[3]);
        d->used_set = 1;
    } else if (strcmp(key, "util") == 0) {
        d->util_gpu = v1;
        d->util_mem = v2;
    } else if (strcmp(key, "temp") == 0) {
        d->temp = v1;
    } else if (strcmp(key, "fan") == 0) {
        d->fan = v1;
    } else if (strcmp(key, "power") == 0) {
        d->power = v1;
        if (ntok > 4) d->power_limit = v2;
    } else if (strcmp(key, "clocks") == 0) {
        d->clock_sm = v1;
        if (ntok > 4) d->clock_mem = v2;
    } else if (strcmp(key, "pstate") == 0) {
        d->pstate = v1;
    } else if (strcmp(key, "mig") == 0) {
        d->mig_mode = (int)v1;
    } else if (strcmp(key, "instance") == 0) {
        d->gi = v1;
        d->ci = v2;
    } else if (strcmp(key, "lost") == 0) {
        d->lost = (int)v1;
    }
}

static void parse_proc_line(struct sim_state *s, char **tok, int ntok) {
    /* proc DEV PID KINDS USED [rate=B/s] [max=B] [sm=N] [mem=N] */
    int gpu, mig;
    if (ntok < 5 || s->nprocs >= MAX_PROCS || !parse_dev(tok[1], &gpu, &mig) || gpu < 0) return;
    struct sim_proc *p = &s->procs[s->nprocs++];
    memset(p, 0, sizeof(*p));
    p->gpu = gpu;
    p->mig = mig;
    p->pid = (unsigned)strtoul(tok[2], NULL, 10);
    p->kinds = parse_kinds(tok[3]);
    if (strcmp(tok[4], "na") == 0) p->used_na = 1;
    else p->used = parse_size(tok[4]);
    for (int i = 5; i < ntok; i++) {
        if (strncmp(tok[i], "rate=", 5) == 0) p->rate = (double)parse_size(tok[i] + 5);
        else if (strncmp(tok[i], "max=", 4) == 0) p->max = parse_size(tok[i] + 4);
        else if (strncmp(tok[i], "sm=", 3) == 0) {
            p->sm = (unsigned)strtoul(tok[i] + 3, NULL, 10);
            p->has_util = 1;
        } else if (strncmp(tok[i], "mem=", 4) == 0) {
            p->mem = (unsigned)strtoul(tok[i] + 4, NULL, 10);
            p->has_util = 1;
        }
    }
    if (gpu + 1 > s->ngpus) s->ngpus = gpu + 1;
}

static void parse_rule_line(struct sim_state *s, char **tok, int ntok, int is_delay) {
    /* error DEV FUNC CODE | delay DEV FUNC MICROSECONDS */
    int gpu, mig;
    if (ntok < 4 || s->nrules >= MAX_RULES || !parse_dev(tok[1], &gpu, &mig)) return;
    struct sim_rule *r = &s->rules[s->nrules++];
    memset(r, 0, sizeof(*r));
    r->gpu = gpu;
    r->mig = mig;
    snprintf(r->func, sizeof(r->func), "%s", tok[2]);
    if (is_delay) r->delay_us = strtol(tok[3], NULL, 10);
    else r->code = (int)strtol(tok[3], NULL, 10);
}

static void parse(struct sim_state *s, char *text) {
    default_state(s);
    int declared = -1;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char copy[512];
        snprintf(copy, sizeof(copy), "%s", line);
        char *tok[16];
        int ntok = 0;
        char *save = NULL;
        for (char *t = strtok_r(copy, " \t\r", &save); t && ntok < 16; t = strtok_r(NULL, " \t\r", &save))
            tok[ntok++] = t;
        if (ntok == 0) continue;
        /* the text after "gpu DEV name" keeps its spaces */
        const char *rest = NULL;
        if (ntok > 3 && strcmp(tok[0], "gpu") == 0 && strcmp(tok[2], "name") == 0) {
            rest = strstr(line, " name ");
            rest = rest ? rest + 6 : NULL;
            while (rest && (*rest == ' ' || *rest == '\t')) rest++;
        }
        char restbuf[128];
        if (rest) {
            snprintf(restbuf, sizeof(restbuf), "%s", rest);
            size_t n = strlen(restbuf);
            while (n > 0 && (restbuf[n - 1] == ' ' || restbuf[n - 1] == '\t' || restbuf[n - 1] == '\r'))
                restbuf[--n] = '\0';
            rest = restbuf;
        }
        if (strcmp(tok[0], "gpu") == 0) parse_gpu_line(s, tok, ntok, rest);
        else if (strcmp(tok[0], "proc") == 0) parse_proc_line(s, tok, ntok);
        else if (strcmp(tok[0], "error") == 0) parse_rule_line(s, tok, ntok, 0);
        else if (strcmp(tok[0], "delay") == 0) parse_rule_line(s, tok, ntok, 1);
        else if (strcmp(tok[0], "gpus") == 0 && ntok > 1) declared = atoi(tok[1]);
        else if (strcmp(tok[0], "driver") == 0 && ntok > 1) snprintf(s->driver, sizeof(s->driver), "%s", tok[1]);
        else if (strcmp(tok[0], "nvml") == 0 && ntok > 1) snprintf(s->nvml, sizeof(s->nvml), "%s", tok[1]);
        else if (strcmp(tok[0], "cuda") == 0 && ntok > 1) s->cuda = atoi(tok[1]);
        else if (strcmp(tok[0], "util_period_ms") == 0 && ntok > 1) {
            int ms = atoi(tok[1]);
            s->util_period_ms = ms > 0 ? (unsigned)ms : 200;
        }
    }
    if (declared >= 0) s->ngpus = declared > MAX_GPUS ? MAX_GPUS : declared;
    else if (s->ngpus == 0) s->ngpus = 1;
    s->loaded_at = monotonic();
}

/* Re-read the scenario when the file changed (path, mtime, size or inode: an atomic rename
 * counts). One stat() per call, about a microsecond: cheaper than being stale. */
static void maybe_reload(void) {
    double now = monotonic();
    const char *path = getenv("VRAMTOP_SIMDRIVER_SCENARIO");
    struct stat st;
    if (path == NULL || *path == '\0' || stat(path, &st) != 0) {
        if (!loaded_once) {
            default_state(&state);
            state.ngpus = 1;
            state.loaded_at = now;
            loaded_once = 1;
        }
        return;
    }
    if (loaded_once && strcmp(path, seen_path) == 0 && st.st_mtim.tv_sec == seen_mtime.tv_sec &&
        st.st_mtim.tv_nsec == seen_mtime.tv_nsec && st.st_ino == seen_ino && st.st_size == seen_size)
        return;
    FILE *f = fopen(path, "r");
    if (f == NULL) return;
    size_t cap = 1 << 20;
    char *text = malloc(cap + 1);
    if (text == NULL) {
        fclose(f);
        return;
    }
    size_t n = fread(text, 1, cap, f);
    fclose(f);
    text[n] = '\0';
    parse(&parsed, text);
    free(text);
    memcpy(&state, &parsed, sizeof(state));
    seen_mtime = st.st_mtim;
    seen_ino = st.st_ino;
    seen_size = st.st_size;
    snprintf(seen_path, sizeof(seen_path), "%s", path);
    loaded_once = 1;
}

/* -- call accounting ---------------------------------------------------------------------------- */

static void write_stats(int force) {
    const char *dir = getenv("VRAMTOP_SIMDRIVER_STATS");
    if (dir == NULL || *dir == '\0') return;
    double now = monotonic();
    if (!force && now - stats_at < 1.0) return;
    stats_at = now;
    char path[4096], tmp[4096];
    snprintf(path, sizeof(path), "%s/calls.%d", dir, (int)getpid());
    snprintf(tmp, sizeof(tmp), "%s/.calls.%d.tmp", dir, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL) return;
    for (int i = 0; i < ncounters; i++) fprintf(f, "%s %llu\n", counters[i].name, counters[i].calls);
    fclose(f);
    rename(tmp, path);
}

static void count_call(const char *name, int *slot) {
    if (*slot < 0) {
        if (ncounters >= MAX_COUNTERS) return;
        *slot = ncounters;
        counters[ncounters].name = name;
        counters[ncounters].calls = 0;
        ncounters++;
    }
    counters[*slot].calls++;
    write_stats(0);
}

__attribute__((destructor)) static void at_unload(void) { write_stats(1); }

/* -- the common entry: lock, reload, count, injected faults ------------------------------------ */

static int dev_matches(const struct sim_rule *r, const struct sim_handle *h) {
    if (r->gpu == -2) return 1;
    return h != NULL && r->gpu == h->gpu && r->mig == h->mig;
}

/* Returns NVML_SUCCESS to go on, or the code the call must return. Called with the lock held. */
static nvmlReturn_t enter(const char *func, int *slot, const struct sim_handle *h, int needs_init) {
    maybe_reload();
    count_call(func, slot);
    for (int i = 0; i < state.nrules; i++) {
        const struct sim_rule *r = &state.rules[i];
        if (!dev_matches(r, h)) continue;
        if (strcmp(r->func, func) != 0 && strcmp(r->func, "*") != 0) continue;
        nvmlReturn_t code = r->code;
        if (r->delay_us > 0) {
            /* The delay holds no lock: a call hanging on one device must not stall the calls
               on the others (a rule on "*" delays every device alike). */
            struct timespec ts = {r->delay_us / 1000000, (r->delay_us % 1000000) * 1000};
            pthread_mutex_unlock(&lock);
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&lock);
            maybe_reload();
        }
        if (code != 0) return code;
    }
    if (needs_init && !initialised) return NVML_ERROR_UNINITIALIZED;
    if (h != NULL) {
        if (h->gpu < 0 || h->gpu >= state.ngpus) return NVML_ERROR_INVALID_ARGUMENT;
        if (state.gpus[h->gpu].lost) return NVML_ERROR_GPU_IS_LOST;
        if (h->mig >= 0 && (state.gpus[h->gpu].mig_mode != 1 || !state.migs[h->gpu][h->mig].present))
            return NVML_ERROR_INVALID_ARGUMENT;
    }
    return NVML_SUCCESS;
}

#define BEGIN(func, handle, needs_init)                                  \
    static int slot_ = -1;                                               \
    pthread_mutex_lock(&lock);                                           \
    nvmlReturn_t ret_ = enter(func, &slot_, (handle), (needs_init));     \
    if (ret_ != NVML_SUCCESS) {                                          \
        pthread_mutex_unlock(&lock);                                     \
        return ret_;                                                     \
    }
#define END(code)                     \
    do {                              \
        pthread_mutex_unlock(&lock);  \
        return (code);                \
    } while (0)

static struct sim_dev *dev_of(const struct sim_handle *h) {
    return h->mig < 0 ? &state.gpus[h->gpu] : &state.migs[h->gpu][h->mig];
}

static nvmlReturn_t copy_string(char *out, unsigned int length, const char *value) {
    if (out == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(value) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(out, value, strlen(value) + 1);
    return NVML_SUCCESS;
}

static unsigned long long proc_used(const struct sim_proc *p) {
    if (p->used_na) return VALUE_NOT_AVAILABLE;
    double grown = (double)p->used + p->rate * (monotonic() - state.loaded_at);
    unsigned long long used = grown < 0 ? 0 : (unsigned long long)grown;
    if (p->max > 0 && used > p->max) used = p->max;
    return used;
}

static int proc_on(const struct sim_proc *p, const struct sim_handle *h) {
    /* A physical GPU lists the processes of all its instances; an instance only its own. */
    return p->gpu == h->gpu && (h->mig < 0 || p->mig == h->mig);
}

static void memory_of(const struct sim_handle *h, unsigned long long *total,
                      unsigned long long *reserved, unsigned long long *used) {
    const struct sim_dev *d = dev_of(h);
    *total = d->total;
    *reserved = d->reserved;
    if (d->used_set) {
        *used = d->used;
    } else {
        unsigned long long sum = 0;
        for (int i = 0; i < state.nprocs; i++) {
            const struct sim_proc *p = &state.procs[i];
            if (!proc_on(p, h) || p->used_na) continue;
            sum += proc_used(p);
        }
        *used = sum;
    }
    if (*used + *reserved > *total) *used = *total > *reserved ? *total - *reserved : 0;
}

/* -- initialisation and system queries --------------------------------------------------------- */

EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    BEGIN("nvmlInitWithFlags", NULL, 0);
    initialised++;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlInit_v2(void) {
    BEGIN("nvmlInit_v2", NULL, 0);
    initialised++;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlInit(void) {
    BEGIN("nvmlInit", NULL, 0);
    initialised++;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlShutdown(void) {
    BEGIN("nvmlShutdown", NULL, 1);
    initialised--;
    write_stats(1);
    END(NVML_SUCCESS);
}

EXPORT const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 5: return "Already Initialized";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 8: return "Insufficient External Power";
    case 9: return "Driver Not Loaded";
    case 10: return "Timeout";
    case 11: return "Interrupt Request Issue";
    case 12: return "NVML Shared Library Not Found";
    case 13: return "Function Not Found";
    case 14: return "Corrupted infoROM";
    case 15: return "GPU is lost";
    case 16: return "GPU requires restart";
    case 17: return "The operating system has blocked the request.";
    case 18: return "RM has detected an NVML/RM version mismatch.";
    case 19: return "In use by another client";
    case 20: return "Insufficient Memory";
    case 21: return "No data";
    case 25: return "Argument version mismatch";
    case 26: return "Deprecated";
    case 27: return "Not Ready";
    case 28: return "GPU not found";
    default: return "Unknown Error";
    }
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    BEGIN("nvmlSystemGetDriverVersion", NULL, 1);
    END(copy_string(version, length, state.driver));
}
EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    BEGIN("nvmlSystemGetNVMLVersion", NULL, 1);
    END(copy_string(version, length, state.nvml));
}
EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *version) {
    BEGIN("nvmlSystemGetCudaDriverVersion", NULL, 1);
    if (version == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *version = state.cuda;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *version) {
    BEGIN("nvmlSystemGetCudaDriverVersion_v2", NULL, 1);
    if (version == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *version = state.cuda;
    END(NVML_SUCCESS);
}

/* -- device handles ------------------------------------------------------------------------------ */

static nvmlReturn_t count_devices(unsigned int *count) {
    if (count == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    *count = (unsigned)state.ngpus;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    BEGIN("nvmlDeviceGetCount_v2", NULL, 1);
    END(count_devices(count));
}
EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) {
    BEGIN("nvmlDeviceGetCount", NULL, 1);
    END(count_devices(count));
}

static nvmlReturn_t handle_by_index(unsigned int index, nvmlDevice_t *device) {
    if (device == NULL || index >= (unsigned)state.ngpus) return NVML_ERROR_INVALID_ARGUMENT;
    if (state.gpus[index].lost) return NVML_ERROR_GPU_IS_LOST;
    handles[index][0].gpu = (int)index;
    handles[index][0].mig = -1;
    *device = &handles[index][0];
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    BEGIN("nvmlDeviceGetHandleByIndex_v2", NULL, 1);
    END(handle_by_index(index, device));
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device) {
    BEGIN("nvmlDeviceGetHandleByIndex", NULL, 1);
    END(handle_by_index(index, device));
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    BEGIN("nvmlDeviceGetHandleByUUID", NULL, 1);
    if (uuid == NULL || device == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    for (int g = 0; g < state.ngpus; g++) {
        if (strcmp(state.gpus[g].uuid, uuid) == 0) END(handle_by_index((unsigned)g, device));
        for (int m = 0; m < MAX_MIG; m++) {
            if (state.migs[g][m].present && strcmp(state.migs[g][m].uuid, uuid) == 0) {
                handles[g][m + 1].gpu = g;
                handles[g][m + 1].mig = m;
                *device = &handles[g][m + 1];
                END(NVML_SUCCESS);
            }
        }
    }
    END(NVML_ERROR_NOT_FOUND);
}

static void bus_id(int gpu, char *out, size_t size) {
    snprintf(out, size, "00000000:%02X:00.0", 0x18 + gpu * 0x10);
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *pci, nvmlDevice_t *device) {
    BEGIN("nvmlDeviceGetHandleByPciBusId_v2", NULL, 1);
    if (pci == NULL || device == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    for (int g = 0; g < state.ngpus; g++) {
        char id[32];
        bus_id(g, id, sizeof(id));
        if (strcasecmp(id, pci) == 0) END(handle_by_index((unsigned)g, device));
    }
    END(NVML_ERROR_NOT_FOUND);
}

EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index) {
    BEGIN("nvmlDeviceGetIndex", device, 1);
    if (index == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *index = (unsigned)device->gpu;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minor) {
    BEGIN("nvmlDeviceGetMinorNumber", device, 1);
    if (minor == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *minor = (unsigned)device->gpu;
    END(NVML_SUCCESS);
}

/* -- static fields ---------------------------------------------------------------------------------- */

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    BEGIN("nvmlDeviceGetName", device, 1);
    END(copy_string(name, length, dev_of(device)->name));
}
EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    BEGIN("nvmlDeviceGetUUID", device, 1);
    END(copy_string(uuid, length, dev_of(device)->uuid));
}
EXPORT nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t device, char *serial, unsigned int length) {
    BEGIN("nvmlDeviceGetSerial", device, 1);
    char text[32];
    snprintf(text, sizeof(text), "13230000%05d", device->gpu);
    END(copy_string(serial, length, text));
}
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    BEGIN("nvmlDeviceGetPciInfo_v3", device, 1);
    if (pci == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    memset(pci, 0, sizeof(*pci));
    bus_id(device->gpu, pci->busId, sizeof(pci->busId));
    snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "0000:%02X:00.0", 0x18 + device->gpu * 0x10);
    pci->bus = (unsigned)(0x18 + device->gpu * 0x10);
    pci->pciDeviceId = 0x233010DE;
    pci->pciSubSystemId = 0x16C110DE;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int *major, int *minor) {
    BEGIN("nvmlDeviceGetCudaComputeCapability", device, 1);
    if (major == NULL || minor == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *major = 9;
    *minor = 0;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t device, int *mode) {
    BEGIN("nvmlDeviceGetPersistenceMode", device, 1);
    if (mode == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *mode = 1;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetDisplayActive(nvmlDevice_t device, int *active) {
    BEGIN("nvmlDeviceGetDisplayActive", device, 1);
    if (active == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *active = 0;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetDisplayMode(nvmlDevice_t device, int *mode) {
    BEGIN("nvmlDeviceGetDisplayMode", device, 1);
    if (mode == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *mode = 0;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t device, int *mode) {
    BEGIN("nvmlDeviceGetComputeMode", device, 1);
    if (mode == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *mode = 0;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetBAR1MemoryInfo(nvmlDevice_t device, nvmlBAR1Memory_t *bar1) {
    BEGIN("nvmlDeviceGetBAR1MemoryInfo", device, 1);
    if (bar1 == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    bar1->bar1Total = 128 * GIB;
    bar1->bar1Used = 32 * MIB;
    bar1->bar1Free = bar1->bar1Total - bar1->bar1Used;
    END(NVML_SUCCESS);
}

/* Queries a Linux driver answers NOT_SUPPORTED on these GPUs (driver model is Windows only;
 * the simulated GPUs have no ECC). Present, so clients see the driver's answer. */
#define NOT_SUPPORTED_QUERY(symbol)                                                            \
    EXPORT nvmlReturn_t symbol(nvmlDevice_t device, void *a, void *b, void *c) {               \
        (void)a;                                                                               \
        (void)b;                                                                               \
        (void)c;                                                                               \
        BEGIN(#symbol, device, 1);                                                             \
        END(NVML_ERROR_NOT_SUPPORTED);                                                         \
    }
NOT_SUPPORTED_QUERY(nvmlDeviceGetDriverModel)
NOT_SUPPORTED_QUERY(nvmlDeviceGetDriverModel_v2)
NOT_SUPPORTED_QUERY(nvmlDeviceGetEccMode)
NOT_SUPPORTED_QUERY(nvmlDeviceGetTotalEccErrors)

/* -- fast and slow fields ---------------------------------------------------------------------------- */

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    BEGIN("nvmlDeviceGetMemoryInfo", device, 1);
    if (memory == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    unsigned long long total, reserved, used;
    memory_of(device, &total, &reserved, &used);
    /* v1 folds the reserved memory into used, as the driver does */
    memory->total = total;
    memory->used = used + reserved;
    memory->free = total - memory->used;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    BEGIN("nvmlDeviceGetMemoryInfo_v2", device, 1);
    if (memory == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    if (memory->version != STRUCT_VERSION(nvmlMemory_v2_t, 2)) END(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    unsigned long long total, reserved, used;
    memory_of(device, &total, &reserved, &used);
    memory->total = total;
    memory->reserved = reserved;
    memory->used = used;
    memory->free = total - reserved - used;
    END(NVML_SUCCESS);
}

#define PHYSICAL_ONLY(device)                                      \
    if ((device)->mig >= 0) END(NVML_ERROR_NOT_SUPPORTED)

EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *util) {
    BEGIN("nvmlDeviceGetUtilizationRates", device, 1);
    PHYSICAL_ONLY(device);
    if (util == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    util->gpu = dev_of(device)->util_gpu;
    util->memory = dev_of(device)->util_mem;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetEncoderUtilization(nvmlDevice_t device, unsigned int *util,
                                                    unsigned int *period_us) {
    BEGIN("nvmlDeviceGetEncoderUtilization", device, 1);
    PHYSICAL_ONLY(device);
    if (util == NULL || period_us == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *util = 0;
    *period_us = 167000;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetDecoderUtilization(nvmlDevice_t device, unsigned int *util,
                                                    unsigned int *period_us) {
    BEGIN("nvmlDeviceGetDecoderUtilization", device, 1);
    PHYSICAL_ONLY(device);
    if (util == NULL || period_us == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *util = 0;
    *period_us = 167000;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensor, unsigned int *temp) {
    BEGIN("nvmlDeviceGetTemperature", device, 1);
    PHYSICAL_ONLY(device);
    if (temp == NULL || sensor != 0) END(NVML_ERROR_INVALID_ARGUMENT);
    *temp = dev_of(device)->temp;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t device, nvmlTemperature_v1_t *temp) {
    BEGIN("nvmlDeviceGetTemperatureV", device, 1);
    PHYSICAL_ONLY(device);
    if (temp == NULL || temp->sensorType != 0) END(NVML_ERROR_INVALID_ARGUMENT);
    if (temp->version != STRUCT_VERSION(nvmlTemperature_v1_t, 1)) END(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    temp->temperature = (int)dev_of(device)->temp;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetFanSpeed(nvmlDevice_t device, unsigned int *speed) {
    BEGIN("nvmlDeviceGetFanSpeed", device, 1);
    PHYSICAL_ONLY(device);
    if (speed == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *speed = dev_of(device)->fan;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetFanSpeed_v2(nvmlDevice_t device, unsigned int fan, unsigned int *speed) {
    BEGIN("nvmlDeviceGetFanSpeed_v2", device, 1);
    PHYSICAL_ONLY(device);
    if (speed == NULL || fan != 0) END(NVML_ERROR_INVALID_ARGUMENT);
    *speed = dev_of(device)->fan;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetNumFans(nvmlDevice_t device, unsigned int *count) {
    BEGIN("nvmlDeviceGetNumFans", device, 1);
    PHYSICAL_ONLY(device);
    if (count == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *count = 1;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    BEGIN("nvmlDeviceGetPowerUsage", device, 1);
    PHYSICAL_ONLY(device);
    if (power == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *power = dev_of(device)->power;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit) {
    BEGIN("nvmlDeviceGetEnforcedPowerLimit", device, 1);
    PHYSICAL_ONLY(device);
    if (limit == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *limit = dev_of(device)->power_limit;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t device, unsigned int *limit) {
    BEGIN("nvmlDeviceGetPowerManagementLimit", device, 1);
    PHYSICAL_ONLY(device);
    if (limit == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *limit = dev_of(device)->power_limit;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, int type, unsigned int *clock) {
    BEGIN("nvmlDeviceGetClockInfo", device, 1);
    PHYSICAL_ONLY(device);
    if (clock == NULL || type < 0 || type > 3) END(NVML_ERROR_INVALID_ARGUMENT);
    *clock = type == 2 ? dev_of(device)->clock_mem : dev_of(device)->clock_sm;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t device, int type, unsigned int *clock) {
    BEGIN("nvmlDeviceGetMaxClockInfo", device, 1);
    PHYSICAL_ONLY(device);
    if (clock == NULL || type < 0 || type > 3) END(NVML_ERROR_INVALID_ARGUMENT);
    *clock = type == 2 ? dev_of(device)->clock_mem : dev_of(device)->clock_max;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t device, int *pstate) {
    BEGIN("nvmlDeviceGetPerformanceState", device, 1);
    PHYSICAL_ONLY(device);
    if (pstate == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *pstate = (int)dev_of(device)->pstate;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t device, int counter, unsigned int *value) {
    BEGIN("nvmlDeviceGetPcieThroughput", device, 1);
    PHYSICAL_ONLY(device);
    if (value == NULL || counter < 0 || counter > 1) END(NVML_ERROR_INVALID_ARGUMENT);
    *value = counter == 0 ? 1200 : 800; /* KB/s */
    END(NVML_SUCCESS);
}

/* -- MIG ---------------------------------------------------------------------------------------- */

EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *current, unsigned int *pending) {
    BEGIN("nvmlDeviceGetMigMode", device, 1);
    if (current == NULL || pending == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    int mode = state.gpus[device->gpu].mig_mode;
    if (mode < 0 || device->mig >= 0) END(NVML_ERROR_NOT_SUPPORTED);
    *current = (unsigned)mode;
    *pending = (unsigned)mode;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count) {
    BEGIN("nvmlDeviceGetMaxMigDeviceCount", device, 1);
    if (count == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    if (state.gpus[device->gpu].mig_mode < 0 || device->mig >= 0) END(NVML_ERROR_NOT_SUPPORTED);
    *count = MAX_MIG;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index,
                                                        nvmlDevice_t *mig) {
    BEGIN("nvmlDeviceGetMigDeviceHandleByIndex", device, 1);
    if (mig == NULL || device->mig >= 0 || index >= MAX_MIG) END(NVML_ERROR_INVALID_ARGUMENT);
    if (state.gpus[device->gpu].mig_mode != 1) END(NVML_ERROR_INVALID_ARGUMENT);
    if (!state.migs[device->gpu][index].present) END(NVML_ERROR_NOT_FOUND);
    handles[device->gpu][index + 1].gpu = device->gpu;
    handles[device->gpu][index + 1].mig = (int)index;
    *mig = &handles[device->gpu][index + 1];
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned int *is_mig) {
    BEGIN("nvmlDeviceIsMigDeviceHandle", device, 1);
    if (is_mig == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    *is_mig = device->mig >= 0;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t mig, nvmlDevice_t *device) {
    BEGIN("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", mig, 1);
    if (device == NULL || mig->mig < 0) END(NVML_ERROR_INVALID_ARGUMENT);
    *device = &handles[mig->gpu][0];
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id) {
    BEGIN("nvmlDeviceGetGpuInstanceId", device, 1);
    if (id == NULL || device->mig < 0) END(NVML_ERROR_INVALID_ARGUMENT);
    *id = dev_of(device)->gi;
    END(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t device, unsigned int *id) {
    BEGIN("nvmlDeviceGetComputeInstanceId", device, 1);
    if (id == NULL || device->mig < 0) END(NVML_ERROR_INVALID_ARGUMENT);
    *id = dev_of(device)->ci;
    END(NVML_SUCCESS);
}

/* -- processes ------------------------------------------------------------------------------------ */

/* The two-call protocol: a NULL or too small buffer gets INSUFFICIENT_SIZE and the count. */
static nvmlReturn_t list_processes(nvmlDevice_t device, unsigned kind, unsigned int *count,
                                   void *infos, size_t record) {
    if (count == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned n = 0;
    for (int i = 0; i < state.nprocs; i++)
        if ((state.procs[i].kinds & kind) && proc_on(&state.procs[i], device)) n++;
    if (n == 0) {
        *count = 0;
        return NVML_SUCCESS;
    }
    if (infos == NULL || *count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    unsigned k = 0;
    for (int i = 0; i < state.nprocs; i++) {
        const struct sim_proc *p = &state.procs[i];
        if (!(p->kinds & kind) || !proc_on(p, device)) continue;
        unsigned gi = NO_INSTANCE, ci = NO_INSTANCE;
        if (p->mig >= 0) {
            gi = state.migs[p->gpu][p->mig].gi;
            ci = state.migs[p->gpu][p->mig].ci;
        }
        char *at = (char *)infos + (size_t)k * record;
        if (record == sizeof(proc_v1_t)) {
            proc_v1_t r = {p->pid, proc_used(p)};
            memcpy(at, &r, sizeof(r));
        } else if (record == sizeof(proc_v2_t)) {
            proc_v2_t r = {p->pid, proc_used(p), gi, ci};
            memcpy(at, &r, sizeof(r));
        } else {
            proc_v3cc_t r = {p->pid, proc_used(p), gi, ci, 0};
            memcpy(at, &r, sizeof(r));
        }
        k++;
    }
    *count = k;
    return NVML_SUCCESS;
}

#define PROCESS_GETTER(symbol, kind, record)                                                   \
    EXPORT nvmlReturn_t symbol(nvmlDevice_t device, unsigned int *count, void *infos) {        \
        BEGIN(#symbol, device, 1);                                                             \
        END(list_processes(device, (kind), count, infos, (record)));                           \
    }

PROCESS_GETTER(nvmlDeviceGetComputeRunningProcesses, KIND_COMPUTE, sizeof(proc_v1_t))
PROCESS_GETTER(nvmlDeviceGetGraphicsRunningProcesses, KIND_GRAPHICS, sizeof(proc_v1_t))
PROCESS_GETTER(nvmlDeviceGetMPSComputeRunningProcesses, KIND_MPS, sizeof(proc_v1_t))
PROCESS_GETTER(nvmlDeviceGetComputeRunningProcesses_v2, KIND_COMPUTE, sizeof(proc_v2_t))
PROCESS_GETTER(nvmlDeviceGetGraphicsRunningProcesses_v2, KIND_GRAPHICS, sizeof(proc_v2_t))
PROCESS_GETTER(nvmlDeviceGetMPSComputeRunningProcesses_v2, KIND_MPS, sizeof(proc_v2_t))
#if SIM_V3_RECORD > 0
PROCESS_GETTER(nvmlDeviceGetComputeRunningProcesses_v3, KIND_COMPUTE, SIM_V3_RECORD)
PROCESS_GETTER(nvmlDeviceGetGraphicsRunningProcesses_v3, KIND_GRAPHICS, SIM_V3_RECORD)
PROCESS_GETTER(nvmlDeviceGetMPSComputeRunningProcesses_v3, KIND_MPS, SIM_V3_RECORD)
#endif

#if SIM_CC_EXPORTS
EXPORT nvmlReturn_t nvmlDeviceGetConfComputeMemSizeInfo(nvmlDevice_t device,
                                                        nvmlConfComputeMemSizeInfo_t *info) {
    BEGIN("nvmlDeviceGetConfComputeMemSizeInfo", device, 1);
    (void)info;
    END(NVML_ERROR_NOT_SUPPORTED);
}
#endif
#if SIM_DETAIL_LIST
EXPORT nvmlReturn_t nvmlDeviceGetRunningProcessDetailList(nvmlDevice_t device, void *list) {
    BEGIN("nvmlDeviceGetRunningProcessDetailList", device, 1);
    (void)list;
    END(NVML_ERROR_NOT_SUPPORTED);
}
#endif

/*
 * Per-process utilisation: the driver keeps samples taken every util_period_ms for the busy
 * processes (those with sm= or mem= in the scenario) over the last ten periods; a caller gets
 * those newer than lastSeenTimeStamp (wall-clock microseconds), NOT_FOUND when there are none.
 */
EXPORT nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t device,
                                                    nvmlProcessUtilizationSample_t *samples,
                                                    unsigned int *count,
                                                    unsigned long long last_seen) {
    BEGIN("nvmlDeviceGetProcessUtilization", device, 1);
    PHYSICAL_ONLY(device);
    if (count == NULL) END(NVML_ERROR_INVALID_ARGUMENT);
    unsigned long long period = (unsigned long long)state.util_period_ms * 1000ULL;
    unsigned long long now = wall_us();
    unsigned long long newest = now - now % period;
    unsigned n = 0;
    for (int k = 0; k < 10; k++) {
        unsigned long long ts = newest - (unsigned long long)k * period;
        if (ts <= last_seen) break;
        for (int i = 0; i < state.nprocs; i++)
            if (state.procs[i].has_util && proc_on(&state.procs[i], device)) n++;
    }
    if (n == 0) END(NVML_ERROR_NOT_FOUND);
    if (samples == NULL || *count < n) {
        *count = n;
        END(NVML_ERROR_INSUFFICIENT_SIZE);
    }
    unsigned w = 0;
    for (int k = 0; k < 10; k++) {
        unsigned long long ts = newest - (unsigned long long)k * period;
        if (ts <= last_seen) break;
        for (int i = 0; i < state.nprocs; i++) {
            const struct sim_proc *p = &state.procs[i];
            if (!p->has_util || !proc_on(p, device)) continue;
            samples[w].pid = p->pid;
            samples[w].timeStamp = ts;
            samples[w].smUtil = p->sm;
            samples[w].memUtil = p->mem;
            samples[w].encUtil = 0;
            samples[w].decUtil = 0;
            w++;
        }
    }
    *count = w;
    END(NVML_SUCCESS);
}
