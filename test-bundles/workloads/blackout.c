/* blackout: measures the longest pause it lives through, the figure a
 * migration is judged by. Holds MiB of touched anonymous memory and N idle
 * threads; the main thread reads CLOCK_REALTIME (not time-namespaced, so a
 * restore's clock offsets do not hide the pause) every millisecond and, every
 * 100 ms, appends "<n> <longest gap in µs so far> <memory ok|BAD>" to FILE.
 *
 *   blackout MiB THREADS FILE */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void *idle(void *arg) {
    (void)arg;
    for (;;) pause();
    return NULL;
}

static long long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    size_t len = (size_t)atol(argv[1]) << 20;
    int threads = atoi(argv[2]);
    FILE *f = fopen(argv[3], "a");
    if (!f) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    unsigned char *mem = len ? mmap(NULL, len, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : NULL;
    if (len && mem == MAP_FAILED) return 3;
    for (size_t i = 0; i < len; i += 4096) mem[i] = (unsigned char)(i >> 12);
    for (int i = 0; i < threads; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, idle, NULL)) return 4;
    }
    long long last = now_us(), worst = 0, next_report = last;
    struct timespec ms = {0, 1000000L};
    for (unsigned long n = 0;;) {
        nanosleep(&ms, NULL);
        long long t = now_us();
        if (t - last > worst) worst = t - last;
        last = t;
        if (t >= next_report) {
            int ok = 1;
            for (size_t i = 0; i < len; i += 1 << 20)
                if (mem[i] != (unsigned char)(i >> 12)) ok = 0;
            fprintf(f, "%lu %lld %s\n", n++, worst, ok ? "ok" : "BAD");
            next_report = t + 100000;
        }
    }
}
