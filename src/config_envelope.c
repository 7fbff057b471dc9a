/* config_envelope: the settings of the message envelope (--envelope,
 * --cloudevents-source): their validation and the default CloudEvents
 * source, /outbox-relay/<database>/<schema>. */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "config_table.h"

/* Longest --cloudevents-source: it is a header of every message. */
#define CE_SOURCE_MAX 1024

int config_cloudevents(const struct config *cfg)
{
        return cfg->envelope != NULL && strcmp(cfg->envelope, "cloudevents") == 0;
}

/* RFC 3986: unreserved, gen-delims and sub-delims; '%' only as an escape. */
static int uri_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c != '\0' && strchr("-._~:/?#[]@!$&'()*+,;=", c) != NULL);
}

static int hex_digit(char c)
{
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Where v stops being a URI-reference (-1: it is one). */
static long uri_reference_bad_at(const char *v)
{
        for (const char *p = v; *p != '\0'; p++) {
                if (*p == '%' && hex_digit(p[1]) && hex_digit(p[2]))
                        p += 2;
                else if (!uri_char(*p))
                        return (long)(p - v);
        }
        return -1;
}

int config_check_envelope(const struct config *cfg, char *errbuf, size_t errsz)
{
        long bad;

        if (cfg->envelope != NULL && strcmp(cfg->envelope, "plain") != 0 &&
            strcmp(cfg->envelope, "cloudevents") != 0) {
                snprintf(
                    errbuf, errsz,
                    "invalid --envelope (OUTBOX_ENVELOPE) \"%.64s\": expected plain or cloudevents",
                    cfg->envelope);
                return -1;
        }
        if (cfg->cloudevents_source == NULL)
                return 0;
        if (strlen(cfg->cloudevents_source) > CE_SOURCE_MAX) {
                snprintf(
                    errbuf, errsz,
                    "--cloudevents-source (OUTBOX_CLOUDEVENTS_SOURCE) is longer than %d characters",
                    CE_SOURCE_MAX);
                return -1;
        }
        if ((bad = uri_reference_bad_at(cfg->cloudevents_source)) >= 0) {
                unsigned char c = (unsigned char)cfg->cloudevents_source[bad];

                if (c == '%')
                        snprintf(errbuf, errsz,
                                 "invalid --cloudevents-source (OUTBOX_CLOUDEVENTS_SOURCE): not a "
                                 "URI-reference (RFC 3986): byte %ld is a '%%' not followed by two "
                                 "hex digits (write %%25)",
                                 bad + 1);
                else
                        snprintf(errbuf, errsz,
                                 "invalid --cloudevents-source (OUTBOX_CLOUDEVENTS_SOURCE): not a "
                                 "URI-reference (RFC 3986): byte %ld is 0x%02x (percent-encode it)",
                                 bad + 1, c);
                return -1;
        }
        return 0;
}

/* The database libpq connects to for conninfo: its dbname, else
 * PGDATABASE, else the user name (its user, PGUSER, the login). A
 * service file's dbname is not looked up. */
static void database_name(const char *conninfo, char *buf, size_t bufsz)
{
        PQconninfoOption *opts = conninfo != NULL ? PQconninfoParse(conninfo, NULL) : NULL;
        const char *dbname = NULL, *user = NULL;
        struct passwd *pw;

        for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
                if (strcmp(o->keyword, "dbname") == 0 && o->val != NULL && o->val[0] != '\0')
                        dbname = o->val;
                else if (strcmp(o->keyword, "user") == 0 && o->val != NULL && o->val[0] != '\0')
                        user = o->val;
        }
        if (dbname == NULL)
                dbname = getenv("PGDATABASE");
        if (dbname == NULL || dbname[0] == '\0')
                dbname = user != NULL ? user : getenv("PGUSER");
        if ((dbname == NULL || dbname[0] == '\0') && (pw = getpwuid(geteuid())) != NULL)
                dbname = pw->pw_name;
        snprintf(buf, bufsz, "%s", dbname != NULL ? dbname : "");
        PQconninfoFree(opts);
}

const char *config_cloudevents_source(const struct config *cfg, char *buf, size_t bufsz)
{
        static const char hex[] = "0123456789ABCDEF";
        char db[256];
        size_t n;

        if (cfg->cloudevents_source != NULL) {
                snprintf(buf, bufsz, "%s", cfg->cloudevents_source);
                return buf;
        }
        database_name(cfg->database_url, db, sizeof(db));
        n = (size_t)snprintf(buf, bufsz, "/outbox-relay/");
        /* A database name may hold any character: unreserved ones as they
         * are, the rest percent-encoded, so the default is a URI-reference. */
        for (const char *p = db; *p != '\0' && n + 4 < bufsz; p++) {
                unsigned char c = (unsigned char)*p;

                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    strchr("-._~", c) != NULL) {
                        buf[n++] = (char)c;
                } else {
                        buf[n++] = '%';
                        buf[n++] = hex[c >> 4];
                        buf[n++] = hex[c & 15];
                }
        }
        if (n < bufsz)
                snprintf(buf + n, bufsz - n, "/%s", cfg->schema != NULL ? cfg->schema : "");
        return buf;
}
