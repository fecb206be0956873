/*
 * Exercises every function of the C API, its error paths and its misuse cases.
 * Built against the shared and the static library and run under valgrind by
 * bindings/c/tests/run.sh. Exit status 0 when every check passes.
 *
 *   test_capi DIR     (DIR: an empty scratch directory)
 */
#include <math.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maxsimdb.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        checks++;                                                                        \
        if (!(cond)) {                                                                   \
            failures++;                                                                  \
            char *m_ = msdb_last_errmsg();                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__,      \
                    __LINE__, #cond, m_ ? m_ : "none");                                  \
            msdb_free(m_);                                                               \
        }                                                                                \
    } while (0)

#define CHECK_RC(call, want) CHECK_RC_(call, want, #call)
static void check_rc_at(int got, int want, const char *what, int line) {
    checks++;
    if (got != want) {
        failures++;
        char *m = msdb_last_errmsg();
        fprintf(stderr, "line %d: %s returned %s, expected %s (%s)\n", line, what,
                msdb_status_name(got), msdb_status_name(want), m ? m : "no message");
        msdb_free(m);
    }
}
#define CHECK_RC_(call, want, text) check_rc_at((call), (want), text, __LINE__)

/* The last message of db contains `needle` (and is freed). */
static int msg_has(char *m, const char *needle) {
    int ok = m != NULL && strstr(m, needle) != NULL;
    if (!ok) fprintf(stderr, "message '%s' lacks '%s'\n", m ? m : "(null)", needle);
    msdb_free(m);
    return ok;
}

static char path_buf[4096];
static const char *db_path(const char *dir, const char *name) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
    return path_buf;
}

/* Two 2-d token vectors: the first points at angle 0.1 x radians (no two documents tie
 * for a query between them), the second, (-1, 0), is the same for every document and
 * far from every first token. */
static void doc_tokens(float x, float *t) {
    t[0] = cosf(x * 0.1f);
    t[1] = sinf(x * 0.1f);
    t[2] = -1.0f;
    t[3] = 0.0f;
}

static void test_version_and_names(void) {
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", MSDB_VERSION_MAJOR, MSDB_VERSION_MINOR, MSDB_VERSION_PATCH);
    CHECK(strcmp(msdb_version(), want) == 0);
    CHECK(strcmp(msdb_status_name(MSDB_OK), "MSDB_OK") == 0);
    CHECK(strcmp(msdb_status_name(MSDB_LOCKED), "MSDB_LOCKED") == 0);
    CHECK(strcmp(msdb_status_name(MSDB_DONE), "MSDB_DONE") == 0);
    CHECK(strcmp(msdb_status_name(-7), "MSDB_UNKNOWN") == 0);
    msdb_free(NULL);
}

static void test_open_errors(const char *dir) {
    msdb_db *db = (msdb_db *)0x1;
    char *err = NULL;
    CHECK_RC(msdb_db_open(NULL, NULL, &db, &err), MSDB_MISUSE);
    CHECK(db == NULL);
    CHECK(msg_has(err, "path is NULL"));
    CHECK_RC(msdb_db_open(db_path(dir, "x.msdb"), NULL, NULL, NULL), MSDB_MISUSE);

    msdb_open_options bad = MSDB_SIZED(msdb_open_options);
    bad.flags = 0x80;
    err = NULL;
    CHECK_RC(msdb_db_open(db_path(dir, "x.msdb"), &bad, &db, &err), MSDB_INVALID_ARGUMENT);
    CHECK(msg_has(err, "unknown open flags"));

    msdb_open_options ro = MSDB_SIZED(msdb_open_options);
    ro.flags = MSDB_OPEN_READ_ONLY;
    err = NULL;
    CHECK_RC(msdb_db_open(db_path(dir, "missing.msdb"), &ro, &db, &err), MSDB_NOT_FOUND);
    CHECK(db == NULL);
    CHECK(msg_has(err, "not found"));
    CHECK(msg_has(msdb_last_errmsg(), "not found"));

    err = NULL;
    CHECK_RC(msdb_db_open("", NULL, &db, &err), MSDB_INVALID_ARGUMENT);
    CHECK(msg_has(err, "empty database path"));
    err = NULL;
    CHECK_RC(msdb_db_open(db_path(dir, "no/such/parent/x.msdb"), NULL, &db, &err), MSDB_IO);
    CHECK(db == NULL);
    CHECK(msg_has(err, "does not exist"));
}

static void test_exec(msdb_db *db) {
    CHECK_RC(msdb_db_exec(db, "CREATE COLLECTION docs (title TEXT, year INTEGER) "
                              "WITH (dim = 2, pooled = 'mean:2')"),
             MSDB_OK);
    CHECK_RC(msdb_db_errcode(db), MSDB_OK);
    CHECK(msdb_db_errmsg(db) == NULL);
    CHECK_RC(msdb_db_exec(db, "SELEC * FROM docs"), MSDB_SYNTAX);
    CHECK_RC(msdb_db_errcode(db), MSDB_SYNTAX);
    CHECK(msg_has(msdb_db_errmsg(db), "line 1"));
    CHECK_RC(msdb_db_exec(db, "CREATE COLLECTION docs (a TEXT) WITH (dim = 2)"), MSDB_ALREADY_EXISTS);
    CHECK_RC(msdb_db_exec(db, "DELETE FROM nowhere"), MSDB_NOT_FOUND);
    CHECK_RC(msdb_db_exec(db, "ATTACH DATABASE 'x' AS y"), MSDB_SYNTAX);
    CHECK_RC(msdb_db_exec(db, NULL), MSDB_MISUSE);
    CHECK_RC(msdb_db_exec(db, "\xff\xfe"), MSDB_INVALID_ARGUMENT);
    CHECK(msg_has(msdb_db_errmsg(db), "UTF-8"));
}

static void test_insert(msdb_db *db) {
    float tokens[20][4];
    char ids[20][16], values[20][64];
    msdb_pooled pooled[20];
    msdb_doc docs[20];
    for (int i = 0; i < 20; i++) {
        doc_tokens((float)i, tokens[i]);
        snprintf(ids[i], sizeof ids[i], "doc-%d", i);
        snprintf(values[i], sizeof values[i], "{\"title\": \"paper %d\", \"year\": %d}", i, 2000 + i);
        pooled[i].name = "mean";
        pooled[i].data = tokens[i];
        pooled[i].dim = 2;
        memset(&docs[i], 0, sizeof docs[i]);
        docs[i].size = sizeof docs[i];
        docs[i].id = ids[i];
        docs[i].tokens = &tokens[i][0];
        docs[i].n_tokens = 2;
        docs[i].dim = 2;
        docs[i].pooled = &pooled[i];
        docs[i].n_pooled = 1;
        docs[i].values_json = values[i];
    }
    CHECK_RC(msdb_db_insert(db, "docs", docs, 20, 0), MSDB_OK);
    CHECK_RC(msdb_db_insert(db, "docs", docs, 1, 0), MSDB_ALREADY_EXISTS);
    CHECK(msg_has(msdb_db_errmsg(db), "doc-0"));
    CHECK_RC(msdb_db_insert(db, "docs", docs, 1, MSDB_INSERT_UPSERT), MSDB_OK);
    CHECK_RC(msdb_db_insert(db, "docs", docs, 0, 0), MSDB_OK);
    CHECK_RC(msdb_db_insert(db, "docs", docs, 1, 0x10), MSDB_INVALID_ARGUMENT);
    CHECK_RC(msdb_db_insert(db, "nowhere", docs, 1, 0), MSDB_NOT_FOUND);
    CHECK_RC(msdb_db_insert(db, NULL, docs, 1, 0), MSDB_MISUSE);
    CHECK_RC(msdb_db_insert(db, "docs", NULL, 1, 0), MSDB_MISUSE);

    msdb_doc bad = docs[0];
    bad.id = "bad";
    bad.dim = 3;
    CHECK_RC(msdb_db_insert(db, "docs", &bad, 1, 0), MSDB_DIMENSION_MISMATCH);
    bad.dim = 2;
    bad.tokens = NULL;
    CHECK_RC(msdb_db_insert(db, "docs", &bad, 1, 0), MSDB_MISUSE);
    bad.tokens = &tokens[0][0];
    bad.values_json = "{not json";
    CHECK_RC(msdb_db_insert(db, "docs", &bad, 1, 0), MSDB_INVALID_ARGUMENT);
    CHECK(msg_has(msdb_db_errmsg(db), "values_json"));
    bad.values_json = "{\"nope\": 1}";
    CHECK_RC(msdb_db_insert(db, "docs", &bad, 1, 0), MSDB_NOT_FOUND);
    bad.values_json = NULL;
    float nan_tokens[4] = {NAN, 0.0f, 1.0f, 0.0f};
    bad.tokens = nan_tokens;
    CHECK_RC(msdb_db_insert(db, "docs", &bad, 1, 0), MSDB_INVALID_ARGUMENT);
    bad.tokens = &tokens[0][0];
    msdb_pooled wrong = {"mean", tokens[0], 3};
    bad.pooled = &wrong;
    CHECK_RC(msdb_db_insert(db, "docs", &bad, 1, 0), MSDB_DIMENSION_MISMATCH);
    msdb_pooled unnamed = {NULL, tokens[0], 2};
    bad.pooled = &unnamed;
    CHECK_RC(msdb_db_insert(db, "docs", &bad, 1, 0), MSDB_MISUSE);
    /* Nothing of the failed inserts is there. */
    msdb_stmt *st = NULL;
    CHECK_RC(msdb_stmt_prepare(db, "SELECT id FROM docs WHERE id = 'bad' ORDER BY maxsim('[[1,0]]') LIMIT 5", &st), MSDB_OK);
    CHECK_RC(msdb_stmt_step(st), MSDB_DONE);
    CHECK_RC(msdb_stmt_finalize(st), MSDB_OK);
}

