/* pq_util: libpq's messages for people. One helper for the relay's
 * sessions and the operator commands alike: one line, never the conninfo. */
#include "pq_util.h"

#include <stdio.h>
#include <string.h>

/* libpq's messages end with a newline and put DETAIL, HINT and advice on
 * lines of their own ("...failed: ...\n\tIs the server running..."); a log
 * or a terminal wants one line, each run of white space one space. An
 * error at a position in a statement comes with the statement's text and a
 * caret under it ("LINE 1: ..."), which says nothing on one line: left out. */
void pq_error_line(const char *msg, char *errbuf, size_t errsz)
{
        size_t len = 0;

        if (errsz == 0)
                return;
        for (const char *line = msg != NULL ? msg : ""; *line != '\0';) {
                size_t n = strcspn(line, "\n"), blank = strspn(line, " \t");
                int space = len > 0;

                if (strncmp(line, "LINE ", 5) == 0 || blank >= n || line[blank] == '^') {
                        line += n + (line[n] == '\n');
                        continue;
                }
                for (size_t i = blank; i < n && len + 1 < errsz; i++) {
                        if (line[i] == ' ' || line[i] == '\t' || line[i] == '\r') {
                                space = len > 0;
                                continue;
                        }
                        if (space && len + 2 < errsz)
                                errbuf[len++] = ' ';
                        space = 0;
                        errbuf[len++] = line[i];
                }
                line += n + (line[n] == '\n');
        }
        errbuf[len] = '\0';
        if (len == 0)
                snprintf(errbuf, errsz, "unknown error");
}

void pq_failure(PGconn *conn, const PGresult *res, char *errbuf, size_t errsz)
{
        const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

        if (msg == NULL && res != NULL)
                msg = PQresultErrorMessage(res);
        if ((msg == NULL || *msg == '\0') && conn != NULL)
                msg = PQerrorMessage(conn);
        pq_error_line(msg != NULL && *msg != '\0' ? msg : "unknown error (out of memory?)", errbuf,
                      errsz);
}
