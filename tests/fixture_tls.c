/* fixture_tls: certificates made with openssl at test time (a CA, a server
 * certificate for 127.0.0.1 and localhost signed by it) and the temp
 * directories of secret files that the TLS tests give the relay. */
#include "fixture.h"
#include "fixture_int.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FX_OPENSSL "/usr/bin/openssl"

/* Runs openssl with the given arguments (NULL-terminated) as o says. */
static void run_openssl(const struct fx_spawn_opts *o, const char *const args[])
{
        const char *argv[32] = {FX_OPENSSL};
        char *out = NULL;
        int n = 1, rc;

        while (args[n - 1] != NULL && n < 31) {
                argv[n] = args[n - 1];
                n++;
        }
        argv[n] = NULL;
        rc = fx_run_capture(argv, o, &out, 60000);
        ck_assert_msg(rc == 0, "openssl %s failed (%d): %.*s", args[0], rc, FX_TAIL_BYTES,
                      out ? out : "");
        free(out);
}

void fx_tls_make_ca(const struct fx_spawn_opts *o, const char *dir, const char *name)
{
        char key[256], crt[256], subj[128];

        snprintf(key, sizeof(key), "%s/%s.key", dir, name);
        snprintf(crt, sizeof(crt), "%s/%s.crt", dir, name);
        snprintf(subj, sizeof(subj), "/CN=outbox test CA %s", name);
        run_openssl(o, (const char *const[]){"req", "-x509", "-newkey", "ec", "-pkeyopt",
                                             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                                             key, "-out", crt, "-days", "2", "-subj", subj, NULL});
}

void fx_make_ca(const char *dir, const char *name)
{
        struct fx_spawn_opts o = {.in = -1, .out = -1, .err = -1};

        fx_tls_make_ca(&o, dir, name);
}

void fx_tls_server_cert(const struct fx_spawn_opts *o, const char *dir, const char *name)
{
        char key[256], csr[256], crt[256], ext[256], ca[256], cakey[256];
        FILE *f;

        snprintf(key, sizeof(key), "%s/%s.key", dir, name);
        snprintf(csr, sizeof(csr), "%s/%s.csr", dir, name);
        snprintf(crt, sizeof(crt), "%s/%s.crt", dir, name);
        snprintf(ext, sizeof(ext), "%s/%s.ext", dir, name);
        snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
        snprintf(cakey, sizeof(cakey), "%s/ca.key", dir);
        /* PKCS#8 ("BEGIN PRIVATE KEY"), unencrypted: what PostgreSQL and
         * Kafka's PEM key store read without a key password. */
        run_openssl(o, (const char *const[]){"req", "-new", "-newkey", "ec", "-pkeyopt",
                                             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                                             key, "-out", csr, "-subj", "/CN=127.0.0.1", NULL});
        f = fopen(ext, "w");
        ck_assert_msg(f != NULL, "%s: %s", ext, strerror(errno));
        fputs("subjectAltName = IP:127.0.0.1, DNS:localhost\n", f);
        ck_assert_msg(fclose(f) == 0, "%s: %s", ext, strerror(errno));
        run_openssl(o, (const char *const[]){"x509", "-req", "-in", csr, "-CA", ca, "-CAkey", cakey,
                                             "-CAcreateserial", "-out", crt, "-days", "2",
                                             "-extfile", ext, NULL});
}

void fx_tmpdir_new(char *dir, size_t size, const char *prefix)
{
        snprintf(dir, size, "/tmp/%s-XXXXXX", prefix);
        ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp %s: %s", dir, strerror(errno));
}

void fx_tmpdir_remove(const char *dir)
{
        if (dir[0] != '\0')
                fx_rm_rf(dir);
}

char *fx_write_secret(const char *dir, const char *name, const char *text)
{
        char *path = NULL;
        int fd;

        ck_assert_int_gt(asprintf(&path, "%s/%s", dir, name), 0);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
        ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        ck_assert_int_eq(close(fd), 0);
        return path;
}