static void test_search(msdb_db *db) {
    float q[4];
    doc_tokens(5.2f, q); /* nearest: doc-5, doc-6, doc-4, doc-7, ... */
    msdb_query query = MSDB_SIZED(msdb_query);
    query.kind = MSDB_QUERY_MAXSIM;
    query.vectors = q;
    query.n_vectors = 2;
    query.dim = 2;
    msdb_hit hits[5];
    size_t n = 99;
    CHECK_RC(msdb_db_search(db, "docs", &query, hits, 5, &n), MSDB_OK);
    CHECK(n == 5);
    CHECK(strcmp(hits[0].id, "doc-5") == 0);
    CHECK(fabs(hits[0].score - (1.0 + cos(0.02))) < 1e-2);
    for (size_t i = 1; i < n; i++) CHECK(hits[i].score <= hits[i - 1].score);
    msdb_hits_free(hits, n);
    CHECK(hits[0].id == NULL);

    query.filter = "year >= 2010 AND title LIKE 'paper%'";
    CHECK_RC(msdb_db_search(db, "docs", &query, hits, 5, &n), MSDB_OK);
    CHECK(n == 5);
    CHECK(strcmp(hits[0].id, "doc-10") == 0); /* the closest document that passes */
    msdb_hits_free(hits, n);

    query.kind = MSDB_QUERY_DENSE;
    query.n_vectors = 1;
    query.filter = NULL;
    CHECK_RC(msdb_db_search(db, "docs", &query, hits, 3, &n), MSDB_OK);
    CHECK(n == 3 && strcmp(hits[0].id, "doc-5") == 0);
    msdb_hits_free(hits, n);
    query.field = "nope";
    CHECK_RC(msdb_db_search(db, "docs", &query, hits, 3, &n), MSDB_NOT_FOUND);
    CHECK(n == 0);
    query.field = NULL;

    query.kind = MSDB_QUERY_MAXSIM;
    query.filter = "year >>= 3";
    CHECK_RC(msdb_db_search(db, "docs", &query, hits, 5, &n), MSDB_SYNTAX);
    query.filter = "length(title) > 3";
    CHECK_RC(msdb_db_search(db, "docs", &query, hits, 5, &n), MSDB_INVALID_ARGUMENT);
    query.filter = NULL;
    CHECK_RC(msdb_db_search(db, "docs", &query, hits, 0, &n), MSDB_INVALID_ARGUMENT);
    CHECK_RC(msdb_db_search(db, "docs", &query, hits, 100000, &n), MSDB_INVALID_ARGUMENT);
    CHECK_RC(msdb_db_search(db, "docs", &query, NULL, 5, &n), MSDB_MISUSE);
    CHECK_RC(msdb_db_search(db, "docs", NULL, hits, 5, &n), MSDB_MISUSE);
    CHECK_RC(msdb_db_search(db, "docs", &query, hits, 5, NULL), MSDB_MISUSE);
    CHECK_RC(msdb_db_search(db, "nowhere", &query, hits, 5, &n), MSDB_NOT_FOUND);
    query.dim = 3;
    CHECK_RC(msdb_db_search(db, "docs", &query, hits, 5, &n), MSDB_DIMENSION_MISMATCH);
    query.dim = 2;
    query.kind = 9;
    CHECK_RC(msdb_db_search(db, "docs", &query, hits, 5, &n), MSDB_INVALID_ARGUMENT);
    query.kind = MSDB_QUERY_BM25;
    CHECK_RC(msdb_db_search(db, "docs", &query, hits, 5, &n), MSDB_INVALID_ARGUMENT);
    query.vectors = NULL;
    query.text = "paper";
    CHECK_RC(msdb_db_search(db, "docs", &query, hits, 5, &n), MSDB_NOT_AVAILABLE); /* no full-text index */
    query.text = NULL;
    CHECK_RC(msdb_db_search(db, "docs", &query, hits, 5, &n), MSDB_MISUSE);
    query.kind = MSDB_QUERY_MAXSIM;
    query.text = "words";
    CHECK_RC(msdb_db_search(db, "docs", &query, hits, 5, &n), MSDB_INVALID_ARGUMENT); /* no model */
    msdb_hits_free(NULL, 3);
}

