/* Unit tests: the maths of model quality (model/quality.h): the normalised
 * edit distance (worked out by hand: kitten/sitting is 3 edits of 7 code
 * points), the Wilson score interval (against published 95% values), and
 * the body text a payload is judged by. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "helpers.h"
#include "model/quality.h"
#include "store/store.h"

static double ed(const char *a, const char *b)
{
    return model_edit_distance(a, strlen(a), b, strlen(b));
}

#define near(x, y) cr_assert(fabs((x) - (y)) < 1e-4, "%s = %.6f, want %.6f", #x, (double)(x), (double)(y))

Test(model_quality, edit_distance_by_hand)
{
    near(ed("kitten", "sitting"), 3.0 / 7);
    near(ed("flaw", "lawn"), 2.0 / 4);
    near(ed("same text", "same text"), 0);
    near(ed("", ""), 0);
    near(ed("abc", ""), 1);
    near(ed("", "xyz"), 1);
    near(ed("abc", "xyz"), 1);
    near(ed("Our price is 40 USD.", "Our price is 45 USD per seat."), 10.0 / 29);
    /* symmetric */
    near(ed("sitting", "kitten"), ed("kitten", "sitting"));
}

Test(model_quality, edit_distance_counts_code_points)
{
    /* é is two bytes but one character: one substitution of four */
    near(ed("caf\xC3\xA9", "cafe"), 1.0 / 4);
    near(ed("\xE2\x82\xAC" "5", "$5"), 1.0 / 2);
    /* bytes that are not UTF-8 count one each */
    near(ed("\xFF\xFE", ""), 1);
    near(ed("a\xC3", "a"), 1.0 / 2); /* a truncated sequence: one byte */
    /* a stray byte never equals the character of the same number, nor an
     * overlong form the character it spells */
    near(ed("\xE9", "\xC3\xA9"), 1);
    near(ed("\xC1\x81", "A"), 1);
    near(ed("\xED\xA0\x80", "x"), 1); /* a surrogate: three stray bytes against x */
}

Test(model_quality, edit_distance_long_texts)
{
    /* a one-character change deep inside long equal texts: exact, thanks
     * to the common prefix and suffix */
    size_t n = 20000;
    char *a = malloc(n + 1), *b = malloc(n + 1);
    memset(a, 'a', n);
    memset(b, 'a', n);
    a[n] = b[n] = '\0';
    b[n / 2] = 'b';
    near(model_edit_distance(a, n, b, n), 1.0 / (double)n);
    /* wholly different beyond the window: counted as different (1) */
    memset(b, 'b', n);
    near(model_edit_distance(a, n, b, n), 1);
    /* a shorter text against a longer one beyond the window: at most 1 */
    double d = model_edit_distance(a, n, b, 10);
    cr_assert(d >= 0.9995 && d <= 1.0, "%f", d);
    free(a);
    free(b);
}

/* The exact window is bounded in DP cells (MODEL_EDIT_CELLS), not per text:
 * a short middle against a long one is exact; two long middles are compared
 * over MODEL_EDIT_WINDOW code points each, the rest counts as different. */
Test(model_quality, edit_distance_window_in_cells)
{
    /* 4990 x, "hello", y against "hello", z: delete the x's, change y to z */
    size_t n = 4996;
    char *a = malloc(n + 1);
    memset(a, 'x', 4990);
    memcpy(a + 4990, "helloy", 6);
    a[n] = '\0';
    near(model_edit_distance(a, n, "helloz", 6), 4991.0 / (double)n);
    free(a);
    /* two long middles with two changes far apart: exact when they fit in
     * the cells, an upper bound past the window when they do not */
    size_t small = MODEL_EDIT_WINDOW, big = 3 * MODEL_EDIT_WINDOW;
    char *x = malloc(big + 1), *y = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        x[i] = y[i] = (char)('a' + i % 26);
    x[big] = y[big] = '\0';
    y[0] = y[small - 1] = '#';
    near(model_edit_distance(x, small, y, small), 2.0 / (double)small);
    y[small - 1] = x[small - 1];
    y[big - 1] = '#';
    /* middles of 3 x WINDOW each: WINDOW compared exactly (1 edit), the
     * remaining 2 x WINDOW counted as different */
    near(model_edit_distance(x, big, y, big), (1.0 + 2.0 * (double)small) / (double)big);
    free(x);
    free(y);
}

Test(model_quality, wilson_published_values)
{
    double lo, hi;
    model_wilson(5, 10, &lo, &hi);
    near(lo, 0.2366);
    near(hi, 0.7634);
    model_wilson(0, 10, &lo, &hi);
    near(lo, 0);
    near(hi, 0.2775);
    model_wilson(10, 10, &lo, &hi);
    near(lo, 0.7225);
    near(hi, 1);
    model_wilson(1, 3, &lo, &hi); /* p = 1/3 */
    near(lo, 0.0615);
    near(hi, 0.7923);
    model_wilson(0, 0, &lo, &hi); /* nothing known */
    near(lo, 0);
    near(hi, 1);
}

