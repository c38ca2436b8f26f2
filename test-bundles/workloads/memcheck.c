/* memcheck: holds memory of several kinds filled with a known pattern and
 * verifies all of it every tick, printing "<n> ok" (or "<n> BAD ..." and exit 1).
 *
 *   memcheck MiB file [interval_ms]
 *
 * Kinds: a large anonymous mapping (MiB), heap (malloc), a read-only anon
 * region, a PROT_NONE region (checked after mprotect round trip), a private
 * COW-modified mapping of its own executable, a MAP_GROWSDOWN-free stack array. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint64_t pat(uint64_t i, uint64_t salt) { return i * 0x9e3779b97f4a7c15ULL ^ salt; }

static int check(const uint64_t *p, size_t words, uint64_t salt, const char *what, unsigned long n, FILE *f) {
    for (size_t i = 0; i < words; i++)
        if (p[i] != pat(i, salt)) {
            fprintf(f, "%lu BAD %s word %zu\n", n, what, i);
            fflush(f);
            return 0;
        }
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    size_t mib = strtoul(argv[1], 0, 10);
    long ms = argc > 3 ? atol(argv[3]) : 10;
    FILE *f = fopen(argv[2], "a");
    if (!f) return 2;
    setvbuf(f, 0, _IOLBF, 0);
    size_t big_words = mib * 1024 * 1024 / 8;
    uint64_t *big = mmap(0, mib * 1024 * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (big == MAP_FAILED) return 3;
    /* Advice that must survive (checked by the test in smaps). */
    madvise(big, mib * 1024 * 1024, MADV_DONTFORK);
    for (size_t i = 0; i < big_words; i++) big[i] = pat(i, 1);
    size_t heap_words = 300000;
    uint64_t *heap = malloc(heap_words * 8);
    for (size_t i = 0; i < heap_words; i++) heap[i] = pat(i, 2);
    uint64_t *ro = mmap(0, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t i = 0; i < 8192; i++) ro[i] = pat(i, 3);
    mprotect(ro, 65536, PROT_READ);
    uint64_t *none = mmap(0, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t i = 0; i < 8192; i++) none[i] = pat(i, 4);
    mprotect(none, 65536, PROT_NONE);
    int fd = open("/proc/self/exe", O_RDONLY);
    unsigned char *exe = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (exe == MAP_FAILED || exe[0] != 0x7f) return 4;
    exe[4096 + 7] ^= 0x55; /* one COW page, one untouched file page */
    unsigned char orig = exe[4096 + 7] ^ 0x55;
    uint64_t stack[4096];
    for (size_t i = 0; i < 4096; i++) stack[i] = pat(i, 5);
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    for (unsigned long n = 0;; n++) {
        int ok = check(big, big_words, 1, "big", n, f) && check(heap, heap_words, 2, "heap", n, f) &&
                 check(ro, 8192, 3, "ro", n, f) && check(stack, 4096, 5, "stack", n, f);
        mprotect(none, 65536, PROT_READ);
        ok = ok && check(none, 8192, 4, "none", n, f);
        mprotect(none, 65536, PROT_NONE);
        if (ok && (exe[0] != 0x7f || (exe[4096 + 7] ^ 0x55) != orig)) {
            fprintf(f, "%lu BAD exe cow\n", n);
            ok = 0;
        }
        if (!ok) return 1;
        /* Dirty a little every tick: a page of big moves, keep the pattern. */
        size_t w = (n * 512) % big_words;
        big[w] = pat(w, 1);
        fprintf(f, "%lu ok\n", n);
        nanosleep(&t, 0);
    }
}
