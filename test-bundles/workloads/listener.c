/* listener: a TCP server on 127.0.0.1:PORT (in the container's own network
 * namespace) keeping its request counter in memory. Every line a client
 * sends is one request: the counter goes up by one and the reply is the new
 * value ("<served>\n"). Connections stay open until the client closes them;
 * an error on one (a connection that did not survive a checkpoint) is
 * counted and its errno kept. Each tick appends
 * "<n> ok <served> <connection errors> <last errno>" to FILE.
 *
 *   listener FILE PORT [interval_ms] */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 16

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int port = atoi(argv[2]);
    long ms = argc > 3 ? atol(argv[3]) : 10;
    FILE *f = fopen(argv[1], "a");
    if (!f) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(l, (void *)&a, sizeof a) || listen(l, 16)) return 3;
    struct pollfd p[1 + MAX_CLIENTS];
    int clients = 0;
    unsigned long served = 0, errors = 0;
    int last_errno = 0;
    struct timespec last, now;
    clock_gettime(CLOCK_MONOTONIC, &last);
    for (unsigned long n = 0;;) {
        p[0] = (struct pollfd){l, POLLIN, 0};
        for (int i = 0; i < clients; i++) p[1 + i].events = POLLIN, p[1 + i].revents = 0;
        poll(p, 1 + clients, ms);
        for (int i = 0; i < clients; i++) {
            if (!p[1 + i].revents) continue;
            char buf[256];
            ssize_t k = read(p[1 + i].fd, buf, sizeof buf);
            if (k > 0) {
                for (ssize_t j = 0; j < k; j++) {
                    if (buf[j] != '\n') continue;
                    char out[32];
                    int len = snprintf(out, sizeof out, "%lu\n", ++served);
                    if (write(p[1 + i].fd, out, len) != len) { errors++; last_errno = errno; }
                }
                continue;
            }
            if (k < 0) { errors++; last_errno = errno; }
            close(p[1 + i].fd);
            p[1 + i] = p[clients];
            clients--;
            i--;
        }
        if ((p[0].revents & POLLIN) && clients < MAX_CLIENTS) {
            int c = accept(l, 0, 0);
            if (c >= 0) p[1 + clients++] = (struct pollfd){c, POLLIN, 0};
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000 >= ms) {
            fprintf(f, "%lu ok %lu %lu %d\n", n++, served, errors, last_errno);
            last = now;
        }
    }
}
