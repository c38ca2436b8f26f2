/* clockcheck: a counter that also watches its clocks. Each tick appends
 * "<n> <monotonic_ns> <boottime_ns> <ok|BACKWARDS>" to FILE, where BACKWARDS
 * means a clock read less than at the previous tick.
 *
 *   clockcheck FILE [interval_ms] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long now(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long ms = argc > 2 ? atol(argv[2]) : 10;
    FILE *f = fopen(argv[1], "a");
    if (!f) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    struct timespec tick = {ms / 1000, (ms % 1000) * 1000000L};
    long long last_mono = 0, last_boot = 0;
    for (unsigned long n = 0;; n++) {
        long long mono = now(CLOCK_MONOTONIC), boot = now(CLOCK_BOOTTIME);
        int ok = mono >= last_mono && boot >= last_boot;
        fprintf(f, "%lu %lld %lld %s\n", n, mono, boot, ok ? "ok" : "BACKWARDS");
        last_mono = mono;
        last_boot = boot;
        nanosleep(&tick, NULL);
    }
}
