/* memory_fts_query: a user's query becomes an FTS5 expression of quoted
 * words ORed, whatever FTS5 syntax it holds, and every such expression is
 * accepted by FTS5 (unicode61, remove_diacritics 2). */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "memory/search.h"

static void expect(const char *query, const char *want)
{
    char *got = memory_fts_query(query);
    cr_expect_str_eq(got, want, "query [%s]", query);
    free(got);
}

Test(memory_search, fts_query_words)
{
    expect("invoice overdue", "\"invoice\" OR \"overdue\"");
    expect("  ", "");
    expect(NULL, "");
    expect("\"quoted\" (paren) AND OR NOT", "\"quoted\" OR \"paren\" OR \"AND\" OR \"OR\" OR \"NOT\"");
    expect("pre* NEAR(a b) col:x ^start -minus +plus", "\"pre\" OR \"NEAR\" OR \"a\" OR \"b\" OR \"col\" OR \"x\" OR \"start\" OR \"minus\" OR \"plus\"");
    expect("café Zürich 東京", "\"café\" OR \"Zürich\" OR \"東京\"");
    expect("O'Brien", "\"O\" OR \"Brien\"");
}

Test(memory_search, fts_accepts_every_expression)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db,
                              "CREATE VIRTUAL TABLE t USING fts5(text, tokenize = 'unicode61"
                              " remove_diacritics 2');"
                              "INSERT INTO t VALUES ('Le café de Zürich'), ('AND or not'),"
                              " ('the \"clickstream\" table (partially) empty');",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    static const char *const queries[] = { "\"", "\"\"\"", "(", ")", "*", "AND", "NOT x", "a OR",
                                           "NEAR(", "{text}: x", "text:", "^", "cafe",
                                           "ZURICH", "\"clickstream\" (partially)", "\xff\xfe",
                                           "-", "'", NULL };
    for (int i = 0; queries[i]; i++) {
        char *e = memory_fts_query(queries[i]);
        if (!*e) {
            free(e);
            continue;
        }
        sqlite3_stmt *st;
        cr_assert_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM t WHERE t MATCH ?1", -1, &st,
                                        NULL),
                     SQLITE_OK);
        sqlite3_bind_text(st, 1, e, -1, SQLITE_TRANSIENT);
        cr_expect_eq(sqlite3_step(st), SQLITE_ROW, "[%s] -> [%s]: %s", queries[i], e,
                     sqlite3_errmsg(db));
        if (!strcmp(queries[i], "cafe") || !strcmp(queries[i], "ZURICH"))
            cr_expect_eq(sqlite3_column_int(st, 0), 1, "diacritics and case: [%s]", queries[i]);
        sqlite3_finalize(st);
        free(e);
    }
    sqlite3_close(db);
}
