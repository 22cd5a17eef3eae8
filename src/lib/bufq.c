/* A byte queue of fixed-size blocks taken from a per-loop pool: bytes never move once queued, so
 * a uv_write may point into them while more are appended. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define BLOCK_DATA (BLOCK_BYTES - sizeof(struct block))
#define POOL_MAX   64 /* 1 MiB of spare blocks per loop at most */

static struct block *block_get(struct block_pool *pool)
{
    struct block *b = pool->free;
    if (b != NULL) {
        pool->free = b->next;
        pool->count--;
    } else {
        b = malloc(BLOCK_BYTES);
        if (b == NULL)
            return NULL;
    }
    b->next = NULL;
    b->start = b->end = 0;
    return b;
}

static void block_put(struct block_pool *pool, struct block *b)
{
    if (pool->count >= POOL_MAX) {
        free(b);
        return;
    }
    b->next = pool->free;
    pool->free = b;
    pool->count++;
}

int yd__bufq_push(struct bufq *q, struct block_pool *pool, const char *data, size_t len)
{
    while (len > 0) {
        struct block *t = q->tail;
        if (t == NULL || t->end == BLOCK_DATA) {
            struct block *b = block_get(pool);
            if (b == NULL)
                return -ENOMEM;
            if (t == NULL)
                q->head = b;
            else
                t->next = b;
            q->tail = t = b;
        }
        size_t n = BLOCK_DATA - t->end;
        if (n > len)
            n = len;
        memcpy(t->data + t->end, data, n);
        t->end += (uint32_t)n;
        q->len += n;
        data += n;
        len -= n;
    }
    return 0;
}

unsigned yd__bufq_peek(const struct bufq *q, uv_buf_t *iov, unsigned max_iov, size_t *bytes)
{
    unsigned n = 0;
    size_t total = 0;
    for (struct block *b = q->head; b != NULL && n < max_iov; b = b->next) {
        if (b->end == b->start)
            continue;
        iov[n++] = uv_buf_init(b->data + b->start, b->end - b->start);
        total += b->end - b->start;
    }
    *bytes = total;
    return n;
}

size_t yd__bufq_copyout(const struct bufq *q, void *out, size_t len)
{
    char *p = out;
    size_t done = 0;
    for (struct block *b = q->head; b != NULL && done < len; b = b->next) {
        size_t n = b->end - b->start;
        if (n > len - done)
            n = len - done;
        memcpy(p + done, b->data + b->start, n);
        done += n;
    }
    return done;
}

void yd__bufq_consume(struct bufq *q, struct block_pool *pool, size_t len)
{
    while (len > 0 && q->head != NULL) {
        struct block *b = q->head;
        size_t n = b->end - b->start;
        if (n > len)
            n = len;
        b->start += (uint32_t)n;
        q->len -= n;
        len -= n;
        if (b->start == b->end) {
            q->head = b->next;
            if (q->head == NULL)
                q->tail = NULL;
            block_put(pool, b);
        }
    }
}

void yd__bufq_clear(struct bufq *q, struct block_pool *pool)
{
    yd__bufq_consume(q, pool, q->len);
    while (q->head != NULL) { /* empty blocks left by a zero-length state */
        struct block *b = q->head;
        q->head = b->next;
        block_put(pool, b);
    }
    q->tail = NULL;
    q->len = 0;
}

void yd__block_pool_clear(struct block_pool *pool)
{
    while (pool->free != NULL) {
        struct block *b = pool->free;
        pool->free = b->next;
        free(b);
    }
    pool->count = 0;
}
