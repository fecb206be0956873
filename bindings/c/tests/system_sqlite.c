/* Links maxsimdb beside the system SQLite: calls must reach the system's copy (the one
 * whose header this file was compiled with), not the SQLite maxsimdb bundles internally,
 * and both libraries must work in one process. Run by bindings/c/tests/run.sh. */
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "maxsimdb.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    if (strcmp(sqlite3_libversion(), SQLITE_VERSION) != 0) {
        fprintf(stderr, "sqlite3_libversion() is %s, the system header says %s: maxsimdb's bundled SQLite "
                        "answered\n", sqlite3_libversion(), SQLITE_VERSION);
        return 1;
    }
    sqlite3 *s = NULL;
    if (sqlite3_open(":memory:", &s) != SQLITE_OK || sqlite3_exec(s, "CREATE TABLE t(x)", NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "system sqlite failed\n");
        return 1;
    }
    sqlite3_close(s);
    char path[4096];
    snprintf(path, sizeof path, "%s/db", argv[1]);
    msdb_db *db = NULL;
    if (msdb_db_open(path, NULL, &db, NULL) != MSDB_OK || msdb_db_exec(db, "CREATE COLLECTION c WITH (dim = 2);") != MSDB_OK) {
        fprintf(stderr, "maxsimdb failed: %s\n", msdb_last_errmsg_ref());
        return 1;
    }
    msdb_db_close(db);
    printf("system SQLite %s and maxsimdb %s in one process\n", sqlite3_libversion(), msdb_version());
    return 0;
}
