/*
 * The write queue's byte queue (bufq.c): blocks of BLOCK_BYTES from a per-loop pool. The edges
 * are where it can go wrong: a push ending exactly at a block's end, pushes, peeks, copies and
 * consumes across block boundaries, and the pool taking back and handing out blocks so that a
 * queue in steady state allocates nothing. Internal API: linked against the static library.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

/* The bytes one block holds, as bufq.c counts them. */
#define DATA_BYTES ((size_t)(BLOCK_BYTES - sizeof(struct block)))

/* Room for four blocks' worth of a pattern no two positions of a block boundary share. */
static char pattern[4 * BLOCK_BYTES];

static int setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (char)(i * 7 + i / 251);
    return 0;
}

static unsigned block_count(const struct bufq *q)
{
    unsigned n = 0;
    for (const struct block *b = q->head; b != NULL; b = b->next)
        n++;
    return n;
}

/* Every byte queued, through copyout, is pattern[from, from + q->len). */
static void assert_holds(const struct bufq *q, size_t from)
{
    char *out = malloc(q->len + 1);
    assert_non_null(out);
    assert_int_equal(yd__bufq_copyout(q, out, q->len), q->len);
    assert_memory_equal(out, pattern + from, q->len);
    free(out);
}

static void release(struct bufq *q, struct block_pool *pool)
{
    yd__bufq_clear(q, pool);
    yd__block_pool_clear(pool);
}

static void test_push_of_exactly_one_block_fills_one_block(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, DATA_BYTES), 0);
    assert_int_equal(block_count(&q), 1);
    assert_ptr_equal(q.head, q.tail);
    assert_int_equal(q.head->end, DATA_BYTES);
    assert_int_equal(q.len, DATA_BYTES);
    assert_holds(&q, 0);
    release(&q, &pool);
}

static void test_push_after_a_full_block_starts_a_new_block(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, DATA_BYTES), 0);
    assert_int_equal(yd__bufq_push(&q, &pool, pattern + DATA_BYTES, 1), 0);
    assert_int_equal(block_count(&q), 2);
    assert_int_equal(q.tail->start, 0);
    assert_int_equal(q.tail->end, 1);
    assert_int_equal(q.len, DATA_BYTES + 1);
    assert_holds(&q, 0);
    release(&q, &pool);
}

static void test_pushes_filling_a_block_in_pieces_end_at_its_boundary(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    size_t first = DATA_BYTES - 100;
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, first), 0);
    assert_int_equal(yd__bufq_push(&q, &pool, pattern + first, 100), 0);
    assert_int_equal(block_count(&q), 1);
    assert_int_equal(q.head->end, DATA_BYTES);
    assert_holds(&q, 0);
    release(&q, &pool);
}

static void test_push_spanning_two_blocks_keeps_the_bytes_in_order(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, 10), 0);
    assert_int_equal(yd__bufq_push(&q, &pool, pattern + 10, DATA_BYTES), 0);
    assert_int_equal(block_count(&q), 2);
    assert_int_equal(q.head->end, DATA_BYTES);
    assert_int_equal(q.tail->end, 10);
    assert_int_equal(q.len, DATA_BYTES + 10);
    assert_holds(&q, 0);
    release(&q, &pool);
}

static void test_push_spanning_three_blocks_keeps_the_bytes_in_order(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, 2 * DATA_BYTES + 1), 0);
    assert_int_equal(block_count(&q), 3);
    assert_int_equal(q.tail->end, 1);
    assert_int_equal(q.len, 2 * DATA_BYTES + 1);
    assert_holds(&q, 0);
    release(&q, &pool);
}

static void test_push_of_16_kib_spills_past_one_block_by_its_header(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    /* A block is BLOCK_BYTES with its header: 16 KiB of bytes need a second block. */
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, BLOCK_BYTES), 0);
    assert_int_equal(block_count(&q), 2);
    assert_int_equal(q.tail->end, BLOCK_BYTES - DATA_BYTES);
    assert_holds(&q, 0);
    release(&q, &pool);
}

static void test_push_of_nothing_takes_no_block(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, 0), 0);
    assert_null(q.head);
    assert_null(q.tail);
    assert_int_equal(q.len, 0);
}

static void test_peek_with_fewer_slots_than_blocks_fills_only_those(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, 2 * DATA_BYTES + 5), 0);
    uv_buf_t iov[3];
    memset(iov, 0, sizeof iov);
    size_t bytes = 0;
    assert_int_equal(yd__bufq_peek(&q, iov, 2, &bytes), 2);
    assert_int_equal(bytes, 2 * DATA_BYTES);
    assert_ptr_equal(iov[0].base, q.head->data);
    assert_int_equal(iov[0].len, DATA_BYTES);
    assert_ptr_equal(iov[1].base, q.head->next->data);
    assert_int_equal(iov[1].len, DATA_BYTES);
    assert_null(iov[2].base); /* the third slot is left alone */
    release(&q, &pool);
}

