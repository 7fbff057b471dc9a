/* Unit tests of the migration tokenizer (migrate_skip_token): what
 * the :"schema" substitution steps over untouched, as psql would: line and
 * nested block comments, string literals holding ';' or ':"schema"', E''
 * strings with backslash escapes, quoted identifiers and dollar quotes. */
#include <string.h>

#include <check.h>

#include "migrate_int.h"
#include "runner.h"

struct token_case {
        const char *sql;
        size_t at;   /* where the token is looked for */
        size_t want; /* its length; 0: no token starts there */
};

#define TO_END ((size_t)-1) /* unterminated: runs to the end */

static const struct token_case tokens[] = {
    /* Plain text starts no token. */
    {"SELECT 1; SELECT 2", 0, 0},
    {";", 0, 0},
    {"a - b / c", 2, 0},
    {"a - b / c", 6, 0},
    /* Line comments end before the newline. */
    {"-- a; :\"schema\"\nSELECT", 0, 15},
    {"-- to the end", 0, TO_END},
    /* Block comments nest, as SQL's do (C's do not). */
    {"/* a; */ x", 0, 8},
    {"/* a /* nested; */ still */ x", 0, 27},
    {"/* /* /* */ */ */;", 0, 17},
    {"/* unterminated /* */", 0, TO_END},
    /* String literals: '' doubles, ';' and :'schema' inside are text. */
    {"'a;b' x", 0, 5},
    {"'it''s; here' x", 0, 13},
    {"'' x", 0, 2},
    {"':''schema''' x", 0, 13},
    {"'unterminated; x", 0, TO_END},
    /* A backslash escapes only in an E'' string... */
    {"E'a\\'b;' x", 1, 7},
    {"e'a\\\\' x", 1, 5},
    {"'a\\'b;' x", 0, 4},
    /* ...and E must stand alone: xE'...' is an identifier then a string. */
    {"xE'a\\' x", 2, 4},
    {"(E'\\'')", 2, 4},
    /* Quoted identifiers: "" doubles. */
    {"\"col;\"\"x\" y", 0, 9},
    {"\"schema\" x", 0, 8},
    /* Dollar quotes, with or without a tag; other tags and quotes inside
     * are text. */
    {"$$ a; 'b' $$ x", 0, 12},
    {"$fn$ body $$ ; $f $fn$ x", 0, 22},
    {"$_1$;$_1$", 0, 9},
    {"$tag$ unterminated", 0, TO_END},
    /* Not dollar quotes: a parameter, a $ inside an identifier, a tag
     * that is not an identifier. */
    {"$1", 0, 0},
    {"a$b$ x", 1, 0},
    {"$a b$", 0, 0},
    {"$", 0, 0},
};

START_TEST(test_skip_token)
{
        const struct token_case *t = &tokens[_i];
        size_t want = t->want == TO_END ? strlen(t->sql) - t->at : t->want;

        ck_assert_msg(migrate_skip_token(t->sql, t->at) == want,
                      "token at %zu of [%s]: %zu, want %zu", t->at, t->sql,
                      migrate_skip_token(t->sql, t->at), want);
}
END_TEST

/* Walking a whole file as the substitution does: only the ';' outside
 * every token are statement ends. */
START_TEST(test_walk_counts_statement_ends)
{
        static const char sql[] =
            "CREATE TABLE t (a text DEFAULT ';'); -- one;\n"
            "/* two; /* three; */ */ COMMENT ON TABLE t IS E'four\\';';\n"
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;\n"
            "SELECT \"x;y\" FROM t;";
        size_t i = 0;
        int ends = 0;

        while (sql[i] != '\0') {
                size_t n = migrate_skip_token(sql, i);

                if (n > 0) {
                        i += n;
                        continue;
                }
                ends += sql[i] == ';';
                i++;
        }
        ck_assert_int_eq(ends, 4);
}
END_TEST

Suite *test_suite(void)
{
        Suite *s = suite_create("migrate");
        TCase *tc = tcase_create("tokenizer");

        tcase_add_loop_test(tc, test_skip_token, 0, (int)(sizeof(tokens) / sizeof(tokens[0])));
        tcase_add_test(tc, test_walk_counts_statement_ends);
        suite_add_tcase(s, tc);
        return s;
}
