/* config_doc: --help and the README's configuration table, both written
 * from the settings table so that what is documented is what is parsed. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "config_table.h"

/* The description of a setting as --help and the README show it. */
static void describe(const struct setting *s, int with_default, char *buf, size_t sz)
{
        size_t n = (size_t)snprintf(buf, sz, "%s", s->help);

        if (n < sz && (s->type == T_INT || s->type == T_ID))
                n += (size_t)(s->max == LLONG_MAX
                                  ? snprintf(buf + n, sz - n, " At least %lld.", s->min)
                                  : snprintf(buf + n, sz - n, " Range %lld to %lld.", s->min,
                                             s->max));
        if (n < sz && with_default && s->def != NULL)
                n += (size_t)snprintf(buf + n, sz - n, " Default: %s.", s->def);
        if (n < sz && s->need != 0)
                n += (size_t)snprintf(buf + n, sz - n, " Required.");
        if (n < sz && with_default && (s->flags & F_PER_OUTBOX))
                snprintf(buf + n, sz - n, " Per outbox in --outboxes-file.");
}

static const char *commands_text(unsigned cmds)
{
        switch (cmds) {
        case C_ALL:
                return "every command";
        case C_RUN:
                return "run";
        case C_MIGRATE:
                return "migrate";
        case C_REPLAY:
                return "replay";
        case C_DLQ:
                return "dlq";
        case C_REPLAY | C_DLQ:
                return "replay and dlq";
        case C_RUN | C_STATUS:
                return "run and status";
        case C_RUN | C_MIGRATE | C_STATUS:
                return "run, migrate and status";
        default:
                return "status and dlq";
        }
}

static void print_wrapped(FILE *out, const char *text, int indent, int width)
{
        int col = indent;

        fprintf(out, "%*s", indent, "");
        while (*text != '\0') {
                size_t len;

                text += strspn(text, " ");
                len = strcspn(text, " ");
                if (len == 0)
                        break;
                if (col > indent && col + 1 + (int)len > width) {
                        fprintf(out, "\n%*s", indent, "");
                        col = indent;
                } else if (col > indent) {
                        fputc(' ', out);
                        col++;
                }
                fwrite(text, 1, len, out);
                col += (int)len;
                text += len;
        }
        fputc('\n', out);
}

static void synopsis(const struct setting *s, char *buf, size_t sz)
{
        int n = 0;

        if (s->short_flag != 0)
                n = snprintf(buf, sz, "-%c, ", s->short_flag);
        snprintf(buf + n, sz - (size_t)n, "--%s%s%s", s->flag, s->metavar != NULL ? " " : "",
                 s->metavar != NULL ? s->metavar : "");
}

void config_print_help(FILE *out, unsigned commands)
{
        unsigned section = 0;

        print_wrapped(out,
                      "Every option can also be set by the environment variable shown after it; "
                      "the command line wins, and an empty variable counts as unset. Options "
                      "take their value as --name VALUE or --name=VALUE, are written in "
                      "full (not abbreviated), and -- ends them.",
                      0, 78);
        for (size_t i = 0; i < config_n_settings; i++) {
                const struct setting *s = &config_settings[i];
                char syn[64], desc[1024];

                if ((s->cmds & commands) == 0)
                        continue;
                if (s->cmds != section) {
                        section = s->cmds;
                        fprintf(out, "\nOptions for %s:\n", commands_text(section));
                }
                synopsis(s, syn, sizeof(syn));
                if (s->env != NULL)
                        fprintf(out, "  %-34s %s\n", syn, s->env);
                else
                        fprintf(out, "  %s\n", syn);
                describe(s, 1, desc, sizeof(desc));
                print_wrapped(out, desc, 6, 78);
        }
}

/* A table cell: '|' would end the cell early, and outside code '*', '_' and
 * '<' would start emphasis or HTML ("user.*=users or *" is not a pattern). */
static void md_cell(FILE *out, const char *text, int code)
{
        fputs(code ? " `" : " ", out);
        for (; *text != '\0'; text++) {
                if (*text == '|' || (!code && strchr("*_<", *text) != NULL))
                        fputc('\\', out);
                fputc(*text, out);
        }
        fputs(code ? "` |" : " |", out);
}

void config_print_markdown(FILE *out)
{
        fputs("| Flag | Environment | Default | Description | Per outbox |\n"
              "|------|-------------|---------|-------------|------------|\n",
              out);
        for (size_t i = 0; i < config_n_settings; i++) {
                const struct setting *s = &config_settings[i];
                char syn[64], desc[1024];
                size_t n;

                synopsis(s, syn, sizeof(syn));
                describe(s, 0, desc, sizeof(desc));
                n = strlen(desc);
                snprintf(desc + n, sizeof(desc) - n, " Used by %s.", commands_text(s->cmds));
                fputc('|', out);
                md_cell(out, syn, 1);
                md_cell(out, s->env != NULL ? s->env : "", s->env != NULL);
                md_cell(out, s->def != NULL ? s->def : "", s->def != NULL);
                md_cell(out, desc, 0);
                md_cell(out, (s->flags & F_PER_OUTBOX) ? "yes" : "", 0);
                fputc('\n', out);
        }
}
