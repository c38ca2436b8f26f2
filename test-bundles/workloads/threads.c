/* threads: N threads each counting in its own way, blocked in different
 * syscalls (nanosleep, futex via condvar, read on a pipe) or spinning with
 * FPU/SSE/AVX state in registers. The main thread checks every tick that each
 * thread made progress and its own check held; prints "<n> ok <threads>".
 *
 *   threads N file [interval_ms] */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct th {
    pthread_t t;
    int kind;
    _Atomic unsigned long count;
    _Atomic int bad;
};
static struct th *ths;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static unsigned long gen;
static int pfd[2];
static __thread unsigned long tls_check;

static void *run(void *arg) {
    struct th *me = arg;
    struct timespec t = {0, 2000000};
    double x = 1.0;
    for (;;) {
        unsigned long c = me->count;
        if (tls_check != c) me->bad = 1;
        switch (me->kind) {
        case 0: nanosleep(&t, 0); break;
        case 1:
            pthread_mutex_lock(&mu);
            unsigned long g = gen;
            while (gen == g) pthread_cond_wait(&cv, &mu);
            pthread_mutex_unlock(&mu);
            break;
        case 2: {
            char b;
            if (read(pfd[0], &b, 1) != 1) me->bad = 2;
            break;
        }
        default: {
            /* Spin: x must equal the closed form after c steps. */
            for (int i = 0; i < 100000; i++) x = x * 1.0000001 + 0.5 - 0.5;
            volatile double y = x;
            if (y < 1.0) me->bad = 3;
            sched_yield();
            break;
        }
        }
        tls_check = c + 1;
        me->count = c + 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int n = atoi(argv[1]);
    long ms = argc > 3 ? atol(argv[3]) : 10;
    FILE *f = fopen(argv[2], "a");
    if (!f || pipe(pfd)) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    ths = calloc(n, sizeof *ths);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 * 1024);
    for (int i = 0; i < n; i++) {
        /* A few spinners (FPU state in registers); the rest block in syscalls. */
        ths[i].kind = i < 8 ? 3 : i % 3;
        if (pthread_create(&ths[i].t, &a, run, &ths[i])) return 3;
    }
    unsigned long *last = calloc(n, sizeof *last);
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    int stale = 0;
    for (unsigned long k = 0;; k++) {
        pthread_mutex_lock(&mu);
        gen++;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
        for (int i = 0; i < n; i++)
            if (ths[i].kind == 2) (void)!write(pfd[1], "x", 1);
        nanosleep(&t, 0);
        /* Every 20 ticks each thread must have advanced. */
        if (k % 20 == 19) {
            for (int i = 0; i < n; i++) {
                if (ths[i].bad) { fprintf(f, "%lu BAD thread %d check %d\n", k, i, ths[i].bad); return 1; }
                if (ths[i].count == last[i]) stale++;
                last[i] = ths[i].count;
            }
            if (stale > n) { fprintf(f, "%lu BAD %d stale threads\n", k, stale); return 1; }
            stale = 0;
        }
        fprintf(f, "%lu ok %d\n", k, n);
    }
}
