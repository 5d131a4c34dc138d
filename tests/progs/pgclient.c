/* pgclient CONNINFO GOFILE ROWS FIRST: a PostgreSQL client (libpq) that keeps one connection
 * open, as an application's pool does. It connects, prints "connected", and stays idle until
 * GOFILE exists; then it counts the rows of table t. If the connection was lost meanwhile (the
 * server was checkpointed, killed and restarted), it prints "lost: ...", resets the connection
 * until the server answers again (at most 60 s), prints "reconnected", and asks again. Then it
 * prints "count N", inserts ROWS rows numbered from FIRST in one transaction, prints
 * "inserted ROWS" and exits 0. Any other failure exits 1 with the server's message. */
#include <postgresql/libpq-fe.h> /* Debian and Ubuntu: libpq-dev */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void pause_ms(long ms) {
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) != 0) {}
}

/* One statement; its result, or NULL with the message printed, on failure. */
static PGresult *run(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return r;
    const char *msg = PQerrorMessage(c);
    printf("%s: %.*s\n", PQstatus(c) == CONNECTION_BAD ? "lost" : "error", (int)strcspn(msg, "\n"), msg);
    fflush(stdout);
    PQclear(r);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: pgclient CONNINFO GOFILE ROWS FIRST\n");
        return 2;
    }
    PGconn *c = PQconnectdb(argv[1]);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "pgclient: %s", PQerrorMessage(c));
        return 1;
    }
    PGresult *r = run(c, "select 1");
    if (!r)
        return 1;
    PQclear(r);
    printf("connected\n");
    fflush(stdout);
    while (access(argv[2], F_OK) != 0)
        pause_ms(10);

    r = run(c, "select count(*) from t");
    if (!r) {
        if (PQstatus(c) != CONNECTION_BAD)
            return 1;
        for (int tries = 0; ; tries++) {
            PQreset(c);
            if (PQstatus(c) == CONNECTION_OK)
                break;
            if (tries == 600) {
                fprintf(stderr, "pgclient: no server after 60 s: %s", PQerrorMessage(c));
                return 1;
            }
            pause_ms(100);
        }
        printf("reconnected\n");
        fflush(stdout);
        r = run(c, "select count(*) from t");
        if (!r)
            return 1;
    }
    printf("count %s\n", PQgetvalue(r, 0, 0));
    fflush(stdout);
    PQclear(r);

    char sql[256];
    long rows = atol(argv[3]), first = atol(argv[4]);
    snprintf(sql, sizeof sql, "insert into t select g, 'row ' || g from generate_series(%ld, %ld) g", first, first + rows - 1);
    r = run(c, sql);
    if (!r)
        return 1;
    printf("inserted %s\n", PQcmdTuples(r));
    fflush(stdout);
    PQclear(r);
    PQfinish(c);
    return 0;
}
