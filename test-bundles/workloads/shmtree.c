/* shmtree: a parent and its child sharing memory: a MAP_SHARED|MAP_ANONYMOUS
 * region and a memfd mapping. Each side bumps its own counter every tick
 * and checks the other's keeps moving (and a pattern filled once is intact).
 * Prints "<n> ok" per tick (parent).
 *
 *   shmtree file [interval_ms] */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long ms = argc > 2 ? atol(argv[2]) : 10;
    FILE *f = fopen(argv[1], "a");
    if (!f) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    size_t len = 1 << 20;
    volatile uint64_t *anon = mmap(0, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int mfd = memfd_create("shmtree", 0);
    if (anon == MAP_FAILED || mfd < 0 || ftruncate(mfd, 65536)) return 3;
    volatile uint64_t *mem = mmap(0, 65536, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (mem == MAP_FAILED) return 4;
    for (size_t i = 16; i < len / 8; i++) anon[i] = i * 7;
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    if (fork() == 0) {
        for (;;) {
            anon[1]++;
            mem[1]++;
            nanosleep(&t, 0);
        }
    }
    uint64_t last_a = 0, last_m = 0;
    for (unsigned long n = 0;; n++) {
        const char *bad = 0;
        anon[0]++;
        mem[0]++;
        for (size_t i = 16; i < len / 8 && !bad; i += 509)
            if (anon[i] != i * 7) bad = "pattern";
        if (!bad && n % 20 == 19) {
            /* A loaded machine may not run the child for a while: only a
             * counter still standing after 10 s means it stopped. */
            for (int waited = 0; waited < 1000 && (anon[1] == last_a || mem[1] == last_m); waited++)
                nanosleep(&(struct timespec){0, 10000000L}, 0);
            if (anon[1] == last_a) bad = "child's counter in shared anon memory stopped";
            else if (mem[1] == last_m) bad = "child's counter in memfd stopped";
            last_a = anon[1];
            last_m = mem[1];
        }
        if (bad) { fprintf(f, "%lu BAD %s\n", n, bad); return 1; }
        fprintf(f, "%lu ok\n", n);
        nanosleep(&t, 0);
    }
}
