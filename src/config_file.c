/* config_file: settings whose value is read from a file, so that a secret
 * (the database URL, a SASL password) can come from a mounted Kubernetes
 * or Docker secret instead of the environment or argv, where `ps` and
 * /proc/<pid>/environ show it. What a file holds is a secret whatever the
 * setting: errors name the setting and the path, never the content. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_table.h"

int config_read_file(const char *path, const char *src, char **out, char *errbuf, size_t errsz)
{
        FILE *f = fopen(path, "rb");
        char *buf = NULL;
        size_t n;
        int rc = -1;

        *out = NULL;
        if (f == NULL) {
                snprintf(errbuf, errsz, "%s: cannot read %.200s: %s", src, path, strerror(errno));
                goto out;
        }
        /* One byte more than allowed tells a file at the limit from a larger one. */
        buf = malloc(CONFIG_FILE_MAX + 2);
        if (buf == NULL) {
                snprintf(errbuf, errsz, "out of memory");
                goto out;
        }
        n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
        if (ferror(f)) {
                /* A directory opens but does not read (EISDIR). */
                snprintf(errbuf, errsz, "%s: cannot read %.200s: %s", src, path, strerror(errno));
                goto out;
        }
        if (n > CONFIG_FILE_MAX) {
                snprintf(errbuf, errsz,
                         "%s: %.200s is larger than %d KiB: it should hold one value", src, path,
                         CONFIG_FILE_MAX / 1024);
                goto out;
        }
        /* Editors and `echo` end the value with a newline that is no part of it. */
        if (n > 0 && buf[n - 1] == '\n') {
                n--;
                if (n > 0 && buf[n - 1] == '\r')
                        n--;
        }
        if (n == 0) {
                snprintf(errbuf, errsz, "%s: %.200s is empty", src, path);
                goto out;
        }
        if (memchr(buf, '\0', n) != NULL) {
                snprintf(errbuf, errsz,
                         "%s: %.200s holds a NUL byte: it should hold one text value", src, path);
                goto out;
        }
        buf[n] = '\0';
        *out = buf;
        buf = NULL;
        rc = 0;
out:
        free(buf);
        if (f != NULL)
                fclose(f);
        return rc;
}
