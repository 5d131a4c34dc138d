/* sysvipc: System V IPC by ID across a checkpoint. Makes a shared memory segment (attached), a
 * semaphore set of three and a message queue holding three typed messages, and prints their
 * IDs ("ids shm sem msg keyed"; the last a segment made with a key, written and detached). Then counts: tick i adds one to a counter in the segment (the
 * parent's, and with "tree" a forked child's own) and one to semaphore 0 (parent only), and
 * prints "p i counter" ("c i counter" for the child). At the end each process attaches the
 * segment again BY ID and reads it through IPC_STAT; the parent reads the semaphores and
 * drains the queue in its order, finds the keyed segment by its key, and prints
 *   "final shm=P/C size=SIZE sem=A,B,C msgs=T:TEXT,... keyed=same:TEXT"
 * (the child prints "child shm=C" first), so every ID, value and message is checked. With
 * "tree", the parent also makes a second keyed segment after the fork, which only it knows of
 * (prints "late ID"), and ends the final line with " late=same:TEXT" for it.
 * "sysvipc hold ID" attaches segment ID, prints "held", and waits to be killed: a process
 * outside the checkpoint that keeps a segment attached. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct msg { long type; char text[32]; };

static void die(const char *what) { printf("error %s: %s\n", what, strerror(errno)); fflush(stdout); exit(1); }

static void tick(void) { struct timespec ts = { 0, 10000000 }; while (nanosleep(&ts, &ts) != 0) {} }

/* The segment attached again by ID, read-only: the counter at `slot`, and its size. */
static long by_id(int shm, int slot, size_t *size) {
    struct shmid_ds ds;
    if (shmctl(shm, IPC_STAT, &ds) != 0) die("shmctl IPC_STAT");
    volatile long *again = shmat(shm, 0, SHM_RDONLY);
    if (again == (void *)-1) die("shmat by id");
    long v = again[slot];
    shmdt((void *)again);
    *size = ds.shm_segsz;
    return v;
}

/* The keyed segment `key` made, filled with `text` and detached: its ID. */
static int keyed(key_t key, const char *text) {
    int id = shmget(key, 100, IPC_CREAT | IPC_EXCL | 0600);
    if (id < 0) die("shmget key");
    char *k = shmat(id, 0, 0);
    if (k == (void *)-1) die("shmat key");
    strcpy(k, text);
    shmdt(k);
    return id;
}

/* " NAME=same:TEXT" for the segment of `key`, found again by key (`id` the one it had). */
static void print_keyed(const char *name, key_t key, int id) {
    int again = shmget(key, 0, 0);
    char *k = again < 0 ? (void *)-1 : shmat(again, 0, SHM_RDONLY);
    printf(" %s=%s:%s", name, again == id ? "same" : "other", k == (void *)-1 ? "gone" : k);
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "hold") == 0) {
        if (shmat(atoi(argv[2]), 0, SHM_RDONLY) == (void *)-1) die("shmat to hold");
        printf("held\n");
        fflush(stdout);
        for (;;) pause();
    }
    int n = argc > 1 ? atoi(argv[1]) : 300;
    int tree = argc > 2 && strcmp(argv[2], "tree") == 0;
    int shm = shmget(IPC_PRIVATE, 10000, IPC_CREAT | 0600);
    if (shm < 0) die("shmget");
    volatile long *mem = shmat(shm, 0, 0);
    if (mem == (void *)-1) die("shmat");
    int sem = semget(IPC_PRIVATE, 3, IPC_CREAT | 0640);
    if (sem < 0) die("semget");
    unsigned short init[3] = { 3, 5, 7 };
    if (semctl(sem, 0, SETALL, init) != 0) die("semctl SETALL");
    /* Taken and given back with SEM_UNDO: the value stays, and the checkpoint names the set. */
    struct sembuf undo[2] = { { 2, -1, SEM_UNDO }, { 2, 1, SEM_UNDO } };
    if (semop(sem, undo, 2) != 0) die("semop SEM_UNDO");
    int msg = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    if (msg < 0) die("msgget");
    const char *texts[3] = { "two", "one", "three" };
    long types[3] = { 2, 1, 3 };
    for (int i = 0; i < 3; i++) {
        struct msg m = { types[i], "" };
        strcpy(m.text, texts[i]);
        if (msgsnd(msg, &m, strlen(m.text) + 1, 0) != 0) die("msgsnd");
    }
    /* A segment made with a key, written and detached: found again by key at the end. */
    key_t key = 0x43000000 | (getpid() & 0xffffff);
    int kshm = keyed(key, "kept by key");
    printf("ids %d %d %d %d\n", shm, sem, msg, kshm);
    fflush(stdout);
    pid_t child = tree ? fork() : -1;
    if (child < 0 && tree) die("fork");
    /* Made after the fork: only the parent has its ID. */
    key_t late_key = 0x44000000 | (getpid() & 0xffffff);
    int late = -1;
    if (child > 0) {
        late = keyed(late_key, "only the root");
        printf("late %d\n", late);
        fflush(stdout);
    }
    int slot = child == 0 ? 1 : 0;
    for (int i = 0; i < n; i++) {
        mem[slot]++;
        if (slot == 0) {
            struct sembuf up = { 0, 1, 0 };
            if (semop(sem, &up, 1) != 0) die("semop");
        }
        printf("%c %d %ld\n", slot ? 'c' : 'p', i, mem[slot]);
        fflush(stdout);
        tick();
    }
    size_t size;
    if (child == 0) {
        printf("child shm=%ld\n", by_id(shm, 1, &size));
        fflush(stdout);
        return 0;
    }
    if (child > 0 && waitpid(child, 0, 0) != child) die("waitpid");
    long mine = by_id(shm, 0, &size);
    unsigned short v[3];
    if (semctl(sem, 0, GETALL, v) != 0) die("semctl GETALL");
    printf("final shm=%ld/%ld size=%zu sem=%d,%d,%d msgs=", mine, mem[1], size, v[0], v[1], v[2]);
    struct msg m;
    for (int first = 1; msgrcv(msg, &m, sizeof m.text, 0, IPC_NOWAIT) >= 0; first = 0)
        printf("%s%ld:%s", first ? "" : ",", m.type, m.text);
    print_keyed("keyed", key, kshm);
    if (late >= 0)
        print_keyed("late", late_key, late);
    printf("\n");
    fflush(stdout);
    shmctl(shm, IPC_RMID, 0);
    semctl(sem, 0, IPC_RMID);
    msgctl(msg, IPC_RMID, 0);
    shmctl(kshm, IPC_RMID, 0);
    if (late >= 0)
        shmctl(late, IPC_RMID, 0);
    return 0;
}
