/*
 * Templates for `yodel serve --banner` and `--prefix`: a pure scanner over the text (no
 * allocation, nothing read past the NUL), and an expansion into a bounded buffer.
 *
 * Grammar (yodel.h says it in words):
 *   template = *( literal / "{{" / "}}" / escape / field )
 *   escape   = "\" ( "n" / "r" / "t" / "\" )
 *   field    = "{" name "}"
 *   name     = "hostname" / "peer" / "local" / "listener" / "pid" / "proxy" / "tls_subject"
 *            / "env:" ( ALPHA / "_" ) *( ALPHA / DIGIT / "_" )
 *   literal  = any byte but "{", "}", "\" and NUL
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "yodel.h"

/* How much of a bad field an error message quotes. */
#define ERR_NAME_BYTES 40

enum token_kind { TOK_END, TOK_TEXT, TOK_FIELD };

/* One piece of a template: a run of text to copy (a literal run, or the one byte of an escape or
 * of "{{"), or a field with its source text (raw, raw_len: "{peer}") for keeping it. */
struct token {
    enum token_kind kind;
    const char *text;
    size_t len;
    unsigned field;       /* YD_TEMPLATE_* */
    const char *env_name; /* {env:NAME}: NAME, env_len bytes */
    size_t env_len;
    const char *raw;
    size_t raw_len;
};

static const struct {
    const char *name;
    unsigned field;
} fields[] = {
    {"hostname", YD_TEMPLATE_HOSTNAME},
    {"peer", YD_TEMPLATE_PEER},
    {"local", YD_TEMPLATE_LOCAL},
    {"listener", YD_TEMPLATE_LISTENER},
    {"pid", YD_TEMPLATE_PID},
    {"proxy", YD_TEMPLATE_PROXY},
    {"tls_subject", YD_TEMPLATE_TLS_SUBJECT},
};

static int fail(char *err, size_t errlen, const char *fmt, const char *name, size_t n)
{
    if (errlen > 0) {
        int shown = n > ERR_NAME_BYTES ? ERR_NAME_BYTES : (int)n;
        snprintf(err, errlen, fmt, shown, name, n > ERR_NAME_BYTES ? "..." : "");
    }
    return -EINVAL;
}

static int is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* {env:NAME}: checks NAME (n bytes at name). */
static int env_field(const char *name, size_t n, struct token *t, char *err, size_t errlen)
{
    const char *var = name + 4;
    size_t vn = n - 4;
    int ok = vn > 0 && is_name_start(var[0]);
    for (size_t i = 1; ok && i < vn; i++)
        ok = is_name_char(var[i]);
    if (!ok)
        return fail(err, errlen, "bad variable name in {%.*s%s}", name, n);
    if (vn > YD_TEMPLATE_ENV_NAME_MAX)
        return fail(err, errlen, "variable name too long in {%.*s%s}", name, n);
    t->field = YD_TEMPLATE_ENV;
    t->env_name = var;
    t->env_len = vn;
    return 0;
}

/* The field whose name is the n bytes at name. */
static int field_named(const char *name, size_t n, struct token *t, char *err, size_t errlen)
{
    if (n == 0)
        return fail(err, errlen, "empty field {%.*s%s}", name, n);
    if (n >= 4 && memcmp(name, "env:", 4) == 0)
        return env_field(name, n, t, err, errlen);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (strlen(fields[i].name) == n && memcmp(fields[i].name, name, n) == 0) {
            t->field = fields[i].field;
            return 0;
        }
    }
    return fail(err, errlen, "unknown field {%.*s%s}", name, n);
}

/* p at "{" (not "{{"): the field up to its "}". */
static int scan_field(const char *p, struct token *t, char *err, size_t errlen)
{
    const char *name = p + 1;
    size_t n = strcspn(name, "}");
    if (name[n] == '\0')
        return fail(err, errlen, "unterminated {%.*s%s (no closing })", name, n);
    t->kind = TOK_FIELD;
    t->raw = p;
    t->raw_len = n + 2;
    return field_named(name, n, t, err, errlen);
}

/* p at "\": one escaped byte. */
static int scan_escape(const char *p, struct token *t, char *err, size_t errlen)
{
    static const char from[] = "nrt\\", to[] = "\n\r\t\\";
    const char *at = p[1] != '\0' ? strchr(from, p[1]) : NULL;
    if (p[1] == '\0')
        return fail(err, errlen, "\\ at the end%.*s%s (write \\\\ for a backslash)", "", 0);
    if (at == NULL)
        return fail(err, errlen, "unknown escape \\%.*s%s (use \\n, \\r, \\t or \\\\)", p + 1, 1);
    t->kind = TOK_TEXT;
    t->text = to + (at - from);
    t->len = 1;
    t->raw_len = 2;
    return 0;
}

/* Reads the token at p: returns 1 (it took t->raw_len bytes), 0 at the end, or -EINVAL with
 * the reason in err. */
