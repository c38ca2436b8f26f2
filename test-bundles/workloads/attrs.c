/* attrs: per-task attributes that must survive a checkpoint. Sets them once
 * (child subreaper, THP disable, timer slack, nice 5, SCHED_BATCH, idle-class
 * I/O priority, oom_score_adj +100, a robust futex list of its own), and a
 * child sets a parent-death signal (the root's parent changes at restore)
 * and reports it through shared memory; every tick the parent reads each
 * back and prints "<n> ok", or "<n> BAD <what>" for the first that changed.
 *
 *   attrs file [interval_ms] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static struct robust_list_head head;

static int oom_adj(void) {
    char b[32] = {0};
    int fd = open("/proc/self/oom_score_adj", O_RDONLY);
    if (fd < 0) return -9999;
    (void)!read(fd, b, sizeof b - 1);
    close(fd);
    return atoi(b);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long ms = argc > 2 ? atol(argv[2]) : 10;
    FILE *f = fopen(argv[1], "a");
    if (!f) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    int oom = oom_adj() + 100;
    if (oom > 1000) oom = 1000;
    char ob[16];
    int fd = open("/proc/self/oom_score_adj", O_WRONLY);
    if (fd < 0 || write(fd, ob, snprintf(ob, sizeof ob, "%d", oom)) < 0) return 3;
    close(fd);
    head.list.next = &head.list;
    head.futex_offset = 0;
    volatile int *child_pdeath = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (child_pdeath == MAP_FAILED) return 2;
    *child_pdeath = -1;
    if (fork() == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGUSR2)) _exit(6);
        struct timespec c = {0, 5000000};
        for (;;) {
            int s = 0;
            *child_pdeath = prctl(PR_GET_PDEATHSIG, &s) ? -2 : s;
            nanosleep(&c, 0);
        }
    }
    while (*child_pdeath == -1) {
        struct timespec c = {0, 1000000};
        nanosleep(&c, 0);
    }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) ||
        prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) || prctl(PR_SET_TIMERSLACK, 123456) ||
        setpriority(PRIO_PROCESS, 0, 5) ||
        syscall(SYS_set_robust_list, &head, sizeof head) ||
        syscall(SYS_ioprio_set, 1, 0, 3 << 13)) /* IOPRIO_CLASS_IDLE */
        return 4;
    struct sched_param sp = {0};
    if (sched_setscheduler(0, SCHED_BATCH, &sp)) return 5;

    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    for (unsigned long n = 0;; n++) {
        int v = 0;
        const char *bad = 0;
        struct robust_list_head *h = 0;
        size_t len = 0;
        if (prctl(PR_GET_CHILD_SUBREAPER, &v) || v != 1) bad = "child_subreaper";
        else if (*child_pdeath != SIGUSR2) bad = "pdeath_signal (child)";
        else if (prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) != 1) bad = "thp_disable";
        else if (prctl(PR_GET_TIMERSLACK) != 123456) bad = "timer_slack";
        else if (prctl(PR_GET_DUMPABLE) != 1) bad = "dumpable";
        else if (getpriority(PRIO_PROCESS, 0) != 5) bad = "nice";
        else if (sched_getscheduler(0) != SCHED_BATCH) bad = "sched_policy";
        else if (syscall(SYS_ioprio_get, 1, 0) != (3 << 13)) bad = "ioprio";
        else if (oom_adj() != oom) bad = "oom_score_adj";
        else if (syscall(SYS_get_robust_list, 0, &h, &len) || h != &head || len != sizeof head)
            bad = "robust_list";
        if (bad) fprintf(f, "%lu BAD %s\n", n, bad);
        else fprintf(f, "%lu ok\n", n);
        nanosleep(&t, 0);
    }
}