static void test_peek_with_room_for_every_block_covers_the_whole_queue(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, 2 * DATA_BYTES + 5), 0);
    yd__bufq_consume(&q, &pool, 3); /* the first slot starts inside the first block */
    uv_buf_t iov[16];
    size_t bytes = 0;
    assert_int_equal(yd__bufq_peek(&q, iov, 16, &bytes), 3);
    assert_int_equal(bytes, q.len);
    assert_int_equal(iov[0].len, DATA_BYTES - 3);
    assert_memory_equal(iov[0].base, pattern + 3, iov[0].len);
    assert_memory_equal(iov[1].base, pattern + DATA_BYTES, DATA_BYTES);
    assert_int_equal(iov[2].len, 5);
    assert_memory_equal(iov[2].base, pattern + 2 * DATA_BYTES, 5);
    release(&q, &pool);
}

static void test_peek_of_an_empty_queue_is_nothing(void **state)
{
    (void)state;
    struct bufq q = {0};
    uv_buf_t iov[2];
    size_t bytes = 99;
    assert_int_equal(yd__bufq_peek(&q, iov, 2, &bytes), 0);
    assert_int_equal(bytes, 0);
}

static void test_consume_across_a_block_boundary_returns_the_first_block_to_the_pool(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, 2 * DATA_BYTES), 0);
    yd__bufq_consume(&q, &pool, DATA_BYTES + 10);
    assert_int_equal(block_count(&q), 1);
    assert_int_equal(pool.count, 1);
    assert_int_equal(q.head->start, 10);
    assert_int_equal(q.len, DATA_BYTES - 10);
    assert_holds(&q, DATA_BYTES + 10);
    release(&q, &pool);
}

static void test_consume_to_exactly_a_block_boundary_leaves_the_next_block_whole(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, 2 * DATA_BYTES + 1), 0);
    yd__bufq_consume(&q, &pool, DATA_BYTES);
    assert_int_equal(block_count(&q), 2);
    assert_int_equal(pool.count, 1);
    assert_int_equal(q.head->start, 0);
    assert_holds(&q, DATA_BYTES);
    release(&q, &pool);
}

static void test_consume_of_everything_empties_the_queue_and_push_works_again(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, DATA_BYTES + 1), 0);
    yd__bufq_consume(&q, &pool, DATA_BYTES + 1);
    assert_null(q.head);
    assert_null(q.tail);
    assert_int_equal(q.len, 0);
    assert_int_equal(pool.count, 2);
    assert_int_equal(yd__bufq_push(&q, &pool, pattern + 1, 20), 0);
    assert_int_equal(block_count(&q), 1);
    assert_holds(&q, 1);
    release(&q, &pool);
}

static void test_consume_in_small_steps_across_boundaries_keeps_the_rest_in_order(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    size_t total = 3 * DATA_BYTES - 7;
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, total), 0);
    size_t done = 0;
    char out[1000];
    while (done < total) {
        size_t step = total - done < 997 ? total - done : 997; /* never a divisor of a block */
        assert_int_equal(yd__bufq_copyout(&q, out, step), step);
        assert_memory_equal(out, pattern + done, step);
        yd__bufq_consume(&q, &pool, step);
        done += step;
        assert_int_equal(q.len, total - done);
    }
    assert_null(q.head);
    assert_int_equal(pool.count, 3);
    release(&q, &pool);
}

static void test_copyout_across_block_boundaries_does_not_consume(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, 3 * DATA_BYTES), 0);
    yd__bufq_consume(&q, &pool, DATA_BYTES - 4); /* 4 bytes left in the first block */
    char out[DATA_BYTES + 8];
    assert_int_equal(yd__bufq_copyout(&q, out, sizeof out), sizeof out);
    assert_memory_equal(out, pattern + DATA_BYTES - 4, sizeof out);
    assert_int_equal(q.len, 2 * DATA_BYTES + 4);
    assert_int_equal(block_count(&q), 3);
    release(&q, &pool);
}

static void test_copyout_of_more_than_is_queued_copies_what_is_there(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, DATA_BYTES + 3), 0);
    static char out[2 * BLOCK_BYTES];
    memset(out, 0, sizeof out);
    assert_int_equal(yd__bufq_copyout(&q, out, sizeof out), DATA_BYTES + 3);
    assert_memory_equal(out, pattern, DATA_BYTES + 3);
    assert_int_equal(out[DATA_BYTES + 3], 0); /* nothing written past the queued bytes */
    release(&q, &pool);
}