static void test_statements(msdb_db *db) {
    msdb_stmt *st = (msdb_stmt *)0x1;
    CHECK_RC(msdb_stmt_prepare(db, "SELECT id, title, year, score FROM docs WHERE year >= ? AND title <> ? "
                                   "ORDER BY maxsim(?) LIMIT ?",
                               &st),
             MSDB_OK);
    size_t np = 0;
    CHECK_RC(msdb_stmt_param_count(st, &np), MSDB_OK);
    CHECK(np == 4);
    size_t nc;
    CHECK_RC(msdb_stmt_column_count(st, &nc), MSDB_OK); /* known before it runs */
    CHECK(nc == 4);
    float q[4];
    doc_tokens(5.2f, q);
    CHECK_RC(msdb_stmt_bind_double(st, 1, 2003.0), MSDB_OK);
    CHECK_RC(msdb_stmt_bind_text(st, 2, "paper 4"), MSDB_OK);
    CHECK_RC(msdb_stmt_bind_matrix(st, 3, q, 2, 2), MSDB_OK);
    CHECK_RC(msdb_stmt_bind_int64(st, 4, 3), MSDB_OK);
    CHECK_RC(msdb_stmt_bind_int64(st, 0, 3), MSDB_INVALID_ARGUMENT);
    CHECK_RC(msdb_stmt_bind_int64(st, 5, 3), MSDB_INVALID_ARGUMENT);
    CHECK(msg_has(msdb_stmt_errmsg(st), "out of range"));
    CHECK_RC(msdb_stmt_errcode(st), MSDB_INVALID_ARGUMENT);
    CHECK_RC(msdb_stmt_bind_text(st, 2, NULL), MSDB_MISUSE);
    CHECK_RC(msdb_stmt_bind_matrix(st, 3, NULL, 2, 2), MSDB_MISUSE);
    CHECK_RC(msdb_stmt_bind_matrix(st, 3, q, 0, 2), MSDB_INVALID_ARGUMENT);
    float inf[2] = {INFINITY, 0.0f};
    CHECK_RC(msdb_stmt_bind_vector(st, 3, inf, 2), MSDB_INVALID_ARGUMENT);
    CHECK_RC(msdb_stmt_bind_matrix(st, 3, q, 2, 2), MSDB_OK);

    const char *want[] = {"doc-5", "doc-6", "doc-7"}; /* doc-4 is filtered out */
    for (int round = 0; round < 2; round++) {
        for (int r = 0; r < 3; r++) {
            CHECK_RC(msdb_stmt_step(st), MSDB_ROW);
            CHECK_RC(msdb_stmt_column_count(st, &nc), MSDB_OK);
            CHECK(nc == 4);
            const char *name = NULL;
            CHECK_RC(msdb_stmt_column_name(st, 3, &name), MSDB_OK);
            CHECK(name && strcmp(name, "score") == 0);
            CHECK_RC(msdb_stmt_column_name(st, 4, &name), MSDB_INVALID_ARGUMENT);
            const char *id = NULL;
            size_t len = 0;
            CHECK_RC(msdb_stmt_column_text(st, 0, &id, &len), MSDB_OK);
            CHECK(id && strcmp(id, want[r]) == 0 && len == strlen(want[r]));
            int type = -1;
            CHECK_RC(msdb_stmt_column_type(st, 2, &type), MSDB_OK);
            CHECK(type == MSDB_TYPE_INTEGER);
            CHECK_RC(msdb_stmt_column_type(st, 1, &type), MSDB_OK);
            CHECK(type == MSDB_TYPE_TEXT);
            CHECK_RC(msdb_stmt_column_type(st, 3, &type), MSDB_OK);
            CHECK(type == MSDB_TYPE_REAL);
            int64_t year = 0;
            CHECK_RC(msdb_stmt_column_int64(st, 2, &year), MSDB_OK);
            CHECK(year >= 2003);
            CHECK_RC(msdb_stmt_column_int64(st, 1, &year), MSDB_INVALID_ARGUMENT);
            double score = 0, score2 = 0;
            CHECK_RC(msdb_stmt_score(st, &score), MSDB_OK);
            CHECK_RC(msdb_stmt_column_double(st, 3, &score2), MSDB_OK);
            CHECK(score == score2 && score > 1.0);
            CHECK_RC(msdb_stmt_column_double(st, 0, &score2), MSDB_INVALID_ARGUMENT);
            CHECK_RC(msdb_stmt_column_text(st, 2, &id, NULL), MSDB_OK);
            CHECK(id && atoi(id) == (int)year);
            CHECK_RC(msdb_stmt_column_text(st, 9, &id, &len), MSDB_INVALID_ARGUMENT);
            CHECK_RC(msdb_stmt_column_text(st, 0, NULL, &len), MSDB_MISUSE);
            CHECK_RC(msdb_stmt_bind_int64(st, 4, 1), MSDB_MISUSE); /* running */
            CHECK_RC(msdb_stmt_clear_bindings(st), MSDB_MISUSE);
        }
        CHECK_RC(msdb_stmt_step(st), MSDB_DONE);
        CHECK_RC(msdb_stmt_step(st), MSDB_DONE);
        int64_t v;
        CHECK_RC(msdb_stmt_column_int64(st, 0, &v), MSDB_MISUSE); /* no current row */
        const char *msg = (const char *)0x1;
        CHECK_RC(msdb_stmt_message(st, &msg), MSDB_OK);
        CHECK(msg == NULL);
        CHECK_RC(msdb_stmt_reset(st), MSDB_OK);
    }
    CHECK_RC(msdb_stmt_clear_bindings(st), MSDB_OK);
    CHECK_RC(msdb_stmt_step(st), MSDB_SYNTAX); /* maxsim(NULL): a string is expected */
    CHECK(msg_has(msdb_stmt_errmsg(st), "string literal"));
    CHECK_RC(msdb_stmt_finalize(st), MSDB_OK);

    /* Dense search with a bound vector, and a statement that returns a message. */
    CHECK_RC(msdb_stmt_prepare(db, "SELECT id FROM docs ORDER BY dense(mean, ?) LIMIT 1", &st), MSDB_OK);
    float v[2] = {1.0f, 0.0f};
    CHECK_RC(msdb_stmt_bind_vector(st, 1, v, 2), MSDB_OK);
    CHECK_RC(msdb_stmt_step(st), MSDB_ROW);
    double s;
    CHECK_RC(msdb_stmt_score(st, &s), MSDB_NOT_FOUND); /* score not selected */
    CHECK_RC(msdb_stmt_finalize(st), MSDB_OK);

    CHECK_RC(msdb_stmt_prepare(db, "INSERT INTO docs (id, title, year, tokens, mean) VALUES (?, ?, ?, ?, ?)", &st),
             MSDB_OK);
    CHECK_RC(msdb_stmt_bind_text(st, 1, "doc-new"), MSDB_OK);
    CHECK_RC(msdb_stmt_bind_null(st, 2), MSDB_OK);
    CHECK_RC(msdb_stmt_bind_int64(st, 3, 1999), MSDB_OK);
    float t[4] = {0.0f, -1.0f, 0.0f, -1.0f};
    CHECK_RC(msdb_stmt_bind_matrix(st, 4, t, 2, 2), MSDB_OK);
    CHECK_RC(msdb_stmt_bind_vector(st, 5, t, 2), MSDB_OK);
    CHECK_RC(msdb_stmt_step(st), MSDB_DONE);
    const char *msg = NULL;
    CHECK_RC(msdb_stmt_message(st, &msg), MSDB_OK);
    CHECK(msg && strstr(msg, "inserted 1") != NULL);
    CHECK_RC(msdb_stmt_column_count(st, &nc), MSDB_OK);
    CHECK(nc == 0);
    CHECK_RC(msdb_stmt_reset(st), MSDB_OK);
    CHECK_RC(msdb_stmt_step(st), MSDB_ALREADY_EXISTS); /* same id again */
    CHECK_RC(msdb_stmt_finalize(st), MSDB_OK);

    CHECK_RC(msdb_stmt_prepare(db, "SELECT title FROM docs WHERE id = 'doc-new' ORDER BY maxsim('[[1,0]]') LIMIT 1", &st), MSDB_OK);
    CHECK_RC(msdb_stmt_step(st), MSDB_ROW);
    int type = -1;
    const char *txt = (const char *)0x1;
    size_t len = 7;
    CHECK_RC(msdb_stmt_column_type(st, 0, &type), MSDB_OK);
    CHECK(type == MSDB_TYPE_NULL);
    CHECK_RC(msdb_stmt_column_text(st, 0, &txt, &len), MSDB_OK);
    CHECK(txt == NULL && len == 0);
    int64_t zero = 5;
    CHECK_RC(msdb_stmt_column_int64(st, 0, &zero), MSDB_OK);
    CHECK(zero == 0);
    CHECK_RC(msdb_stmt_finalize(st), MSDB_OK);

    /* Prepare-time errors go to the database handle; *out is NULL. */
    st = (msdb_stmt *)0x1;
    CHECK_RC(msdb_stmt_prepare(db, "SELECT FROM", &st), MSDB_SYNTAX);
    CHECK(st == NULL);
    CHECK(msg_has(msdb_db_errmsg(db), "line 1"));
    CHECK_RC(msdb_stmt_prepare(db, "FLUSH docs; FLUSH docs", &st), MSDB_INVALID_ARGUMENT);
    CHECK_RC(msdb_stmt_prepare(db, "   ", &st), MSDB_INVALID_ARGUMENT);
    CHECK_RC(msdb_stmt_prepare(db, NULL, &st), MSDB_MISUSE);
    CHECK_RC(msdb_stmt_prepare(db, "FLUSH docs", NULL), MSDB_MISUSE);

    /* With msdb_db_close_v2 a statement outlives the handle it was prepared on. */
    msdb_db *clone = NULL;
    CHECK_RC(msdb_db_clone(db, &clone), MSDB_OK);
    CHECK_RC(msdb_stmt_prepare(clone, "SHOW COLLECTIONS", &st), MSDB_OK);
    CHECK_RC(msdb_db_close_v2(clone), MSDB_OK);
    CHECK_RC(msdb_stmt_step(st), MSDB_ROW);
    CHECK_RC(msdb_stmt_column_text(st, 0, &txt, &len), MSDB_OK);
    CHECK(txt && strcmp(txt, "docs") == 0);
    CHECK_RC(msdb_stmt_finalize(st), MSDB_OK);
    CHECK_RC(msdb_db_clone(db, NULL), MSDB_MISUSE);
}

