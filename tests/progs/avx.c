/* avx: vector register state that lives only in registers across the checkpoint.
 * Each round loads ymm0-ymm15 (and zmm16-zmm31 when the CPU has AVX-512) with a pattern that
 * depends on the round, spins without touching them, then compares them with the pattern and
 * prints "round R ok" or "round R BAD (which)". The checkpoint signal almost always lands in the
 * spin, so a restart that loses any part of the vector state (the upper halves of the ymm
 * registers, the AVX-512 registers) makes the interrupted round print BAD. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t pat256[16][4] __attribute__((aligned(64)));
static uint64_t pat512[16][8] __attribute__((aligned(64)));

/* Returns 0 when ymm0-15 held their pattern throughout a spin of `iters` iterations. */
__attribute__((target("avx2"))) static int ymm_round(unsigned long iters) {
    int bad;
    __asm__ volatile(
#define LOAD(i) "vmovdqu " #i "*32(%[p]), %%ymm" #i "\n"
        LOAD(0) LOAD(1) LOAD(2) LOAD(3) LOAD(4) LOAD(5) LOAD(6) LOAD(7)
        LOAD(8) LOAD(9) LOAD(10) LOAD(11) LOAD(12) LOAD(13) LOAD(14) LOAD(15)
        "mov %[n], %%rcx\n"
        "1: dec %%rcx\n"
        "jnz 1b\n"
        "xor %[bad], %[bad]\n"
#define CHECK(i) "vpcmpeqq " #i "*32(%[p]), %%ymm" #i ", %%ymm" #i "\n" \
                 "vpmovmskb %%ymm" #i ", %%eax\n" \
                 "cmp $-1, %%eax\n" \
                 "je 2f\n" \
                 "or $(1 << " #i "), %[bad]\n" \
                 "2:\n"
        CHECK(0) CHECK(1) CHECK(2) CHECK(3) CHECK(4) CHECK(5) CHECK(6) CHECK(7)
        CHECK(8) CHECK(9) CHECK(10) CHECK(11) CHECK(12) CHECK(13) CHECK(14) CHECK(15)
        "vzeroupper\n"
        : [bad] "=&r"(bad)
        : [p] "r"(pat256), [n] "r"(iters)
        : "rax", "rcx", "cc", "memory",
          "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
          "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    return bad;
}

/* The same for zmm16-zmm31, which exist only with AVX-512. */
__attribute__((target("avx512f"))) static int zmm_round(unsigned long iters) {
    int bad;
    __asm__ volatile(
#define LOADZ(i) "vmovdqu64 " #i "*64-1024(%[p]), %%zmm" #i "\n"
        LOADZ(16) LOADZ(17) LOADZ(18) LOADZ(19) LOADZ(20) LOADZ(21) LOADZ(22) LOADZ(23)
        LOADZ(24) LOADZ(25) LOADZ(26) LOADZ(27) LOADZ(28) LOADZ(29) LOADZ(30) LOADZ(31)
        "mov %[n], %%rcx\n"
        "1: dec %%rcx\n"
        "jnz 1b\n"
        "xor %[bad], %[bad]\n"
#define CHECKZ(i) "vpcmpeqq " #i "*64-1024(%[p]), %%zmm" #i ", %%k1\n" \
                  "kmovb %%k1, %%eax\n" \
                  "cmp $0xff, %%eax\n" \
                  "je 2f\n" \
                  "or $(1 << (" #i " - 16)), %[bad]\n" \
                  "2:\n"
        CHECKZ(16) CHECKZ(17) CHECKZ(18) CHECKZ(19) CHECKZ(20) CHECKZ(21) CHECKZ(22) CHECKZ(23)
        CHECKZ(24) CHECKZ(25) CHECKZ(26) CHECKZ(27) CHECKZ(28) CHECKZ(29) CHECKZ(30) CHECKZ(31)
        : [bad] "=&r"(bad)
        : [p] "r"(pat512), [n] "r"(iters)
        : "rax", "rcx", "cc", "memory", "k1",
          "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",
          "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
    return bad;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 1000000;
    unsigned long iters = argc > 2 ? strtoul(argv[2], 0, 10) : 20000000;
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f");
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < 16; i++) {
            for (int j = 0; j < 4; j++) pat256[i][j] = (uint64_t)r << 32 | (uint64_t)i << 8 | (uint64_t)j | 0x5a00000000000000ull;
            for (int j = 0; j < 8; j++) pat512[i][j] = (uint64_t)r << 32 | (uint64_t)(i + 16) << 8 | (uint64_t)j | 0xa500000000000000ull;
        }
        int ybad = ymm_round(iters);
        int zbad = avx512 ? zmm_round(iters) : 0;
        if (ybad || zbad)
            printf("round %d BAD ymm %#x zmm %#x\n", r, ybad, zbad);
        else
            printf("round %d ok avx512=%d\n", r, !!avx512);
        fflush(stdout);
    }
    return 0;
}
