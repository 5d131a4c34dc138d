/* A program under a seccomp filter of its own (one that allows every system call, as a
 * sandboxed program's might allow all it uses): `ckpt checkpoint PID` must refuse to attach,
 * since a system call ckpt's code makes in it could be one the filter kills. Prints a line a
 * second. */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(void) {
    struct sock_filter allow[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
    struct sock_fprog prog = { .len = 1, .filter = allow };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        perror("seccomp");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (unsigned long n = 0;; n++) {
        printf("%lu\n", n);
        sleep(1);
    }
}
