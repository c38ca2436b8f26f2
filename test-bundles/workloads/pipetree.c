/* pipetree: a parent, its child (own process group) and a grandchild, talking
 * over pipes with bytes always in flight. The parent sends sequence numbers
 * to the child (pipe a), the child answers 2n+1 (pipe b), ~100 messages in
 * flight; the grandchild sends an increasing heartbeat (pipe c) and checks its
 * parent is still the child. Prints "<n> ok" per tick (parent).
 *
 *   pipetree file [interval_ms] */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void xread(int fd, void *b, size_t n) {
    if (read(fd, b, n) != (ssize_t)n) _exit(10);
}
static void xwrite(int fd, const void *b, size_t n) {
    if (write(fd, b, n) != (ssize_t)n) _exit(11);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long ms = argc > 2 ? atol(argv[2]) : 10;
    FILE *f = fopen(argv[1], "a");
    int a[2], b[2], c[2];
    if (!f || pipe(a) || pipe(b) || pipe(c)) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    pid_t child = fork();
    if (child == 0) {
        setpgid(0, 0);
        pid_t me = getpid();
        if (fork() == 0) {
            /* grandchild */
            fcntl(c[1], F_SETFL, O_NONBLOCK);
            struct timespec t = {0, 5000000};
            for (uint64_t h = 1;; h++) {
                uint64_t v = getppid() == me ? h : 0;
                (void)!write(c[1], &v, 8);
                nanosleep(&t, 0);
            }
        }
        for (;;) {
            uint64_t v;
            xread(a[0], &v, 8);
            v = 2 * v + 1;
            xwrite(b[1], &v, 8);
        }
    }
    fcntl(c[0], F_SETFL, O_NONBLOCK);
    uint64_t sent = 0, got = 0, last_h = 0;
    for (; sent < 100; sent++) xwrite(a[1], &sent, 8);
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    for (unsigned long n = 0;; n++) {
        const char *bad = 0;
        for (int k = 0; k < 10 && !bad; k++) {
            uint64_t v;
            xread(b[0], &v, 8);
            if (v != 2 * got + 1) bad = "answer out of sequence";
            got++;
            xwrite(a[1], &sent, 8);
            sent++;
        }
        uint64_t h;
        while (!bad && read(c[0], &h, 8) == 8) {
            if (h == 0) bad = "grandchild lost its parent";
            else if (h <= last_h) bad = "heartbeat went back";
            last_h = h;
        }
        if (!bad && getpgid(child) != child) bad = "child process group";
        if (bad) { fprintf(f, "%lu BAD %s\n", n, bad); return 1; }
        fprintf(f, "%lu ok\n", n);
        nanosleep(&t, 0);
    }
}
