/* credcheck: process attributes, set once and checked every tick: uids,
 * gids and supplementary groups (not root any more), session (setsid) and
 * process group, umask, cwd, personality, comm, an rlimit, and capabilities
 * kept as a non-root user (CAP_NET_BIND_SERVICE effective, permitted,
 * inheritable and ambient; CAP_NET_RAW out of the bounding set).
 * Prints "<n> ok".
 *
 *   credcheck file [interval_ms]   (run as root, in a directory with "work/") */
#define _GNU_SOURCE
#include <grp.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <stdint.h>
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
    if (prctl(PR_CAPBSET_DROP, CAP_NET_RAW, 0, 0, 0) || prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)) return 5;
    if (setgroups(2, groups) || setresgid(1001, 1002, 1003) || setresuid(1000, 1000, 1000)) return 4;
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct caps[2] = {{0}};
    caps[0].effective = caps[0].permitted = caps[0].inheritable = 1u << CAP_NET_BIND_SERVICE;
    if (syscall(SYS_capset, &hdr, caps)) return 6;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0)) return 7;
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
        else {
            struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
            struct __user_cap_data_struct d[2] = {{0}};
            uint32_t want = 1u << CAP_NET_BIND_SERVICE;
            if (syscall(SYS_capget, &h, d) || d[0].effective != want || d[0].permitted != want ||
                d[0].inheritable != want || d[1].effective || d[1].permitted)
                bad = "capabilities";
            else if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_BIND_SERVICE, 0, 0) != 1)
                bad = "ambient capabilities";
            else if (prctl(PR_CAPBSET_READ, CAP_NET_RAW, 0, 0, 0) != 0 || prctl(PR_CAPBSET_READ, CAP_CHOWN, 0, 0, 0) != 1)
                bad = "bounding set";
        }
        if (bad) { fprintf(f, "%lu BAD %s\n", n, bad); return 1; }
        fprintf(f, "%lu ok\n", n);
        nanosleep(&t, 0);
    }
}
