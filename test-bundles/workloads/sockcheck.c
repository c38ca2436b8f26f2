/* sockcheck: a TCP server (listening on 127.0.0.1:PORT, in its own network
 * namespace: brings lo up itself) answering "ping N" with "pong N", a unix
 * stream socketpair with bytes always in flight in both directions, a
 * seqpacket socketpair with messages of different lengths in flight, a named
 * unix listener and a bound UDP socket that sends itself a datagram per tick
 * (checked for order only: datagrams may be lost).
 * Prints "<n> ok <served>" per tick.
 *
 *   sockcheck file port [interval_ms] */
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int port = atoi(argv[2]);
    long ms = argc > 3 ? atol(argv[3]) : 10;
    FILE *f = fopen(argv[1], "a");
    if (!f) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq ifr = {0};
    strcpy(ifr.ifr_name, "lo");
    ioctl(s, SIOCGIFFLAGS, &ifr);
    ifr.ifr_flags |= IFF_UP;
    ioctl(s, SIOCSIFFLAGS, &ifr);
    close(s);

    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(l, (void *)&a, sizeof a) || listen(l, 16)) return 3;
    int u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    a.sin_port = htons(port + 1);
    if (bind(u, (void *)&a, sizeof a)) return 4;
    int un = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un ua = {.sun_family = AF_UNIX};
    snprintf(ua.sun_path, sizeof ua.sun_path, "sock.%d", port);
    unlink(ua.sun_path);
    if (bind(un, (void *)&ua, sizeof ua) || listen(un, 4)) return 5;
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp)) return 6;
    fcntl(sp[0], F_SETFL, O_NONBLOCK);
    fcntl(sp[1], F_SETFL, O_NONBLOCK);
    unsigned long w0 = 0, r0 = 0, w1 = 0, r1 = 0;
    for (int i = 0; i < 100; i++) {
        char c = 'a' + w0++ % 26;
        (void)!write(sp[0], &c, 1);
        c = 'A' + w1++ % 26;
        (void)!write(sp[1], &c, 1);
    }
    int sq[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sq)) return 8;
    unsigned long mw = 0, mr = 0;
    for (int i = 0; i < 5; i++) {
        char m[64];
        int len = snprintf(m, sizeof m, "msg %lu %.*s", mw, (int)(mw % 20), "xxxxxxxxxxxxxxxxxxxx");
        mw++;
        if (send(sq[0], m, len, 0) != len) return 9;
    }
    unsigned long served = 0, udp_sent = 0, udp_got = 0;
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    for (unsigned long n = 0;; n++) {
        const char *bad = 0;
        int c = accept(l, 0, 0);
        if (c >= 0) {
            char buf[64];
            struct pollfd p = {c, POLLIN, 0};
            if (poll(&p, 1, 2000) == 1) {
                ssize_t k = read(c, buf, sizeof buf - 1);
                if (k > 5 && !strncmp(buf, "ping ", 5)) {
                    buf[k] = 0;
                    char out[80];
                    int len = snprintf(out, sizeof out, "pong %s", buf + 5);
                    (void)!write(c, out, len);
                    served++;
                }
            }
            close(c);
        }
        for (int i = 0; i < 5 && !bad; i++) {
            char c0, c1;
            if (read(sp[1], &c0, 1) != 1 || c0 != 'a' + (char)(r0++ % 26)) bad = "socketpair 0->1";
            else if (read(sp[0], &c1, 1) != 1 || c1 != 'A' + (char)(r1++ % 26)) bad = "socketpair 1->0";
            c0 = 'a' + w0++ % 26;
            c1 = 'A' + w1++ % 26;
            if (!bad && (write(sp[0], &c0, 1) != 1 || write(sp[1], &c1, 1) != 1)) bad = "socketpair write";
        }
        if (!bad) {
            char m[64], want[64];
            ssize_t k = recv(sq[1], m, sizeof m, 0);
            int wl = snprintf(want, sizeof want, "msg %lu %.*s", mr, (int)(mr % 20), "xxxxxxxxxxxxxxxxxxxx");
            mr++;
            if (k != wl || memcmp(m, want, wl)) bad = "seqpacket message";
            int len = snprintf(m, sizeof m, "msg %lu %.*s", mw, (int)(mw % 20), "xxxxxxxxxxxxxxxxxxxx");
            mw++;
            if (!bad && send(sq[0], m, len, 0) != len) bad = "seqpacket send";
        }
        unsigned long v;
        while (!bad && recv(u, &v, sizeof v, 0) == sizeof v) {
            /* UDP may drop (a checkpoint drops queued datagrams): only order is checked. */
            if (v < udp_got) bad = "udp sequence went back";
            udp_got = v + 1;
        }
        if (!bad) {
            if (sendto(u, &udp_sent, sizeof udp_sent, 0, (void *)&a, sizeof a) == sizeof udp_sent) udp_sent++;
        }
        if (bad) { fprintf(f, "%lu BAD %s\n", n, bad); return 1; }
        fprintf(f, "%lu ok %lu\n", n, served);
        nanosleep(&t, 0);
    }
}
