/* sigcheck: a SIGUSR1 handler (SA_ONSTACK|SA_RESTART) on a sigaltstack, a
 * blocked SIGUSR2 kept pending, a SIGALRM itimer and a POSIX timer
 * (SIGRTMIN with a value). Each tick raises SIGUSR1 and checks the handler
 * ran on the alternate stack, SIGUSR2 is still pending, the dispositions are
 * unchanged and both timers keep firing (the POSIX one with its id and value).
 * Prints "<n> ok <usr1> <alrm> <rt>".
 *
 *   sigcheck file [interval_ms] */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char alt[65536];
static volatile sig_atomic_t usr1, alrm, off_stack, rt, rt_bad;
static timer_t tid;

static void on_rt(int s, siginfo_t *si, void *uc) {
    (void)s;
    (void)uc;
    if (si->si_value.sival_int != 4242 || si->si_timerid != (int)(intptr_t)tid) rt_bad = 1;
    rt++;
}

static void on_usr1(int s) {
    char here;
    (void)s;
    if (&here < alt || &here >= alt + sizeof alt) off_stack = 1;
    usr1++;
}
static void on_alrm(int s) { (void)s; alrm++; }

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long ms = argc > 2 ? atol(argv[2]) : 10;
    FILE *f = fopen(argv[1], "a");
    if (!f) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
    if (sigaltstack(&ss, 0)) return 3;
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_ONSTACK | SA_RESTART;
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGUSR1, &sa, 0);
    struct sigaction sb = {0};
    sb.sa_handler = on_alrm;
    sigaction(SIGALRM, &sb, 0);
    signal(SIGPIPE, SIG_IGN);
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    sigaddset(&m, SIGWINCH);
    sigprocmask(SIG_BLOCK, &m, 0);
    raise(SIGUSR2);               /* pending for this thread */
    kill(getpid(), SIGWINCH);     /* pending for the process */
    struct itimerval it = {{0, 20000}, {0, 20000}};
    setitimer(ITIMER_REAL, &it, 0);
    struct sigaction sr = {0};
    sr.sa_sigaction = on_rt;
    sr.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGRTMIN, &sr, 0);
    /* A second, unused timer first so the checked one does not have id 0. */
    timer_t unused;
    struct sigevent none = {.sigev_notify = SIGEV_NONE};
    timer_create(CLOCK_MONOTONIC, &none, &unused);
    struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN, .sigev_value.sival_int = 4242};
    if (timer_create(CLOCK_MONOTONIC, &sev, &tid)) return 4;
    struct itimerspec its = {{0, 15000000}, {0, 15000000}};
    timer_settime(tid, 0, &its, 0);
    int last_rt = 0;
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    int last_alrm = 0;
    for (unsigned long n = 0;; n++) {
        int before = usr1;
        raise(SIGUSR1);
        const char *bad = 0;
        sigset_t p;
        sigpending(&p);
        stack_t cur;
        sigaltstack(0, &cur);
        struct sigaction q;
        sigaction(SIGUSR1, 0, &q);
        sigset_t blocked;
        sigprocmask(SIG_BLOCK, 0, &blocked);
        if (usr1 != before + 1) bad = "handler did not run";
        else if (off_stack) bad = "handler not on altstack";
        else if (!sigismember(&p, SIGUSR2)) bad = "SIGUSR2 no longer pending";
        else if (!sigismember(&p, SIGWINCH)) bad = "process-wide SIGWINCH no longer pending";
        else if (!sigismember(&blocked, SIGUSR2)) bad = "mask lost";
        else if (cur.ss_sp != alt || cur.ss_size != sizeof alt) bad = "altstack changed";
        else if (q.sa_handler != on_usr1 || !(q.sa_flags & SA_ONSTACK) || !sigismember(&q.sa_mask, SIGTERM)) bad = "sigaction changed";
        else if (rt_bad) bad = "POSIX timer signal with wrong id or value";
        else if (n % 50 == 49) {
            if (alrm == last_alrm) bad = "itimer stopped";
            else if (rt == last_rt) bad = "POSIX timer stopped";
            last_alrm = alrm;
            last_rt = rt;
        }
        if (bad) { fprintf(f, "%lu BAD %s\n", n, bad); return 1; }
        fprintf(f, "%lu ok %d %d %d\n", n, (int)usr1, (int)alrm, (int)rt);
        nanosleep(&t, 0);
    }
}
