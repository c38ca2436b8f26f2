/* seccheck: installs a seccomp filter that makes getppid() fail with errno
 * 99 and allows everything else; each tick checks that it still does and
 * that the process is in filter mode. Prints "<n> ok".
 *
 *   seccheck file [interval_ms] */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long ms = argc > 2 ? atol(argv[2]) : 10;
    FILE *f = fopen(argv[1], "a");
    if (!f) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 99),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fp = {sizeof prog / sizeof prog[0], prog};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fp)) return 3;
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    for (unsigned long n = 0;; n++) {
        errno = 0;
        long r = syscall(SYS_getppid);
        if (r != -1 || errno != 99) { fprintf(f, "%lu BAD getppid not filtered (%ld, %d)\n", n, r, errno); return 1; }
        if (prctl(PR_GET_SECCOMP) != 2) { fprintf(f, "%lu BAD seccomp mode\n", n); return 1; }
        if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) { fprintf(f, "%lu BAD no_new_privs\n", n); return 1; }
        fprintf(f, "%lu ok\n", n);
        nanosleep(&t, 0);
    }
}
