/*
 * Inputs that end at a guard page, as picohttpparser's test.c places them: a readable page
 * followed by a PROT_NONE one, the input copied so that its last byte (a buffer's last byte, or
 * a string's NUL) is the last readable one. A parser that reads one byte too far faults, and the
 * test dies (SIGSEGV, or ASan's report), where a read into ordinary memory would go unseen.
 * Include it after <cmocka.h>.
 */
#ifndef YODEL_TEST_GUARD_H
#define YODEL_TEST_GUARD_H

#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct guard {
    char *mem; /* page bytes readable, then page bytes PROT_NONE */
    size_t page;
};

static inline void guard_open(struct guard *g)
{
    g->page = (size_t)sysconf(_SC_PAGESIZE);
    void *mem = mmap(NULL, 2 * g->page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    g->mem = mem;
    assert_int_equal(mprotect(g->mem + g->page, g->page, PROT_NONE), 0);
}

static inline void guard_close(struct guard *g)
{
    assert_int_equal(munmap(g->mem, 2 * g->page), 0);
    g->mem = NULL;
}

/* The first byte past the readable page: reading it faults. */
static inline const char *guard_end(const struct guard *g)
{
    return g->mem + g->page;
}

/* Copies len bytes so that they end exactly at the guard page; returns where they start. */
static inline const char *guard_place(struct guard *g, const void *data, size_t len)
{
    assert_true(len <= g->page);
    char *at = g->mem + g->page - len;
    if (len > 0)
        memcpy(at, data, len);
    return at;
}

/* The first n bytes of s as a string whose NUL is the last byte before the guard page. */
static inline const char *guard_string(struct guard *g, const char *s, size_t n)
{
    assert_true(n < g->page);
    char *at = g->mem + g->page - n - 1;
    memcpy(at, s, n);
    at[n] = '\0';
    return at;
}

#endif