Test(model_quality, wilson_is_symmetric_and_narrows)
{
    double lo1, hi1, lo2, hi2;
    for (int n = 1; n <= 50; n++)
        for (int k = 0; k <= n; k++) {
            model_wilson(k, n, &lo1, &hi1);
            model_wilson(n - k, n, &lo2, &hi2);
            near(lo1, 1 - hi2);
            double p = (double)k / n;
            cr_assert(lo1 <= p + 1e-12 && p <= hi1 + 1e-12, "k %d n %d", k, n);
        }
    model_wilson(50, 100, &lo1, &hi1);
    model_wilson(500, 1000, &lo2, &hi2);
    cr_assert(hi2 - lo2 < hi1 - lo1);
}

Test(model_quality, body_text)
{
    json_t *p = json_pack("{s:s, s:s}", "subject", "Re", "text", "the body");
    char *t = model_body_text(p);
    cr_assert_str_eq(t, "the body");
    free(t);
    json_decref(p);
    p = json_pack("{s:s}", "body", "a webhook body");
    t = model_body_text(p);
    cr_assert_str_eq(t, "a webhook body");
    free(t);
    json_decref(p);
    p = json_string("just text");
    t = model_body_text(p);
    cr_assert_str_eq(t, "just text");
    free(t);
    json_decref(p);
    p = json_pack("{s:i, s:s}", "z", 1, "a", "x");
    t = model_body_text(p);
    cr_assert_str_eq(t, "{\"a\":\"x\",\"z\":1}"); /* canonical JSON */
    free(t);
    json_decref(p);
    t = model_body_text(NULL);
    cr_assert_str_eq(t, "");
    free(t);
    /* capped on a character boundary */
    size_t n = MODEL_QUALITY_TEXT_MAX + 11; /* odd: pairs of é, then x */
    char *big = malloc(n + 1);
    for (size_t i = 0; i + 1 < n; i += 2) {
        big[i] = (char)0xC3;
        big[i + 1] = (char)0xA9;
    }
    big[n - 1] = 'x';
    big[n] = '\0';
    p = json_string(big);
    cr_assert_not_null(p, "valid UTF-8");
    t = model_body_text(p);
    cr_assert_leq(strlen(t), MODEL_QUALITY_TEXT_MAX);
    cr_assert_geq(strlen(t), MODEL_QUALITY_TEXT_MAX - 1);
    cr_assert_eq(strlen(t) % 2, 0, "a whole number of two-byte characters");
    free(t);
    json_decref(p);
    free(big);
}

/* A canary's state from the store; when it cannot be read, no canary (the
 * route's configured order): a rolled-back canary never comes back. */
Test(model_quality, canary_state_read_error_is_no_canary)
{
    ModelRouteConfig route = { .name = "draft", .candidates = { "mid" }, .n_candidates = 1,
                               .canary = "bad" };
    cr_assert_eq(model_canary_state(NULL, &route, NULL), MODEL_CANARY_NONE);
    char *dir = test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/q.db", dir);
    StoreOptions o = { .create = true };
    Store *s = NULL;
    Err e = { 0 };
    cr_assert_eq(store_open(path, &o, &s, &e), 0, "%s", e.msg);
    int64_t since = -1;
    /* no model_canaries table: a read error */
    cr_assert_eq(model_canary_state(s, &route, &since), MODEL_CANARY_NONE);
    cr_assert_eq(since, 0);
    cr_assert_eq(store_exec(s, "CREATE TABLE model_canaries(route TEXT PRIMARY KEY,"
                               " candidate TEXT, state TEXT, seq INTEGER, at TEXT, by TEXT,"
                               " reason TEXT)", &e), 0, "%s", e.msg);
    cr_assert_eq(model_canary_state(s, &route, &since), MODEL_CANARY_ACTIVE);
    cr_assert_eq(store_exec(s, "INSERT INTO model_canaries VALUES ('draft', 'bad',"
                               " 'rolled_back', 42, '', 'rule', '')", &e), 0, "%s", e.msg);
    cr_assert_eq(model_canary_state(s, &route, &since), MODEL_CANARY_ROLLED_BACK);
    cr_assert_eq(since, 42);
    /* another candidate configured: a new trial */
    snprintf(route.canary, sizeof route.canary, "good");
    cr_assert_eq(model_canary_state(s, &route, &since), MODEL_CANARY_ACTIVE);
    store_close(s);
    test_rmdir(dir);
}
