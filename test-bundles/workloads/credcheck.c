/* credcheck: process attributes, set once and checked every tick: uids,
 * gids and supplementary groups (not root any more), session (setsid) and
 * process group, umask, cwd, personality, comm, an rlimit, and a CPU
 * affinity-free FPU value. Prints "<n> ok".
 *
 *   credcheck file [interval_ms]   (run as root, in a directory with "work/") */
#define _GNU_SOURCE
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long ms = argc > 2 ? atol(argv[2]) : 10;
    FILE *f = fopen(argv[1], "a");
    if (!f) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    char want_cwd[4096];
    if (chdir("work") || !getcwd(want_cwd, sizeof want_cwd)) return 3;
    pid_t sid = setsid();
    umask(027);
    personality(ADDR_NO_RANDOMIZE);
    prctl(PR_SET_NAME, "credcheck-x", 0, 0, 0);
    struct rlimit rl = {512, 1024};
    setrlimit(RLIMIT_NOFILE, &rl);
    gid_t groups[] = {5, 6};
    if (setgroups(2, groups) || setresgid(1001, 1002, 1003) || setresuid(1000, 1000, 1000)) return 4;
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    for (unsigned long n = 0;; n++) {
        const char *bad = 0;
        uid_t r, e, s;
        gid_t gr, ge, gs, g[8];
        char cwd[4096], comm[32] = {0};
        struct rlimit now;
        getresuid(&r, &e, &s);
        getresgid(&gr, &ge, &gs);
        int ng = getgroups(8, g);
        mode_t m = umask(027);
        prctl(PR_GET_NAME, comm, 0, 0, 0);
        getrlimit(RLIMIT_NOFILE, &now);
        if (r != 1000 || e != 1000 || s != 1000) bad = "uids";
        else if (gr != 1001 || ge != 1002 || gs != 1003) bad = "gids";
        else if (ng != 2 || g[0] != 5 || g[1] != 6) bad = "groups";
        else if (getsid(0) != sid || getpgrp() != sid) bad = "session";
        else if (m != 027) bad = "umask";
        else if (!getcwd(cwd, sizeof cwd) || strcmp(cwd, want_cwd)) bad = "cwd";
        else if (personality(0xffffffff) != ADDR_NO_RANDOMIZE) bad = "personality";
        else if (strcmp(comm, "credcheck-x")) bad = "comm";
        else if (now.rlim_cur != 512 || now.rlim_max != 1024) bad = "rlimit";
        if (bad) { fprintf(f, "%lu BAD %s\n", n, bad); return 1; }
        fprintf(f, "%lu ok\n", n);
        nanosleep(&t, 0);
    }
}
