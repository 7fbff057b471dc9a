/* What the config unit tests share: see config_test_util.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "config.h"
#include "config_test_util.h"

char ct_errbuf[512];

int ct_argc_of(char **argv)
{
        int n = 0;

        while (argv[n] != NULL)
                n++;
        return n;
}

struct config *ct_parse_ok(char **argv)
{
        struct config *cfg = config_new();

        ck_assert_ptr_nonnull(cfg);
        ct_errbuf[0] = '\0';
        ck_assert_msg(config_parse(cfg, ct_argc_of(argv), argv, ct_errbuf, sizeof(ct_errbuf)) == 0,
                      "unexpected parse error: %s", ct_errbuf);
        return cfg;
}

/* Parse must fail; ct_errbuf holds the message. */
void ct_parse_fails(char **argv)
{
        struct config *cfg = config_new();

        ck_assert_ptr_nonnull(cfg);
        ct_errbuf[0] = '\0';
        ck_assert_int_eq(config_parse(cfg, ct_argc_of(argv), argv, ct_errbuf, sizeof(ct_errbuf)),
                         -1);
        ck_assert_msg(ct_errbuf[0] != '\0', "no error message");
        ck_assert_msg(strchr(ct_errbuf, '\n') == NULL, "error is not one line: %s", ct_errbuf);
        config_free(cfg);
}

/* Parses and validates with both DB and Kafka needed; returns validate's result. */
int ct_validate_args(char **argv)
{
        struct config *cfg = ct_parse_ok(argv);
        int rc;

        ct_errbuf[0] = '\0';
        rc = config_validate(cfg, CONFIG_NEED_DB | CONFIG_NEED_KAFKA, ct_errbuf, sizeof(ct_errbuf));
        if (rc != 0) {
                ck_assert_msg(ct_errbuf[0] != '\0', "no error message");
                ck_assert_msg(strchr(ct_errbuf, '\n') == NULL, "error is not one line: %s",
                              ct_errbuf);
        }
        config_free(cfg);
        return rc;
}

char ct_tmpdir[64];

/* Writes len bytes to ct_tmpdir/name; returns the path (static per name slot). */
char *ct_write_file(const char *name, const char *data, size_t len)
{
        static char paths[8][128];
        static int next;
        char *path = paths[next++ % 8];
        FILE *f;

        if (ct_tmpdir[0] == '\0') {
                snprintf(ct_tmpdir, sizeof(ct_tmpdir), "/tmp/test-config-XXXXXX");
                ck_assert_ptr_nonnull(mkdtemp(ct_tmpdir));
        }
        snprintf(path, 128, "%s/%s", ct_tmpdir, name);
        f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(data, 1, len, f), len);
        ck_assert_int_eq(fclose(f), 0);
        return path;
}

/* ct_errbuf names what and the path, and shows nothing of the content. */
void ct_assert_names(const char *what, const char *path)
{
        ck_assert_msg(strstr(ct_errbuf, what) != NULL, "error lacks %s: %s", what, ct_errbuf);
        ck_assert_msg(strstr(ct_errbuf, path) != NULL, "error lacks the path: %s", ct_errbuf);
        ck_assert_msg(strstr(ct_errbuf, "s3cret") == NULL, "error shows the secret: %s", ct_errbuf);
}

char *ct_capture(void (*print)(FILE *))
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        ck_assert_ptr_nonnull(f);
        print(f);
        ck_assert_int_eq(fclose(f), 0);
        return buf;
}