static void test_pool_hands_freed_blocks_back_so_steady_state_allocates_nothing(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    /* Warm up: three blocks end up in the pool. */
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, 3 * DATA_BYTES), 0);
    yd__bufq_consume(&q, &pool, 3 * DATA_BYTES);
    assert_int_equal(pool.count, 3);
    struct block *spare[3] = {pool.free, pool.free->next, pool.free->next->next};
    for (int round = 0; round < 100; round++) {
        /* Each round takes the pool's three blocks (none allocated) and gives them back. */
        assert_int_equal(yd__bufq_push(&q, &pool, pattern, 3 * DATA_BYTES), 0);
        assert_int_equal(pool.count, 0);
        assert_null(pool.free);
        for (const struct block *b = q.head; b != NULL; b = b->next)
            assert_true(b == spare[0] || b == spare[1] || b == spare[2]);
        yd__bufq_consume(&q, &pool, 3 * DATA_BYTES);
        assert_int_equal(pool.count, 3);
    }
    release(&q, &pool);
}

static void test_a_block_from_the_pool_starts_empty(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, DATA_BYTES), 0);
    yd__bufq_consume(&q, &pool, DATA_BYTES - 1);
    yd__bufq_consume(&q, &pool, 1); /* the block goes back with start == end == DATA_BYTES */
    assert_int_equal(pool.count, 1);
    assert_int_equal(yd__bufq_push(&q, &pool, pattern + 5, 8), 0);
    assert_int_equal(pool.count, 0);
    assert_int_equal(q.head->start, 0);
    assert_int_equal(q.head->end, 8);
    assert_holds(&q, 5);
    release(&q, &pool);
}

static void test_clear_returns_every_block_to_the_pool(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, 2 * DATA_BYTES + 1), 0);
    yd__bufq_consume(&q, &pool, 5);
    yd__bufq_clear(&q, &pool);
    assert_null(q.head);
    assert_null(q.tail);
    assert_int_equal(q.len, 0);
    assert_int_equal(pool.count, 3);
    yd__block_pool_clear(&pool);
}

static void test_clear_of_an_empty_queue_changes_nothing(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    yd__bufq_clear(&q, &pool);
    assert_null(q.head);
    assert_int_equal(q.len, 0);
    assert_int_equal(pool.count, 0);
}

static void test_pool_clear_frees_every_spare_block(void **state)
{
    (void)state;
    struct bufq q = {0};
    struct block_pool pool = {0};
    assert_int_equal(yd__bufq_push(&q, &pool, pattern, 4 * DATA_BYTES), 0);
    yd__bufq_clear(&q, &pool);
    assert_int_equal(pool.count, 4);
    yd__block_pool_clear(&pool); /* ASan and valgrind report a block it missed */
    assert_null(pool.free);
    assert_int_equal(pool.count, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_of_exactly_one_block_fills_one_block),
        cmocka_unit_test(test_push_after_a_full_block_starts_a_new_block),
        cmocka_unit_test(test_pushes_filling_a_block_in_pieces_end_at_its_boundary),
        cmocka_unit_test(test_push_spanning_two_blocks_keeps_the_bytes_in_order),
        cmocka_unit_test(test_push_spanning_three_blocks_keeps_the_bytes_in_order),
        cmocka_unit_test(test_push_of_16_kib_spills_past_one_block_by_its_header),
        cmocka_unit_test(test_push_of_nothing_takes_no_block),
        cmocka_unit_test(test_peek_with_fewer_slots_than_blocks_fills_only_those),
        cmocka_unit_test(test_peek_with_room_for_every_block_covers_the_whole_queue),
        cmocka_unit_test(test_peek_of_an_empty_queue_is_nothing),
        cmocka_unit_test(test_consume_across_a_block_boundary_returns_the_first_block_to_the_pool),
        cmocka_unit_test(test_consume_to_exactly_a_block_boundary_leaves_the_next_block_whole),
        cmocka_unit_test(test_consume_of_everything_empties_the_queue_and_push_works_again),
        cmocka_unit_test(test_consume_in_small_steps_across_boundaries_keeps_the_rest_in_order),
        cmocka_unit_test(test_copyout_across_block_boundaries_does_not_consume),
        cmocka_unit_test(test_copyout_of_more_than_is_queued_copies_what_is_there),
        cmocka_unit_test(test_pool_hands_freed_blocks_back_so_steady_state_allocates_nothing),
        cmocka_unit_test(test_a_block_from_the_pool_starts_empty),
        cmocka_unit_test(test_clear_returns_every_block_to_the_pool),
        cmocka_unit_test(test_clear_of_an_empty_queue_changes_nothing),
        cmocka_unit_test(test_pool_clear_frees_every_spare_block),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
