/* A program whose floating-point controls and flags are not a new thread's: it prints
 * "ready", then sets MXCSR to 0xff80 (round toward zero, flush to zero), the x87 control word
 * to 0xf7f (round toward zero) and the alignment-check flag (AC), and spins checking that
 * they stay so; any change is printed as an ERROR line, and it exits 1. For `ckpt
 * checkpoint PID`, whose code must run with its own controls and leave the program's. */
#include <stdint.h>
#include <stdio.h>

int main(void) {
    printf("ready\n");
    fflush(stdout);
    uint32_t mxcsr = 0xff80, got_mxcsr;
    uint16_t fcw = 0xf7f, got_fcw;
    uint64_t flags;
    /* No call while AC is set: library code may make unaligned accesses. */
    __asm__ volatile(
        "ldmxcsr %[m]\n"
        "fldcw %[c]\n"
        "pushfq\n"
        "orq $0x40000, (%%rsp)\n"
        "popfq\n"
        "1:\n"
        "stmxcsr %[gm]\n"
        "fnstcw %[gc]\n"
        "pushfq\n"
        "popq %[f]\n"
        "movl %[gm], %%eax\n"
        "cmpl %[m], %%eax\n"
        "jne 2f\n"
        "movzwl %[gc], %%eax\n"
        "cmpw %[c], %%ax\n"
        "jne 2f\n"
        "btq $18, %[f]\n"
        "jc 1b\n"
        "2:\n"
        "pushfq\n"
        "andq $~0x40000, (%%rsp)\n"
        "popfq\n"
        : [gm] "=m"(got_mxcsr), [gc] "=m"(got_fcw), [f] "=&r"(flags)
        : [m] "m"(mxcsr), [c] "m"(fcw)
        : "rax", "cc", "memory");
    printf("ERROR mxcsr %#x fcw %#x eflags %#lx\n", got_mxcsr, got_fcw, (unsigned long)flags);
    return 1;
}