struct worker {
    msdb_db *db;
    int ok;
};

static void *search_worker(void *arg) {
    struct worker *w = arg;
    msdb_db *mine = NULL;
    if (msdb_db_clone(w->db, &mine) != MSDB_OK) return NULL;
    w->ok = 1;
    for (int i = 0; i < 10; i++) {
        float q[4];
        doc_tokens((float)i, q);
        msdb_query query = MSDB_SIZED(msdb_query);
        query.vectors = q;
        query.n_vectors = 2;
        query.dim = 2;
        msdb_hit hits[1];
        size_t n = 0;
        int rc = msdb_db_search(mine, "docs", &query, hits, 1, &n);
        if (rc != MSDB_OK || n != 1) {
            char *m = msdb_last_errmsg();
            fprintf(stderr, "worker search %d: %s (%s)\n", i, msdb_status_name(rc), m ? m : "");
            msdb_free(m);
            w->ok = 0;
        } else {
            char want[16];
            snprintf(want, sizeof want, "doc-%d", i);
            if (strcmp(hits[0].id, want) != 0) {
                fprintf(stderr, "worker search %d: found %s\n", i, hits[0].id);
                w->ok = 0;
            }
            msdb_hits_free(hits, n);
        }
    }
    msdb_db_close(mine);
    return NULL;
}

