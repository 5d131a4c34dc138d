/* A thread that spins inside an rseq critical section (through glibc's own rseq registration):
 * it prints "cs START END ABORT" (the section's first address, the address past it, and its
 * abort handler's), then spins there for ever; the kernel sends it to the abort handler
 * whenever it is preempted, which goes straight back in. Prints "no rseq" when glibc did not
 * register rseq. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <sys/rseq.h>

extern char rseqspin_start[], rseqspin_end[], rseqspin_abort[];

static struct rseq_cs cs __attribute__((aligned(32)));

int main(void) {
    if (__rseq_size == 0) {
        printf("no rseq\n");
        return 0;
    }
    struct rseq *rs = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
    cs.version = 0;
    cs.flags = 0;
    cs.start_ip = (uintptr_t)rseqspin_start;
    cs.post_commit_offset = (uintptr_t)(rseqspin_end - rseqspin_start);
    cs.abort_ip = (uintptr_t)rseqspin_abort;
    printf("cs %p %p %p\n", (void *)rseqspin_start, (void *)rseqspin_end, (void *)rseqspin_abort);
    fflush(stdout);
    __asm__ volatile(
        "1:\n"
        "  movq %[cs], 8(%[rs])\n" /* rs->rseq_cs = &cs */
        ".globl rseqspin_start\n"
        "rseqspin_start:\n"
        "2: jmp 2b\n"
        ".globl rseqspin_end\n"
        "rseqspin_end:\n"
        "  .long 0x53053053\n" /* RSEQ_SIG, just before the abort handler */
        ".globl rseqspin_abort\n"
        "rseqspin_abort:\n"
        "  jmp 1b\n"
        :
        : [cs] "r"(&cs), [rs] "r"(rs)
        : "memory");
    return 0;
}
