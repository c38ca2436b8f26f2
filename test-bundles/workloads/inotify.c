/* inotify: a counter that also holds an inotify fd, a kind of file the
 * dumper does not support; "<n> ok" per tick.   inotify file [interval_ms] */
#include <stdio.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <time.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long ms = argc > 2 ? atol(argv[2]) : 10;
    FILE *f = fopen(argv[1], "a");
    if (!f || inotify_init1(0) < 0) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    for (unsigned long n = 0;; n++) {
        fprintf(f, "%lu ok\n", n);
        nanosleep(&t, 0);
    }
}
