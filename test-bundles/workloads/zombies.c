/* zombies: a parent that keeps unreaped children, as a daemonizing server
 * leaves them for its parent: A exited with status 7; B led its own process
 * group, which a live child C joined, and was killed by SIGTERM (a zombie
 * group leader). Every tick the parent checks that A and B are still
 * zombies and that C is still in B's group, and prints "<n> ok" (or BAD).
 * Once FILE.reap exists it reaps A and B and prints
 * "<n> reaped a=exit:7 b=signal:15" (BAD on anything else).
 *
 *   zombies file [interval_ms] */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char state_of(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long ms = argc > 2 ? atol(argv[2]) : 10;
    FILE *f = fopen(argv[1], "a");
    if (!f) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    char reap[4096];
    snprintf(reap, sizeof reap, "%s.reap", argv[1]);
    int ready[2], go[2];
    if (pipe(ready) || pipe(go)) return 2;

    pid_t a = fork();
    if (a == 0) _exit(7);

    pid_t b = fork();
    if (b == 0) {
        setpgid(0, 0);
        char x = 1;
        (void)!write(ready[1], &x, 1);
        for (;;) pause();
    }
    char x;
    if (read(ready[0], &x, 1) != 1) return 3;

    pid_t c = fork();
    if (c == 0) {
        if (setpgid(0, b)) _exit(4);
        (void)!write(ready[1], &x, 1);
        struct timespec t = {0, 20000000};
        for (;;) nanosleep(&t, 0);
    }
    if (read(ready[0], &x, 1) != 1) return 3;
    kill(b, SIGTERM);
    /* Both are zombies before the first tick. */
    while (state_of(a) != 'Z' || state_of(b) != 'Z') {
        struct timespec t = {0, 1000000};
        nanosleep(&t, 0);
    }

    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    int reaped = 0;
    for (unsigned long n = 0;; n++) {
        if (!reaped && access(reap, F_OK) == 0) {
            int sa = 0, sb = 0;
            pid_t ra = waitpid(a, &sa, WNOHANG), rb = waitpid(b, &sb, WNOHANG);
            int good = ra == a && rb == b && WIFEXITED(sa) && WEXITSTATUS(sa) == 7 &&
                       WIFSIGNALED(sb) && WTERMSIG(sb) == SIGTERM;
            fprintf(f, "%lu reaped a=%s:%d b=%s:%d%s\n", n,
                    ra == a ? (WIFEXITED(sa) ? "exit" : "signal") : "none",
                    WIFEXITED(sa) ? WEXITSTATUS(sa) : WTERMSIG(sa),
                    rb == b ? (WIFEXITED(sb) ? "exit" : "signal") : "none",
                    WIFEXITED(sb) ? WEXITSTATUS(sb) : WTERMSIG(sb), good ? "" : " BAD");
            reaped = 1;
            continue;
        }
        const char *bad = 0;
        if (!reaped && state_of(a) != 'Z') bad = "A is not a zombie";
        else if (!reaped && state_of(b) != 'Z') bad = "B is not a zombie";
        else if (getpgid(c) != b) bad = "C left B's group";
        if (bad) fprintf(f, "%lu BAD %s\n", n, bad);
        else fprintf(f, "%lu ok\n", n);
        nanosleep(&t, 0);
    }
}