static int scan(const char *p, struct token *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    if (*p == '\0')
        return 0;
    t->raw = p;
    if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
        t->kind = TOK_TEXT;
        t->text = p;
        t->len = 1;
        t->raw_len = 2;
    } else if (p[0] == '}') {
        return fail(err, errlen, "lone }%.*s%s (write }} for a brace)", "", 0);
    } else if (p[0] == '{') {
        if (scan_field(p, t, err, errlen) < 0)
            return -EINVAL;
    } else if (p[0] == '\\') {
        if (scan_escape(p, t, err, errlen) < 0)
            return -EINVAL;
    } else {
        t->kind = TOK_TEXT;
        t->text = p;
        t->len = strcspn(p, "{}\\");
        t->raw_len = t->len;
    }
    return 1;
}

int yd_template_check(const char *tmpl, char *err, size_t errlen)
{
    if (errlen > 0)
        err[0] = '\0';
    if (tmpl == NULL)
        return fail(err, errlen, "no template%.*s%s", "", 0);
    unsigned used = 0;
    struct token t;
    int n;
    while ((n = scan(tmpl, &t, err, errlen)) > 0) {
        used |= t.field;
        tmpl += t.raw_len;
    }
    return n < 0 ? n : (int)used;
}

/* ---- Expansion ----------------------------------------------------------------------------- */

/* A bounded output: once a piece does not fit, nothing more is written. */
struct out {
    char *buf;
    size_t cap; /* bytes for text: len - 1, the last one is the NUL's */
    size_t pos;
    int full;
};

/* Writes n bytes whole, or marks the output full if they do not fit. */
static void put_unit(struct out *o, const char *s, size_t n)
{
    if (o->full || n > o->cap - o->pos) {
        o->full = 1;
        return;
    }
    memcpy(o->buf + o->pos, s, n);
    o->pos += n;
}

/* Writes text: as much as fits, or in keep mode byte by byte with braces and backslashes
 * doubled, each doubled pair whole. */
static void put_text(struct out *o, const char *s, size_t n, int as_template)
{
    if (!as_template) {
        size_t room = o->full ? 0 : o->cap - o->pos;
        put_unit(o, s, n < room ? n : room);
        if (n > room)
            o->full = 1;
        return;
    }
    for (size_t i = 0; i < n && !o->full; i++) {
        char c = s[i];
        if (c == '{' || c == '}')
            put_unit(o, c == '{' ? "{{" : "}}", 2);
        else if (c == '\\')
            put_unit(o, "\\\\", 2);
        else
            put_unit(o, &c, 1);
    }
}

static const char *field_value(const yd_template_values *v, const struct token *t, char *tmp,
                               size_t tmplen)
{
    switch (t->field) {
    case YD_TEMPLATE_HOSTNAME:
        return v->hostname;
    case YD_TEMPLATE_PEER:
        return v->peer;
    case YD_TEMPLATE_LOCAL:
        return v->local;
    case YD_TEMPLATE_LISTENER:
        return v->listener;
    case YD_TEMPLATE_PROXY:
        return v->proxy;
    case YD_TEMPLATE_TLS_SUBJECT:
        return v->tls_subject;
    case YD_TEMPLATE_PID:
        snprintf(tmp, tmplen, "%ld", v->pid);
        return tmp;
    default: /* YD_TEMPLATE_ENV: the name is checked, at most YD_TEMPLATE_ENV_NAME_MAX bytes */
        if (v->env == NULL)
            return NULL;
        memcpy(tmp, t->env_name, t->env_len);
        tmp[t->env_len] = '\0';
        return v->env(tmp, v->env_data);
    }
}

static void put_field(struct out *o, const yd_template_values *v, const struct token *t)
{
    if (v->keep & t->field) {
        put_unit(o, t->raw, t->raw_len);
        return;
    }
    char tmp[YD_TEMPLATE_ENV_NAME_MAX + 1];
    const char *value = field_value(v, t, tmp, sizeof tmp);
    if (value != NULL)
        put_text(o, value, strlen(value), v->keep != 0);
}

int yd_template_expand(const char *tmpl, const yd_template_values *values, char *buf, size_t len)
{
    if (tmpl == NULL || values == NULL || buf == NULL || len == 0)
        return -EINVAL;
    struct out o = {.buf = buf, .cap = (len > INT_MAX ? (size_t)INT_MAX : len) - 1};
    struct token t;
    int n;
    while ((n = scan(tmpl, &t, NULL, 0)) > 0) {
        if (t.kind == TOK_FIELD)
            put_field(&o, values, &t);
        else
            put_text(&o, t.text, t.len, values->keep != 0);
        tmpl += t.raw_len;
    }
    buf[o.pos] = '\0';
    if (n < 0)
        return n;
    return o.full ? -ENOBUFS : (int)o.pos;
}
