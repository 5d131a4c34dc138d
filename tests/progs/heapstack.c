/* heapstack: a coroutine whose stack is a part of the program's heap, as ucontext-based
 * coroutine libraries (and green threads) make them: one malloc'd block holds 1 MiB of the
 * program's data and, right above it, the coroutine's 256 KiB stack (no guard page between:
 * the kernel shows the block as one region; argv[1], if given, is the stack's size in KiB
 * instead: 16 is as small as some coroutine libraries make them). The program switches to the
 * coroutine at once and runs there for good, so a checkpoint signal always finds this thread on
 * that stack.
 *
 * Every 10 ms the coroutine checks the data, prints "I bad=B", and rewrites the data with the
 * next step: each word holds its index and the step that wrote it (zeros are never right).
 * B is the number of words that are not what the program wrote. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <ucontext.h>

#define DATA (1ul << 20)
#define WORDS (DATA / 8)
#define MAGIC 0x6eadbeef00000000ull

static uint64_t *data;
static ucontext_t main_ctx, co_ctx;

static uint64_t word(uint64_t w, uint64_t step) { return MAGIC ^ (w << 32) ^ step; }

static void coroutine(void) {
    for (uint64_t step = 1;; step++) {
        uint64_t bad = 0;
        for (uint64_t w = 0; w < WORDS; w++) bad += data[w] != word(w, step - 1);
        for (uint64_t w = 0; w < WORDS; w++) data[w] = word(w, step);
        printf("%llu bad=%llu\n", (unsigned long long)step, (unsigned long long)bad);
        fflush(stdout);
        struct timespec t = { 0, 10000000 };
        nanosleep(&t, 0);
    }
}

int main(int argc, char **argv) {
    size_t stack = (argc > 1 ? strtoul(argv[1], 0, 10) : 256) << 10;
    char *block = malloc(DATA + stack);
    if (!block) return 1;
    data = (uint64_t *)block;
    for (uint64_t w = 0; w < WORDS; w++) data[w] = word(w, 0);
    getcontext(&co_ctx);
    co_ctx.uc_stack.ss_sp = block + DATA;
    co_ctx.uc_stack.ss_size = stack;
    co_ctx.uc_link = &main_ctx;
    makecontext(&co_ctx, coroutine, 0);
    swapcontext(&main_ctx, &co_ctx);
    return 1;
}
