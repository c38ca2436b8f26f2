/* denied: a counter for a container whose seccomp profile denies mkdir.
 * Each tick tries mkdir and must fail with errno EXPECTED (the profile's
 * errnoRet); prints "<n> ok <errno>", or "<n> BAD ..." and exits 1 if mkdir
 * succeeded or failed otherwise. It sets nothing up itself: its user,
 * groups, capabilities, no_new_privs and filter all come from the spec.
 *
 *   denied file expected_errno [interval_ms] */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int expected = atoi(argv[2]);
    long ms = argc > 3 ? atol(argv[3]) : 10;
    FILE *f = fopen(argv[1], "a");
    if (!f) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    for (unsigned long n = 0;; n++) {
        char dir[64];
        snprintf(dir, sizeof dir, "/tmp/denied-%lu", n);
        errno = 0;
        int r = mkdir(dir, 0700);
        int e = errno;
        if (r == 0) { fprintf(f, "%lu BAD mkdir %s succeeded\n", n, dir); return 1; }
        if (e != expected) { fprintf(f, "%lu BAD mkdir errno %d, not %d\n", n, e, expected); return 1; }
        fprintf(f, "%lu ok %d\n", n, e);
        nanosleep(&t, 0);
    }
}
