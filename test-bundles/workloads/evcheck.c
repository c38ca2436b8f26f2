/* evcheck: an event loop on epoll over a periodic timerfd, an eventfd that
 * carries a count across ticks, and a signalfd for a blocked SIGUSR1. Every
 * timer tick adds 1 to the eventfd; every 3rd tick the count is read and must
 * be exactly 3; every 5th tick SIGUSR1 is raised and must arrive through the
 * signalfd before the next one. Epoll data values identify the fds. Prints
 * "<n> ok" per tick.
 *
 *   evcheck file [interval_ms] */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long ms = argc > 2 ? atol(argv[2]) : 10;
    FILE *f = fopen(argv[1], "a");
    if (!f) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigprocmask(SIG_BLOCK, &m, 0);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    int efd = eventfd(0, EFD_NONBLOCK);
    int sfd = signalfd(-1, &m, SFD_NONBLOCK);
    int ep = epoll_create1(0);
    if (tfd < 0 || efd < 0 || sfd < 0 || ep < 0) return 3;
    struct itimerspec it = {{ms / 1000, (ms % 1000) * 1000000L}, {ms / 1000, (ms % 1000) * 1000000L}};
    timerfd_settime(tfd, 0, &it, 0);
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = 0x7100};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &e);
    e.data.u64 = 0xe100;
    e.events = EPOLLIN | EPOLLET;
    epoll_ctl(ep, EPOLL_CTL_ADD, efd, &e);
    e.data.u64 = 0x5100;
    e.events = EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &e);
    unsigned long n = 0;
    int sig_outstanding = 0;
    for (;;) {
        struct epoll_event ev[4];
        int k = epoll_wait(ep, ev, 4, 2000);
        const char *bad = k == 0 ? "no event for 2 s" : 0;
        for (int i = 0; i < k && !bad; i++) {
            uint64_t v;
            struct signalfd_siginfo si;
            switch (ev[i].data.u64) {
            case 0x7100:
                if (read(tfd, &v, 8) != 8 || v < 1) { bad = "timer read"; break; }
                if (sig_outstanding && n % 5 == 4) { bad = "signal not delivered through signalfd"; break; }
                if (n % 3 == 2) {
                    uint64_t c;
                    if (write(efd, &(uint64_t){1}, 8) != 8) bad = "eventfd write";
                    else if (read(efd, &c, 8) != 8 || c != 3) bad = "eventfd count";
                } else if (write(efd, &(uint64_t){1}, 8) != 8) bad = "eventfd write";
                if (!bad && n % 5 == 0) { raise(SIGUSR1); sig_outstanding = 1; }
                if (!bad) fprintf(f, "%lu ok\n", n);
                n++;
                break;
            case 0xe100: break; /* edge: counted by the timer branch */
            case 0x5100:
                if (read(sfd, &si, sizeof si) != sizeof si || si.ssi_signo != SIGUSR1) bad = "signalfd read";
                sig_outstanding = 0;
                break;
            default: bad = "unknown epoll data";
            }
        }
        if (bad) { fprintf(f, "%lu BAD %s\n", n, bad); return 1; }
    }
}
