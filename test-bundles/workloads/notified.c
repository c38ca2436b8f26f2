/* notified: a counter that records migration notifications. Each tick appends
 * "<n> <signals seen>" to FILE; each SIGUSR1 (or the signal named by number in
 * argv[3]) adds one to the count.
 *
 *   notified FILE [interval_ms] [signo] */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t seen;

static void on_signal(int sig) {
    (void)sig;
    seen++;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long ms = argc > 2 ? atol(argv[2]) : 10;
    int signo = argc > 3 ? atoi(argv[3]) : SIGUSR1;
    FILE *f = fopen(argv[1], "a");
    if (!f) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    if (sigaction(signo, &sa, NULL) < 0) return 3;
    struct timespec tick = {ms / 1000, (ms % 1000) * 1000000L};
    for (unsigned long n = 0;; n++) {
        fprintf(f, "%lu %d\n", n, (int)seen);
        nanosleep(&tick, NULL);
    }
}
