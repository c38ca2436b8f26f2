/* counter: prints an increasing number, one line per tick, so a test can see
 * a process stop (pause, checkpoint) and continue from where it left off.
 *
 *   counter [interval_ms] [file]
 *
 * Each line is "<n>\n". With [file], lines are also appended there (O_APPEND),
 * which survives a process whose stdout goes nowhere. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long interval_ms = argc > 1 ? atol(argv[1]) : 100;
    int fd = -1;
    if (argc > 2) {
        fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0) {
            perror(argv[2]);
            return 2;
        }
    }
    struct timespec tick = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
    for (unsigned long n = 0;; n++) {
        char line[32];
        int len = snprintf(line, sizeof line, "%lu\n", n);
        if (write(1, line, len) < 0 && fd < 0)
            return 3;
        if (fd >= 0 && write(fd, line, len) != len)
            return 4;
        nanosleep(&tick, NULL);
    }
}
