/* fdcheck: file descriptors of many kinds, each checked every tick:
 * a data file read sequentially (offset must continue), an O_APPEND log,
 * a directory fd, /dev/null, /dev/zero, /dev/urandom, a pipe holding bytes in
 * flight (read 10, write 10: the stream must stay in sequence), the same over
 * a FIFO (named pipe "fifo" in the cwd), a CLOEXEC and O_NONBLOCK flag.
 * Prints "<n> ok".
 *
 *   fdcheck datafile logfile [interval_ms] */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    long ms = argc > 3 ? atol(argv[3]) : 10;
    int data = open(argv[1], O_RDONLY | O_CLOEXEC);
    int log = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0644);
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    int dn = open("/dev/null", O_WRONLY);
    int dz = open("/dev/zero", O_RDONLY);
    int ur = open("/dev/urandom", O_RDONLY | O_NONBLOCK);
    int p[2];
    if (data < 0 || log < 0 || dir < 0 || dn < 0 || dz < 0 || ur < 0 || pipe(p)) return 2;
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    unlink("fifo");
    if (mkfifo("fifo", 0600)) return 5;
    int fr = open("fifo", O_RDONLY | O_NONBLOCK);
    int fw = open("fifo", O_WRONLY);
    if (fr < 0 || fw < 0) return 6;
    unsigned long fwseq = 0, frseq = 0;
    for (int i = 0; i < 50; i++) {
        char c = '0' + fwseq++ % 10;
        if (write(fw, &c, 1) != 1) return 7;
    }
    unsigned long wseq = 0, rseq = 0;
    char b[16];
    for (int i = 0; i < 100; i++) {
        for (int j = 0; j < 10; j++) b[j] = 'a' + (wseq++ % 26);
        if (write(p[1], b, 10) != 10) return 3;
    }
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    for (unsigned long n = 0;; n++) {
        const char *bad = 0;
        char line[32], want[32];
        /* datafile holds "0\n1\n2\n..." with fixed 8-byte lines */
        if (read(data, line, 8) != 8) bad = "data read";
        else {
            snprintf(want, sizeof want, "%07lu\n", n);
            if (memcmp(line, want, 8)) bad = "data offset";
        }
        if (!bad && read(p[0], b, 10) != 10) bad = "pipe read";
        for (int j = 0; !bad && j < 10; j++)
            if (b[j] != 'a' + (char)(rseq++ % 26)) bad = "pipe sequence";
        for (int j = 0; j < 10; j++) b[j] = 'a' + (wseq++ % 26);
        if (!bad && write(p[1], b, 10) != 10) bad = "pipe write";
        for (int j = 0; !bad && j < 5; j++) {
            char c;
            if (read(fr, &c, 1) != 1) bad = "fifo read";
            else if (c != '0' + (char)(frseq++ % 10)) bad = "fifo sequence";
            c = '0' + fwseq++ % 10;
            if (!bad && write(fw, &c, 1) != 1) bad = "fifo write";
        }
        if (!bad && (fcntl(data, F_GETFD) & FD_CLOEXEC) == 0) bad = "cloexec";
        if (!bad && !(fcntl(ur, F_GETFL) & O_NONBLOCK)) bad = "nonblock";
        if (!bad && !(fcntl(log, F_GETFL) & O_APPEND)) bad = "append";
        if (!bad && read(dz, b, 4) != 4) bad = "zero";
        if (!bad && (b[0] | b[1] | b[2] | b[3])) bad = "zero content";
        if (!bad && write(dn, "x", 1) != 1) bad = "null";
        if (!bad && read(ur, b, 4) != 4) bad = "urandom";
        if (!bad && fcntl(dir, F_GETFD) < 0) bad = "dir";
        int len = snprintf(line, sizeof line, "%lu %s\n", n, bad ? "BAD" : "ok");
        if (bad) len = snprintf(line, sizeof line, "%lu BAD %s\n", n, bad);
        if (write(log, line, len) != len) return 4;
        if (bad) return 1;
        nanosleep(&t, 0);
    }
}