static void test_threads(msdb_db *db) {
    pthread_t th[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i].db = db;
        w[i].ok = 0;
        CHECK(pthread_create(&th[i], NULL, search_worker, &w[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(w[i].ok);
    }
}

static void test_flush_and_reopen(const char *dir, msdb_db **dbp) {
    msdb_db *db = *dbp;
    CHECK_RC(msdb_db_flush(db, "docs"), MSDB_OK);
    CHECK_RC(msdb_db_flush(db, NULL), MSDB_OK);
    CHECK_RC(msdb_db_flush(db, "nowhere"), MSDB_NOT_FOUND);

    /* A second writer in this process is refused; readers are not. */
    msdb_db *second = NULL;
    char *err = NULL;
    CHECK_RC(msdb_db_open(db_path(dir, "main.msdb"), NULL, &second, &err), MSDB_LOCKED);
    CHECK(msg_has(err, "locked"));
    msdb_open_options ro = MSDB_SIZED(msdb_open_options);
    ro.flags = MSDB_OPEN_READ_ONLY;
    msdb_db *reader = NULL;
    CHECK_RC(msdb_db_open(db_path(dir, "main.msdb"), &ro, &reader, NULL), MSDB_OK);
    CHECK_RC(msdb_db_exec(reader, "DELETE FROM docs"), MSDB_READ_ONLY);
    msdb_stmt *st = NULL;
    CHECK_RC(msdb_stmt_prepare(reader, "SELECT id FROM docs WHERE year = 2007 ORDER BY maxsim('[[1,0]]') LIMIT 1", &st), MSDB_OK);
    CHECK_RC(msdb_stmt_step(st), MSDB_ROW);
    CHECK_RC(msdb_stmt_finalize(st), MSDB_OK);
    CHECK_RC(msdb_db_close(reader), MSDB_OK);

    CHECK_RC(msdb_db_close(db), MSDB_OK);
    msdb_open_options opts = MSDB_SIZED(msdb_open_options);
    opts.flush_threshold_tokens = 4;
    opts.retire_grace_ms = 10;
    opts.flags = MSDB_OPEN_NO_FLUSH_ON_CLOSE;
    CHECK_RC(msdb_db_open(db_path(dir, "main.msdb"), &opts, dbp, NULL), MSDB_OK);
    CHECK_RC(msdb_stmt_prepare(*dbp, "SELECT id FROM docs WHERE year = 1999 ORDER BY maxsim('[[1,0]]') LIMIT 1", &st), MSDB_OK);
    CHECK_RC(msdb_stmt_step(st), MSDB_ROW);
    const char *id = NULL;
    CHECK_RC(msdb_stmt_column_text(st, 0, &id, NULL), MSDB_OK);
    CHECK(id && strcmp(id, "doc-new") == 0);
    CHECK_RC(msdb_stmt_finalize(st), MSDB_OK);
}

static void test_backup_restore(const char *dir, msdb_db *db) {
    char archive[4200], target[4200];
    snprintf(archive, sizeof archive, "%s/main.msdb.zst", dir);
    snprintf(target, sizeof target, "%s/restored.msdb", dir);
    CHECK_RC(msdb_db_backup(db, archive), MSDB_OK);
    CHECK_RC(msdb_db_backup(db, archive), MSDB_ALREADY_EXISTS);
    CHECK_RC(msdb_db_backup(db, NULL), MSDB_MISUSE);
    char *err = NULL;
    CHECK_RC(msdb_restore(archive, target, &err), MSDB_OK);
    CHECK(err == NULL);
    CHECK_RC(msdb_restore(archive, target, &err), MSDB_ALREADY_EXISTS);
    CHECK(msg_has(err, "already exists"));
    CHECK_RC(msdb_restore(NULL, target, NULL), MSDB_MISUSE);
    msdb_db *copy = NULL;
    CHECK_RC(msdb_db_open(target, NULL, &copy, NULL), MSDB_OK);
    msdb_stmt *st = NULL;
    CHECK_RC(msdb_stmt_prepare(copy, "SELECT id FROM docs WHERE year = 1999 ORDER BY maxsim('[[1,0]]') LIMIT 1", &st),
             MSDB_OK);
    CHECK_RC(msdb_stmt_step(st), MSDB_ROW);
    CHECK_RC(msdb_stmt_finalize(st), MSDB_OK);
    CHECK_RC(msdb_db_close(copy), MSDB_OK);
    /* A damaged archive is refused and leaves no directory. */
    FILE *f = fopen(archive, "r+b");
    CHECK(f != NULL);
    if (f) {
        fseek(f, 40, SEEK_SET);
        int c = fgetc(f);
        fseek(f, 40, SEEK_SET);
        fputc(c ^ 0x21, f);
        fclose(f);
    }
    snprintf(target, sizeof target, "%s/damaged.msdb", dir);
    err = NULL;
    CHECK_RC(msdb_restore(archive, target, &err), MSDB_CORRUPTION);
    CHECK(msg_has(err, "main.msdb.zst"));
    FILE *gone = fopen(target, "r");
    CHECK(gone == NULL);
    if (gone) fclose(gone);
}

static void test_misuse_after_close(msdb_db *db) {
    msdb_stmt *st = NULL;
    CHECK_RC(msdb_stmt_prepare(db, "SHOW COLLECTIONS", &st), MSDB_OK);
    CHECK_RC(msdb_stmt_finalize(st), MSDB_OK);
    CHECK_RC(msdb_stmt_finalize(st), MSDB_MISUSE);
    CHECK_RC(msdb_stmt_step(st), MSDB_MISUSE);
    CHECK_RC(msdb_stmt_reset(st), MSDB_MISUSE);
    CHECK_RC(msdb_stmt_bind_int64(st, 1, 1), MSDB_MISUSE);
    CHECK_RC(msdb_stmt_errcode(st), MSDB_MISUSE);
    CHECK(msg_has(msdb_stmt_errmsg(st), "not a live statement"));
    CHECK_RC(msdb_stmt_finalize(NULL), MSDB_OK);
    CHECK_RC(msdb_stmt_step(NULL), MSDB_MISUSE);
    CHECK_RC(msdb_stmt_param_count(NULL, NULL), MSDB_MISUSE);

    CHECK_RC(msdb_db_close(db), MSDB_OK);
    CHECK_RC(msdb_db_close(db), MSDB_MISUSE);
    CHECK_RC(msdb_db_exec(db, "SHOW COLLECTIONS"), MSDB_MISUSE);
    CHECK_RC(msdb_db_flush(db, NULL), MSDB_MISUSE);
    CHECK_RC(msdb_stmt_prepare(db, "SHOW COLLECTIONS", &st), MSDB_MISUSE);
    CHECK(st == NULL);
    msdb_hit hits[1];
    size_t n;
    msdb_query q = MSDB_SIZED(msdb_query);
    CHECK_RC(msdb_db_search(db, "docs", &q, hits, 1, &n), MSDB_MISUSE);
    CHECK_RC(msdb_db_insert(db, "docs", NULL, 0, 0), MSDB_MISUSE);
    CHECK_RC(msdb_db_errcode(db), MSDB_MISUSE);
    CHECK(msg_has(msdb_db_errmsg(db), "not an open database handle"));
    CHECK_RC(msdb_db_close(NULL), MSDB_OK);
    CHECK_RC(msdb_db_exec((msdb_db *)0x12345, "SHOW COLLECTIONS"), MSDB_MISUSE);
    CHECK_RC(msdb_db_errcode(NULL), MSDB_MISUSE);
}

/* The direct calls of a program that never writes SQL: create from a spec struct, typed
 * values, read back by id and by scan, vector columns of a statement, hits carrying
 * columns, update, delete, compact, stats, drop. */
static void test_direct_calls(msdb_db *db) {
    msdb_column_def cols[3] = {{"title", MSDB_TYPE_TEXT}, {"year", MSDB_TYPE_INTEGER}, {"r", MSDB_TYPE_REAL}};
    msdb_pooled_def pdef[1] = {{"mean", 2}};
    msdb_collection_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.size = sizeof spec;
    spec.name = "direct";
    spec.token_dim = 2;
    spec.tokens = "f32";
    spec.pooled = pdef;
    spec.n_pooled = 1;
    spec.columns = cols;
    spec.n_columns = 3;
    spec.flags = MSDB_SPEC_INTEGER_IDS;
    CHECK_RC(msdb_db_create_collection(db, &spec), MSDB_OK);
    CHECK_RC(msdb_db_create_collection(db, &spec), MSDB_ALREADY_EXISTS);
    msdb_collection_spec bad = spec;
    bad.name = "bad";
    bad.tokens = "f8";
    CHECK_RC(msdb_db_create_collection(db, &bad), MSDB_INVALID_ARGUMENT);
    bad.tokens = NULL;
    msdb_column_def badcol = {"x", 42};
    bad.columns = &badcol;
    bad.n_columns = 1;
    CHECK_RC(msdb_db_create_collection(db, &bad), MSDB_INVALID_ARGUMENT);
    CHECK(msg_has(msdb_db_errmsg(db), "columns[0].kind"));
    CHECK_RC(msdb_db_create_collection(db, NULL), MSDB_MISUSE);
    bad = spec;
    bad.name = "unsized";
    bad.size = 0;
    CHECK_RC(msdb_db_create_collection(db, &bad), MSDB_MISUSE);
    CHECK(msg_has(msdb_db_errmsg(db), "sizeof(msdb_collection_spec)"));
    bad.size = sizeof bad + 8;
    CHECK_RC(msdb_db_create_collection(db, &bad), MSDB_INVALID_ARGUMENT);
    CHECK(msg_has(msdb_db_errmsg(db), "newer header"));
    CHECK(msdb_version_number() == MSDB_VERSION_NUMBER);

    /* Typed values: no JSON to write; REAL exact to the bit. */
    const double r = 0.097264783048820247;
    float tokens[10][4];
    msdb_value vals[10][3];
    msdb_doc docs[10];
    msdb_pooled pooled[10];
    char titles[10][16];
    for (int i = 0; i < 10; i++) {
        doc_tokens((float)i, tokens[i]);
        snprintf(titles[i], sizeof titles[i], "t%d", i);
        memset(vals[i], 0, sizeof vals[i]);
        vals[i][0].name = "title";
        vals[i][0].kind = MSDB_TYPE_TEXT;
        vals[i][0].text = titles[i];
        vals[i][1].name = "year";
        vals[i][1].kind = MSDB_TYPE_INTEGER;
        vals[i][1].int_value = 2000 + i;
        vals[i][2].name = "r";
        vals[i][2].kind = i == 9 ? MSDB_TYPE_NULL : MSDB_TYPE_REAL;
        vals[i][2].real_value = r * i;
        memset(&docs[i], 0, sizeof docs[i]);
        docs[i].size = sizeof docs[i];
        docs[i].int_id = 100 + i;
        docs[i].tokens = &tokens[i][0];
        docs[i].n_tokens = 2;
        docs[i].dim = 2;
        docs[i].values = vals[i];
        docs[i].n_values = 3;
        pooled[i].name = "mean";
        pooled[i].data = tokens[i];
        pooled[i].dim = 2;
        docs[i].pooled = &pooled[i];
        docs[i].n_pooled = 1;
    }
    CHECK_RC(msdb_db_insert(db, "direct", docs, 10, 0), MSDB_OK);
    uint64_t changes = 0;
    CHECK_RC(msdb_changes(db, &changes), MSDB_OK);
    CHECK(changes == 10);
    msdb_doc twice = docs[0];
    twice.int_id = 999;
    twice.values_json = "{\"year\": 1}";
    CHECK_RC(msdb_db_insert(db, "direct", &twice, 1, 0), MSDB_INVALID_ARGUMENT);
    CHECK(msg_has(msdb_db_errmsg(db), "also in values_json"));
    msdb_value nan_value = {"r", MSDB_TYPE_REAL, 0, NAN, NULL};
    twice.values_json = NULL;
    twice.values = &nan_value;
    twice.n_values = 1;
    CHECK_RC(msdb_db_insert(db, "direct", &twice, 1, 0), MSDB_INVALID_ARGUMENT);
    msdb_value wrong_type = {"year", MSDB_TYPE_TEXT, 0, 0, "not a number"};
    twice.values = &wrong_type;
    CHECK_RC(msdb_db_insert(db, "direct", &twice, 1, 0), MSDB_INVALID_ARGUMENT);

    /* A program built against the header before typed values: its msdb_doc ends at
     * values_json, and an array of them has that stride. */
    {
        size_t old_size = offsetof(msdb_doc, values);
        unsigned char buf[2 * sizeof(msdb_doc)];
        memset(buf, 0xAB, sizeof buf); /* garbage beyond old_size must not be read */
        for (int i = 0; i < 2; i++) {
            msdb_doc d = docs[i];
            d.int_id = 200 + i;
            d.values = NULL;
            d.n_values = 0;
            d.values_json = "{\"title\": \"old header\"}";
            d.size = old_size;
            memcpy(buf + i * old_size, &d, old_size);
        }
        CHECK_RC(msdb_db_insert(db, "direct", (const msdb_doc *)buf, 2, 0), MSDB_OK);
        CHECK_RC(msdb_db_count(db, "direct", "title = 'old header'", &changes), MSDB_OK);
        CHECK(changes == 2);
        uint64_t gone = 0;
        msdb_id olds[2] = {{NULL, 200}, {NULL, 201}};
        CHECK_RC(msdb_db_delete(db, "direct", olds, 2, &gone), MSDB_OK);
        CHECK(gone == 2);
        msdb_doc mixed[2] = {docs[0], docs[1]};
        mixed[1].size = old_size;
        CHECK_RC(msdb_db_insert(db, "direct", mixed, 2, 0), MSDB_MISUSE);
    }

    /* Read back by id: every column typed, tokens and the id. */
    msdb_document *d = NULL;
    CHECK_RC(msdb_db_get(db, "direct", NULL, 103, &d), MSDB_OK);
    CHECK(d != NULL);
    if (d != NULL) {
        const char *id = NULL;
        int64_t int_id = 0;
        CHECK_RC(msdb_document_id(d, &id, &int_id), MSDB_OK);
        CHECK(int_id == 103 && strcmp(id, "103") == 0);
        const float *t = NULL;
        size_t nt = 0, dim = 0;
        CHECK_RC(msdb_document_tokens(d, &t, &nt, &dim), MSDB_OK);
        CHECK(nt == 2 && dim == 2 && memcmp(t, tokens[3], sizeof tokens[3]) == 0);
        size_t nv = 0;
        CHECK_RC(msdb_document_value_count(d, &nv), MSDB_OK);
        CHECK(nv == 3);
        msdb_value v;
        CHECK_RC(msdb_document_value(d, 0, &v), MSDB_OK);
        CHECK(v.kind == MSDB_TYPE_TEXT && strcmp(v.name, "title") == 0 && strcmp(v.text, "t3") == 0);
        CHECK_RC(msdb_document_value(d, 1, &v), MSDB_OK);
        CHECK(v.kind == MSDB_TYPE_INTEGER && v.int_value == 2003);
        CHECK_RC(msdb_document_value(d, 2, &v), MSDB_OK);
        CHECK(v.kind == MSDB_TYPE_REAL && v.real_value == r * 3);
        CHECK_RC(msdb_document_value(d, 3, &v), MSDB_INVALID_ARGUMENT);
        const char *json = NULL;
        CHECK_RC(msdb_document_values_json(d, &json), MSDB_OK);
        CHECK(json != NULL && strstr(json, "\"year\":2003") != NULL);
        size_t np = 9;
        CHECK_RC(msdb_document_pooled_count(d, &np), MSDB_OK);
        CHECK(np == 1);
        const char *pname = NULL;
        const float *pv = NULL;
        size_t pd = 0;
        CHECK_RC(msdb_document_pooled(d, 0, &pname, &pv, &pd), MSDB_OK);
        CHECK(strcmp(pname, "mean") == 0 && pd == 2 && memcmp(pv, tokens[3], 2 * sizeof(float)) == 0);
        CHECK_RC(msdb_document_pooled(d, 1, &pname, &pv, &pd), MSDB_INVALID_ARGUMENT);
        CHECK_RC(msdb_document_free(d), MSDB_OK);
        CHECK_RC(msdb_document_free(d), MSDB_MISUSE);
    }
    CHECK_RC(msdb_document_free(NULL), MSDB_OK);
    CHECK_RC(msdb_db_get(db, "direct", NULL, 12345, &d), MSDB_OK);
    CHECK(d == NULL);
    CHECK_RC(msdb_db_get(db, "direct", "abc", 0, &d), MSDB_INVALID_ARGUMENT);
    CHECK_RC(msdb_db_get(db, "nowhere", NULL, 1, &d), MSDB_NOT_FOUND);
    CHECK_RC(msdb_document_value_count((msdb_document *)db, &changes), MSDB_MISUSE);

    /* Iterate with a filter, in insertion order. */
    msdb_cursor *cur = NULL;
    CHECK_RC(msdb_db_scan(db, "direct", "year >= 2005", &cur), MSDB_OK);
    int seen = 0, in_order = 1;
    for (;;) {
        msdb_document *doc = NULL;
        int rc = msdb_cursor_next(cur, &doc);
        if (rc != MSDB_ROW) {
            CHECK_RC(rc, MSDB_DONE);
            CHECK(doc == NULL);
            break;
        }
        int64_t id = 0;
        CHECK_RC(msdb_document_id(doc, NULL, &id), MSDB_OK);
        in_order &= id == 105 + seen;
        seen++;
        msdb_document_free(doc);
    }
    CHECK(seen == 5 && in_order);
    CHECK_RC(msdb_cursor_next(cur, &d), MSDB_DONE);
    CHECK_RC(msdb_cursor_free(cur), MSDB_OK);
    CHECK_RC(msdb_cursor_free(cur), MSDB_MISUSE);
    CHECK_RC(msdb_db_scan(db, "direct", "nope = 1", &cur), MSDB_NOT_FOUND);
    CHECK(cur == NULL);

    /* Vector columns of a statement. */
    msdb_stmt *st = NULL;
    CHECK_RC(msdb_stmt_prepare(db, "SELECT id, tokens, mean FROM direct WHERE id = 104", &st), MSDB_OK);
    CHECK_RC(msdb_stmt_step(st), MSDB_ROW);
    const float *vec = NULL;
    size_t rows = 0, dim = 0;
    CHECK_RC(msdb_stmt_column_vector(st, 1, &vec, &rows, &dim), MSDB_OK);
    CHECK(rows == 2 && dim == 2 && vec != NULL && memcmp(vec, tokens[4], sizeof tokens[4]) == 0);
    CHECK_RC(msdb_stmt_column_vector(st, 2, &vec, &rows, &dim), MSDB_OK);
    CHECK(rows == 1 && dim == 2 && memcmp(vec, tokens[4], 2 * sizeof(float)) == 0);
    CHECK_RC(msdb_stmt_column_vector(st, 0, &vec, &rows, &dim), MSDB_INVALID_ARGUMENT);
    CHECK_RC(msdb_stmt_step(st), MSDB_DONE);
    CHECK_RC(msdb_stmt_finalize(st), MSDB_OK);

    /* Hits carry the columns asked for. */
    float q[4];
    doc_tokens(2.1f, q);
    msdb_query query = MSDB_SIZED(msdb_query);
    query.vectors = q;
    query.n_vectors = 2;
    query.dim = 2;
    query.columns = "title, year";
    msdb_hit hits[3];
    size_t n = 0;
    CHECK_RC(msdb_db_search(db, "direct", &query, hits, 3, &n), MSDB_OK);
    CHECK(n == 3 && hits[0].int_id == 102 && hits[0].values_json != NULL &&
          strcmp(hits[0].values_json, "{\"title\":\"t2\",\"year\":2002}") == 0);
    msdb_hits_free(hits, n);
    CHECK(hits[0].values_json == NULL);
    query.columns = "nope";
    CHECK_RC(msdb_db_search(db, "direct", &query, hits, 3, &n), MSDB_NOT_FOUND);
    query.columns = NULL;
    CHECK_RC(msdb_db_search(db, "direct", &query, hits, 3, &n), MSDB_OK);
    CHECK(hits[0].values_json == NULL);
    msdb_hits_free(hits, n);

    /* Update, delete, compact, stats, drop (the vectors in a segment first, so deletes
     * leave tombstones for compaction). */
    CHECK_RC(msdb_db_flush(db, "direct"), MSDB_OK);
    msdb_id one = {NULL, 101};
    msdb_value upd = {"title", MSDB_TYPE_TEXT, 0, 0, "renamed"};
    CHECK_RC(msdb_db_update(db, "direct", &one, &upd, 1), MSDB_OK);
    CHECK_RC(msdb_db_get(db, "direct", NULL, 101, &d), MSDB_OK);
    if (d != NULL) {
        msdb_value v;
        CHECK_RC(msdb_document_value(d, 0, &v), MSDB_OK);
        CHECK(strcmp(v.text, "renamed") == 0);
        msdb_document_free(d);
    }
    msdb_id missing = {NULL, 4242};
    CHECK_RC(msdb_db_update(db, "direct", &missing, &upd, 1), MSDB_NOT_FOUND);
    uint64_t count = 0;
    msdb_value stamp = {"r", MSDB_TYPE_REAL, 0, 1.5, NULL};
    CHECK_RC(msdb_db_update_where(db, "direct", "year < 2003", &stamp, 1, &count), MSDB_OK);
    CHECK(count == 3);
    CHECK_RC(msdb_db_count(db, "direct", "r = 1.5", &count), MSDB_OK);
    CHECK(count == 3);
    msdb_id del[3] = {{NULL, 100}, {NULL, 101}, {NULL, 5555}};
    CHECK_RC(msdb_db_delete(db, "direct", del, 3, &count), MSDB_OK);
    CHECK(count == 2);
    CHECK_RC(msdb_changes(db, &changes), MSDB_OK);
    CHECK(changes == 2);
    CHECK_RC(msdb_db_delete_where(db, "direct", "year >= 2008", &count), MSDB_OK);
    CHECK(count == 2);
    msdb_stats stats;
    CHECK_RC(msdb_db_stats(db, "direct", &stats), MSDB_OK);
    CHECK(stats.docs == 6 && stats.segments >= 1 && stats.segment_bytes > 0 && stats.catalog_bytes > 0);
    int compacted = -1;
    CHECK_RC(msdb_db_compact(db, "direct", &compacted), MSDB_OK);
    CHECK(compacted == 1);
    CHECK_RC(msdb_db_stats(db, "direct", &stats), MSDB_OK);
    CHECK(stats.docs == 6 && stats.tombstones == 0 && stats.segment_tokens == 12);
    CHECK_RC(msdb_db_delete_where(db, "direct", NULL, &count), MSDB_OK);
    CHECK(count == 6);
    CHECK_RC(msdb_db_drop_collection(db, "direct"), MSDB_OK);
    CHECK_RC(msdb_db_drop_collection(db, "direct"), MSDB_NOT_FOUND);
    CHECK_RC(msdb_db_stats(db, "direct", &stats), MSDB_NOT_FOUND);
}

/* sqlite3_close semantics: BUSY while statements or cursors live; close_v2 defers;
 * finalize_statements finalizes them all. */
static void test_close_with_live_statements(const char *dir) {
    msdb_db *db = NULL;
    CHECK_RC(msdb_db_open(db_path(dir, "busy.msdb"), NULL, &db, NULL), MSDB_OK);
    CHECK_RC(msdb_db_exec(db, "CREATE COLLECTION b WITH (dim = 2); INSERT INTO b (id, tokens) VALUES ('x', '[[1,0]]')"), MSDB_OK);
    msdb_stmt *s1 = NULL, *s2 = NULL;
    msdb_cursor *cur = NULL;
    CHECK_RC(msdb_stmt_prepare(db, "SELECT id FROM b", &s1), MSDB_OK);
    CHECK_RC(msdb_stmt_prepare(db, "SELECT COUNT(*) FROM b", &s2), MSDB_OK);
    CHECK_RC(msdb_db_scan(db, "b", NULL, &cur), MSDB_OK);
    /* A statement on another handle does not make this one busy. */
    msdb_db *other = NULL;
    msdb_stmt *s3 = NULL;
    CHECK_RC(msdb_db_clone(db, &other), MSDB_OK);
    CHECK_RC(msdb_stmt_prepare(other, "SHOW COLLECTIONS", &s3), MSDB_OK);

    CHECK_RC(msdb_db_close(db), MSDB_BUSY);
    CHECK(strcmp(msdb_status_name(MSDB_BUSY), "MSDB_BUSY") == 0);
    CHECK(msg_has(msdb_db_errmsg(db), "2 statements and 1 cursor"));
    CHECK_RC(msdb_stmt_step(s1), MSDB_ROW); /* still usable */
    CHECK_RC(msdb_stmt_finalize(s1), MSDB_OK);
    CHECK_RC(msdb_db_close(db), MSDB_BUSY);
    size_t n = 0;
    CHECK_RC(msdb_db_finalize_statements(db, &n), MSDB_OK);
    CHECK(n == 2);
    CHECK_RC(msdb_stmt_step(s2), MSDB_MISUSE);
    msdb_document *d = NULL;
    CHECK_RC(msdb_cursor_next(cur, &d), MSDB_MISUSE);
    CHECK_RC(msdb_db_close(db), MSDB_OK);

    /* close_v2: released now, its statement keeps working until finalized. */
    CHECK_RC(msdb_db_close(other), MSDB_BUSY);
    CHECK_RC(msdb_db_close_v2(other), MSDB_OK);
    CHECK_RC(msdb_db_close_v2(other), MSDB_MISUSE);
    CHECK_RC(msdb_stmt_step(s3), MSDB_ROW);
    CHECK_RC(msdb_stmt_finalize(s3), MSDB_OK);
    CHECK_RC(msdb_db_close_v2(NULL), MSDB_OK);
}

/* Scripts statement by statement (prepare_v2's tail), columns before the first step, named
 * parameters. */
static void test_tail_columns_and_names(msdb_db *db) {
    const char *script = "CREATE COLLECTION t2 (title TEXT, year INTEGER) WITH (dim = 2);\n"
                         "  INSERT INTO t2 (id, tokens, title, year) VALUES ('p', '[[1,0]]', 'Caf\xc3\xa9', 2021);"
                         " -- a comment\n SELECT id, title FROM t2 WHERE year >= 2020;  ";
    const char *tail = script;
    int statements = 0, rows = 0;
    while (tail != NULL && *tail) {
        msdb_stmt *st = NULL;
        CHECK_RC(msdb_stmt_prepare_v2(db, tail, &st, &tail), MSDB_OK);
        if (st == NULL) break; /* only whitespace or comments left */
        statements++;
        int rc;
        while ((rc = msdb_stmt_step(st)) == MSDB_ROW) rows++;
        CHECK_RC(rc, MSDB_DONE);
        msdb_stmt_finalize(st);
    }
    CHECK(statements == 3 && rows == 1);
    CHECK(tail != NULL && *tail == '\0');
    msdb_stmt *st = (msdb_stmt *)0x1;
    CHECK_RC(msdb_stmt_prepare_v2(db, "  ;; ", &st, &tail), MSDB_OK);
    CHECK(st == NULL && *tail == '\0');
    CHECK_RC(msdb_stmt_prepare_v2(db, "SELEC 1; FLUSH t2", &st, &tail), MSDB_SYNTAX);
    CHECK_RC(msdb_stmt_prepare(db, "FLUSH t2; FLUSH t2", &st), MSDB_INVALID_ARGUMENT);

    /* Columns before the first step. */
    CHECK_RC(msdb_stmt_prepare(db, "SELECT *, score FROM t2 WHERE year > :y ORDER BY maxsim(:q) LIMIT 3", &st), MSDB_OK);
    size_t n = 0;
    CHECK_RC(msdb_stmt_column_count(st, &n), MSDB_OK);
    CHECK(n == 5); /* id, score, title, year, score */
    const char *name = NULL;
    CHECK_RC(msdb_stmt_column_name(st, 2, &name), MSDB_OK);
    CHECK(name && strcmp(name, "title") == 0);
    /* Named parameters: indices by first appearance, bound by index. */
    size_t pc = 0, iy = 0, iq = 0;
    CHECK_RC(msdb_stmt_param_count(st, &pc), MSDB_OK);
    CHECK(pc == 2);
    CHECK_RC(msdb_stmt_bind_parameter_index(st, ":y", &iy), MSDB_OK);
    CHECK_RC(msdb_stmt_bind_parameter_index(st, "q", &iq), MSDB_OK);
    CHECK(iy == 1 && iq == 2);
    CHECK_RC(msdb_stmt_bind_parameter_index(st, ":nope", &iq), MSDB_NOT_FOUND);
    CHECK(msg_has(msdb_stmt_errmsg(st), ":y, :q"));
    float q[2] = {1.0f, 0.0f};
    CHECK_RC(msdb_stmt_bind_int64(st, iy, 2020), MSDB_OK);
    CHECK_RC(msdb_stmt_bind_matrix(st, 2, q, 1, 2), MSDB_OK);
    CHECK_RC(msdb_stmt_step(st), MSDB_ROW);
    const char *txt = NULL;
    CHECK_RC(msdb_stmt_column_text(st, 2, &txt, NULL), MSDB_OK);
    CHECK(txt && strcmp(txt, "Caf\xc3\xa9") == 0);
    CHECK_RC(msdb_stmt_finalize(st), MSDB_OK);
    /* The same name twice is one parameter; ?N and a later ? follow SQLite. */
    CHECK_RC(msdb_stmt_prepare(db, "SELECT id FROM t2 WHERE year >= :y AND year <= :y AND title = ?3 AND id = ?", &st), MSDB_OK);
    CHECK_RC(msdb_stmt_param_count(st, &pc), MSDB_OK);
    CHECK(pc == 4);
    CHECK_RC(msdb_stmt_bind_int64(st, 1, 2021), MSDB_OK);
    CHECK_RC(msdb_stmt_bind_text(st, 3, "Caf\xc3\xa9"), MSDB_OK);
    CHECK_RC(msdb_stmt_bind_text(st, 4, "p"), MSDB_OK);
    CHECK_RC(msdb_stmt_step(st), MSDB_ROW);
    CHECK_RC(msdb_stmt_finalize(st), MSDB_OK);
    /* A statement that returns only a message has no columns. */
    CHECK_RC(msdb_stmt_prepare(db, "FLUSH t2", &st), MSDB_OK);
    CHECK_RC(msdb_stmt_column_count(st, &n), MSDB_OK);
    CHECK(n == 0);
    CHECK_RC(msdb_stmt_finalize(st), MSDB_OK);
    CHECK_RC(msdb_stmt_prepare(db, "SELECT nope FROM t2", &st), MSDB_OK);
    CHECK_RC(msdb_stmt_column_count(st, &n), MSDB_NOT_FOUND);
    CHECK_RC(msdb_stmt_finalize(st), MSDB_OK);
    CHECK_RC(msdb_db_exec(db, "DROP COLLECTION t2"), MSDB_OK);
}

/* Items of the first C-programmer review: REALs in values_json exact, doubles and query
 * shapes refused early, the lent message, counts for programs. */
static void test_review_defects(msdb_db *db) {
    CHECK_RC(msdb_db_exec(db, "CREATE COLLECTION rv (r REAL) WITH (dim = 2)"), MSDB_OK);
    float t[2] = {1.0f, 0.0f};
    msdb_doc d = MSDB_SIZED(msdb_doc);
    d.id = "x";
    d.tokens = t;
    d.n_tokens = 1;
    d.dim = 2;
    d.values_json = "{\"r\": 0.097264783048820247}";
    CHECK_RC(msdb_db_insert(db, "rv", &d, 1, 0), MSDB_OK);
    msdb_document *doc = NULL;
    CHECK_RC(msdb_db_get(db, "rv", "x", 0, &doc), MSDB_OK);
    msdb_value v = {0};
    CHECK_RC(msdb_document_value(doc, 0, &v), MSDB_OK);
    CHECK(v.kind == MSDB_TYPE_REAL && v.real_value == 0.097264783048820247);
    msdb_document_free(doc);
    uint64_t n = 0;
    CHECK_RC(msdb_db_count(db, "rv", "r = 0.097264783048820247", &n), MSDB_OK);
    CHECK(n == 1);
    /* NaN at bind, not at step. */
    msdb_stmt *st = NULL;
    CHECK_RC(msdb_stmt_prepare(db, "INSERT INTO rv (id, tokens, r) VALUES ('y', '[[1,0]]', ?)", &st), MSDB_OK);
    CHECK_RC(msdb_stmt_bind_double(st, 1, NAN), MSDB_INVALID_ARGUMENT);
    CHECK_RC(msdb_stmt_bind_double(st, 1, 0.5), MSDB_OK);
    CHECK_RC(msdb_stmt_step(st), MSDB_DONE);
    CHECK_RC(msdb_stmt_finalize(st), MSDB_OK);
    CHECK_RC(msdb_changes(db, &n), MSDB_OK);
    CHECK(n == 1);
    CHECK_RC(msdb_db_exec(db, "DELETE FROM rv"), MSDB_OK);
    CHECK_RC(msdb_changes(db, &n), MSDB_OK);
    CHECK(n == 2);
    /* No query vectors, or two for a dense query: errors that say so. */
    msdb_query q = MSDB_SIZED(msdb_query);
    q.vectors = t;
    q.n_vectors = 0;
    q.dim = 2;
    msdb_hit hits[2];
    size_t nh = 0;
    CHECK_RC(msdb_db_search(db, "docs", &q, hits, 2, &nh), MSDB_INVALID_ARGUMENT);
    CHECK(msg_has(msdb_db_errmsg(db), "at least one query vector"));
    float two[4] = {1, 0, 0, 1};
    q.kind = MSDB_QUERY_DENSE;
    q.vectors = two;
    q.n_vectors = 2;
    CHECK_RC(msdb_db_search(db, "docs", &q, hits, 2, &nh), MSDB_INVALID_ARGUMENT);
    /* The lent message: the same text, not to be freed, NULL after a success. */
    const char *lent = msdb_errmsg(db);
    CHECK(lent != NULL && strstr(lent, "exactly one vector") != NULL);
    CHECK_RC(msdb_db_exec(db, "DROP COLLECTION rv"), MSDB_OK);
    CHECK(msdb_errmsg(db) == NULL);
    CHECK_RC(msdb_interrupt(db), MSDB_OK); /* nothing long runs: a no-op */
    CHECK_RC(msdb_db_exec(db, "SHOW COLLECTIONS"), MSDB_OK);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    test_version_and_names();
    test_open_errors(dir);

    msdb_db *db = NULL;
    CHECK_RC(msdb_db_open(db_path(dir, "main.msdb"), NULL, &db, NULL), MSDB_OK);
    if (db == NULL) return 1;
    test_exec(db);
    test_insert(db);
    test_search(db);
    test_statements(db);
    test_review_defects(db);
    test_direct_calls(db);
    test_tail_columns_and_names(db);
    test_threads(db);
    test_flush_and_reopen(dir, &db);
    test_backup_restore(dir, db);
    test_misuse_after_close(db);
    test_close_with_live_statements(dir);

    /* Shutdown joins the library's worker threads: refused while anything is open, then
     * done; the library starts again on the next call. Valgrind then needs no
     * suppression. */
    msdb_db *last = NULL;
    CHECK_RC(msdb_db_open(db_path(dir, "last.msdb"), NULL, &last, NULL), MSDB_OK);
    CHECK_RC(msdb_shutdown(), MSDB_BUSY);
    CHECK(msg_has(msdb_last_errmsg(), "1 database handle"));
    CHECK_RC(msdb_db_close(last), MSDB_OK);
    CHECK_RC(msdb_shutdown(), MSDB_OK);
    CHECK_RC(msdb_shutdown(), MSDB_OK);
    CHECK_RC(msdb_db_open(db_path(dir, "last.msdb"), NULL, &last, NULL), MSDB_OK);
    CHECK_RC(msdb_db_exec(last, "CREATE COLLECTION again WITH (dim = 2); INSERT INTO again (id, tokens) VALUES ('a', '[[1,0]]')"), MSDB_OK);
    CHECK_RC(msdb_db_close(last), MSDB_OK);
    CHECK_RC(msdb_shutdown(), MSDB_OK);

    printf("%d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
