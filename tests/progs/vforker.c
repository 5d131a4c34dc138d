/* A parent that waits in vfork(2) for its child, which ptrace cannot interrupt: the child
 * prints "ready" and waits until the file named by argv[1] exists, then ends, and the parent
 * prints "after". (The child only makes system calls, which a vfork child may.) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2)
        return 2;
    if (vfork() == 0) {
        syscall(SYS_write, 1, "ready\n", 6);
        struct timespec nap = {0, 1000000};
        while (syscall(SYS_access, argv[1], F_OK) != 0)
            syscall(SYS_nanosleep, &nap, 0);
        syscall(SYS_exit, 0);
    }
    write(1, "after\n", 6);
    return 0;
}
