/* sleepcheck: one long nanosleep (with the remaining time asked for) per
 * round; a round must take at least its full length and not restart from
 * the beginning after a checkpoint (measured with CLOCK_MONOTONIC, which
 * includes the blackout: no time namespace here).
 * Prints "<n> ok <ms>" after each round of MS milliseconds.
 *
 *   sleepcheck file [round_ms] */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long ms = argc > 2 ? atol(argv[2]) : 300;
    FILE *f = fopen(argv[1], "a");
    if (!f) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    for (unsigned long n = 0;; n++) {
        long t0 = now_ms();
        struct timespec req = {ms / 1000, (ms % 1000) * 1000000L}, rem;
        int r = nanosleep(&req, &rem);
        long took = now_ms() - t0;
        /* Returning early (EINTR) or sleeping far longer than asked (a restart
         * from the beginning adds the slept part again) are both failures. */
        if (r != 0) { fprintf(f, "%lu BAD nanosleep returned %d errno %d\n", n, r, errno); return 1; }
        if (took < ms) { fprintf(f, "%lu BAD slept %ld of %ld ms\n", n, took, ms); return 1; }
        fprintf(f, "%lu ok %ld\n", n, took);
    }
}
