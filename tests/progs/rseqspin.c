/* A thread that spins inside an rseq critical section (through glibc's own rseq registration):
 * it prints "cs START END ABORT" (the section's first address, the address past it, and its
 * abort handler's), then spins there for ever; the kernel sends it to the abort handler
 * whenever it is preempted, which goes straight back in. Prints "no rseq" when glibc did not
 * register rseq.
 *
 * `rseqspin thread [blockall]`: a second thread spins (blocking every signal with `blockall`),
 * and its abort handler writes "abort" each time it runs; the main thread moves it from CPU to
 * CPU every 20 ms, which preempts it, so that a thread armed in its section keeps aborting and
 * saying so. One that went on inside its section after the kernel forgot the section (its
 * `rseq_cs` cleared) spins there for ever without a word. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/rseq.h>
#include <time.h>
#include <unistd.h>

extern char rseqspin_start[], rseqspin_end[], rseqspin_abort[];

static struct rseq_cs cs __attribute__((aligned(32)));
static int say_aborts, blockall;
static volatile pid_t spinner;

static void spin(void) {
    struct rseq *rs = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
    static const char line[] = "abort\n";
    int say = say_aborts;
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
        "  test %[say], %[say]\n"
        "  jz 1b\n"
        "  mov $1, %%eax\n" /* write(1, line, 6) */
        "  mov $1, %%edi\n"
        "  mov %[line], %%rsi\n"
        "  mov $6, %%edx\n"
        "  syscall\n"
        "  jmp 1b\n"
        :
        : [cs] "r"(&cs), [rs] "r"(rs), [say] "r"(say), [line] "r"(line)
        : "memory", "rax", "rcx", "r11", "rdi", "rsi", "rdx");
}

static void *spinning(void *arg) {
    (void)arg;
    if (blockall) {
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, NULL);
    }
    spinner = gettid();
    spin();
    return NULL;
}

int main(int argc, char **argv) {
    if (__rseq_size == 0) {
        printf("no rseq\n");
        return 0;
    }
    int thread = argc > 1 && strcmp(argv[1], "thread") == 0;
    blockall = argc > 2 && strcmp(argv[2], "blockall") == 0;
    cs.version = 0;
    cs.flags = 0;
    cs.start_ip = (uintptr_t)rseqspin_start;
    cs.post_commit_offset = (uintptr_t)(rseqspin_end - rseqspin_start);
    cs.abort_ip = (uintptr_t)rseqspin_abort;
    printf("cs %p %p %p\n", (void *)rseqspin_start, (void *)rseqspin_end, (void *)rseqspin_abort);
    fflush(stdout);
    if (!thread) {
        spin();
        return 0;
    }
    say_aborts = 1;
    pthread_t t;
    pthread_create(&t, NULL, spinning, NULL);
    cpu_set_t allowed;
    sched_getaffinity(0, sizeof allowed, &allowed);
    for (int next = 0;; next = (next + 1) % CPU_SETSIZE) {
        if (!CPU_ISSET(next, &allowed))
            continue;
        struct timespec tick = {0, 20 * 1000 * 1000};
        nanosleep(&tick, NULL);
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(next, &one);
        if (spinner != 0)
            sched_setaffinity(spinner, sizeof one, &one);
    }
}
