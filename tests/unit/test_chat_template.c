/*
 * test_chat_template.c -- worker/template/: every golden of
 * tests/golden/chat/ (renders by transformers' apply_chat_template of the
 * Qwen2.5, Qwen3, Qwen3 first-release and DeepSeek-R1-Distill templates, and
 * small feature templates rendered by transformers' jinja environment) must
 * come out byte-identical, raise_exception errors with their exact message;
 * then malformed templates and hostile inputs must fail cleanly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "chat_template.h"
#include "tap.h"
#include "util.h"

static const char *srcdir(void)
{
    const char *s = getenv("LLMUX_SRCDIR");
    return s && *s ? s : "..";
}

/* Render <src> with <vars> (JSON text); returns rc, *out malloc'd or NULL. */
static int render_src(const char *src, const char *vars, char **out, char *err, size_t errlen)
{
    struct chat_template *t = chat_template_compile(src, strlen(src), err, errlen);
    *out = NULL;
    if (!t)
        return -2;
    json_error_t je;
    json_t *v = json_loads(vars, 0, &je);
    size_t n;
    int rc = chat_template_render(t, v, out, &n, err, errlen);
    json_decref(v);
    chat_template_free(t);
    return rc;
}

static void expect_render(const char *src, const char *vars, const char *want, const char *what)
{
    char err[512] = "", *out;
    int rc = render_src(src, vars, &out, err, sizeof(err));
    ok(rc == 0 && out && strcmp(out, want) == 0, "%s", what);
    if (rc != 0 || !out || strcmp(out, want) != 0)
        diag("rc=%d err=%s got=[%s] want=[%s]", rc, err, out ? out : "", want);
    free(out);
}

static void expect_error(const char *src, const char *vars, const char *needle, const char *what)
{
    char err[512] = "", *out;
    int rc = render_src(src, vars, &out, err, sizeof(err));
    ok(rc != 0 && !out && err[0] && (!needle || strstr(err, needle)), "%s", what);
    if (!(rc != 0 && !out && err[0] && (!needle || strstr(err, needle))))
        diag("rc=%d err=[%s] want substring [%s]", rc, err, needle ? needle : "");
    free(out);
}

static void show_diff(const char *got, const char *want)
{
    size_t i = 0;
    while (got[i] && got[i] == want[i])
        i++;
    size_t from = i > 40 ? i - 40 : 0;
    diag("first difference at byte %zu:", i);
    diag("  got : [%.80s]", got + from);
    diag("  want: [%.80s]", want + from);
}

/* One golden case against template <t>; <t> NULL compiles case["template"]. */
static int check_case(struct chat_template *t, json_t *cs, const char *file)
{
    const char *name = json_string_value(json_object_get(cs, "name"));
    json_t *vars = json_object_get(cs, "vars");
    json_t *want = json_object_get(cs, "expected");
    const char *kind = json_string_value(json_object_get(cs, "error_kind"));
    const char *werr = json_string_value(json_object_get(cs, "error"));
    char err[1024] = "";
    struct chat_template *own = NULL;
    if (!t) {
        json_t *src = json_object_get(cs, "template");
        own = chat_template_compile(json_string_value(src), json_string_length(src), err,
                                    sizeof(err));
        if (!own) {
            int good = kind && strcmp(kind, "syntax") == 0;
            ok(good, "%s %s: compile error expected (%s)", file, name, err);
            if (!good)
                diag("unexpected compile error: %s", err);
            return good;
        }
        t = own;
    }
    char *out = NULL;
    size_t n = 0;
    int rc = chat_template_render(t, vars, &out, &n, err, sizeof(err));
    int good;
    if (want) {
        good = rc == 0 && n == json_string_length(want) &&
               memcmp(out, json_string_value(want), n) == 0;
        ok(good, "%s %s: byte-identical render", file, name);
        if (!good) {
            if (rc == 0)
                show_diff(out, json_string_value(want));
            else
                diag("error: %s", err);
        }
    } else if (kind && strcmp(kind, "raise") == 0) {
        good = rc == -1 && strcmp(err, werr) == 0;
        ok(good, "%s %s: raise_exception message", file, name);
        if (!good)
            diag("rc=%d got [%s] want [%s]", rc, rc ? err : out, werr);
    } else {
        good = rc == -1 && err[0];
        ok(good, "%s %s: error like transformers' (%s)", file, name, werr ? werr : "");
        if (!good)
            diag("rc=%d out=[%.200s]", rc, out ? out : "");
        else
            diag("  ours: %s", err);
    }
    free(out);
    out = NULL;
    /* the same variables built from the request as the worker will */
    json_t *in = json_object_get(cs, "input");
    if (in && !own) {
        json_t *v2 = chat_template_vars(
            t, json_object_get(in, "messages"), json_object_get(in, "tools"),
            json_is_true(json_object_get(in, "add_generation_prompt")),
            json_object_get(in, "chat_template_kwargs"), err, sizeof(err));
        int same = v2 && json_equal(v2, vars);
        ok(same, "%s %s: chat_template_vars equals transformers' variables", file, name);
        if (!same) {
            char *a = v2 ? json_dumps(v2, JSON_COMPACT) : NULL, *b = json_dumps(vars, JSON_COMPACT);
            diag("ours:  %.600s", a ? a : err);
            diag("their: %.600s", b);
            free(a);
            free(b);
        }
        good &= same;
        json_decref(v2);
    }
    chat_template_free(own);
    return good;
}

static void run_golden_file(const char *name, int is_features)
{
    char *path = xasprintf("%s/tests/golden/chat/%s.json", srcdir(), name);
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    ok(doc != NULL, "load %s", path);
    if (!doc) {
        diag("%s", je.text);
        free(path);
        return;
    }
    struct chat_template *t = NULL;
    if (!is_features) {
        char err[512];
        char *dir = xasprintf("%s/%s", srcdir(),
                              json_string_value(json_object_get(doc, "template_dir")));
        t = chat_template_load_dir(dir, err, sizeof(err));
        ok(t != NULL, "load template of %s", dir);
        if (!t)
            diag("%s", err);
        free(dir);
    }
    if (is_features || t) {
        json_t *cases = json_object_get(doc, "cases");
        size_t i, good = 0;
        json_t *cs;
        json_array_foreach(cases, i, cs) good += (size_t)check_case(t, cs, name);
        diag("%s: %zu/%zu cases pass", name, good, json_array_size(cases));
        if (t) { /* speed, for the record: every case rendered 200 times */
            int64_t t0 = now_us();
            size_t renders = 0, bytes = 0;
            for (int r = 0; r < 200; r++)
                json_array_foreach(cases, i, cs)
                {
                    char *out = NULL, err[256];
                    size_t n = 0;
                    if (chat_template_render(t, json_object_get(cs, "vars"), &out, &n, err,
                                             sizeof(err)) == 0)
                        bytes += n;
                    free(out);
                    renders++;
                }
            double us = (double)(now_us() - t0) / (double)renders;
            diag("%s: %.1f us per render (%zu renders, %.0f bytes average output)", name, us,
                 renders, (double)bytes / (double)renders);
        }
    }
    chat_template_free(t);
    json_decref(doc);
    free(path);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_load_dir(void)
{
    char dir[] = "/tmp/llmux-tmpl-XXXXXX", err[512], *out = NULL, path[600];
    size_t n;
    ok(mkdtemp(dir) != NULL, "temp dir");
    struct chat_template *t = chat_template_load_dir(dir, err, sizeof(err));
    ok(!t && err[0], "empty folder: error (%s)", err);
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    write_file(path, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"},"
                     " {\"name\": \"default\", \"template\": \"D{{ x }}\"}]}");
    t = chat_template_load_dir(dir, err, sizeof(err));
    json_t *v = json_pack("{s:i}", "x", 5);
    ok(t && chat_template_render(t, v, &out, &n, err, sizeof(err)) == 0 && strcmp(out, "D5") == 0,
       "tokenizer_config list form picks \"default\"");
    free(out);
    out = NULL;
    chat_template_free(t);
    write_file(path, "{\"chat_template\": 42}");
    t = chat_template_load_dir(dir, err, sizeof(err));
    ok(!t && strstr(err, "no chat template"), "chat_template not a string: error (%s)", err);
    write_file(path, "{not json");
    t = chat_template_load_dir(dir, err, sizeof(err));
    ok(!t && err[0], "bad tokenizer_config.json: error (%s)", err);
    char jpath[600];
    snprintf(jpath, sizeof(jpath), "%s/chat_template.jinja", dir);
    write_file(jpath, "J{{ x }}\n");
    t = chat_template_load_dir(dir, err, sizeof(err));
    ok(t && chat_template_render(t, v, &out, &n, err, sizeof(err)) == 0 && strcmp(out, "J5") == 0,
       "chat_template.jinja wins over tokenizer_config.json");
    free(out);
    chat_template_free(t);
    write_file(jpath, "{% if %}");
    t = chat_template_load_dir(dir, err, sizeof(err));
    ok(!t && strstr(err, "chat_template.jinja") && strstr(err, "line 1"),
       "broken chat_template.jinja names the file and line (%s)", err);
    json_decref(v);
    unlink(jpath);
    unlink(path);
    rmdir(dir);
}

static void test_features(void)
{
    expect_render("{{ messages[0]['content'] }}", "{\"messages\": [{\"content\": \"x\"}]}", "x",
                  "subscript chain");
    expect_render("{%- for m in messages -%}\n  {{ m.role }}\n{%- endfor %}",
                  "{\"messages\": [{\"role\": \"a\"}, {\"role\": \"b\"}]}", "ab", "- strips newlines");
    expect_render("{% for k, v in d.items() %}{{ k }}{{ v | tojson }}{% endfor %}",
                  "{\"d\": {\"z\": {\"b\": 1, \"a\": \"é\"}}}", "z{\"b\": 1, \"a\": \"é\"}",
                  "tojson keeps insertion order and UTF-8");
    expect_render("{{ x | tojson(indent=2) }}", "{\"x\": {\"a\": [1]}}",
                  "{\n  \"a\": [\n    1\n  ]\n}", "tojson indent");
    expect_render("{{ 'a b c'.split(' ', 1)[1] }}", "{}", "b c", "split maxsplit");
    expect_render("{{ s[::-1] }}", "{\"s\": \"añb\"}", "bña", "reverse slice by code point");
    expect_render("{% set ns = namespace(a=1) %}{% set ns.a = ns.a + 1 %}{{ ns.a }}", "{}", "2",
                  "namespace attribute set");
    expect_render("{{ x is defined }}{{ y is defined }}", "{\"x\": null}", "TrueFalse",
                  "null is defined, missing is not");
    expect_render("{{ undefined_thing }}", "{}", "", "undefined prints empty");
    expect_render("{{ 'a' if x else 'b' }}", "{\"x\": []}", "b", "empty list is falsy");
    expect_render("{{ 3.0 }} {{ 1e100 }} {{ 0.1 }}", "{}", "3.0 1e+100 0.1", "float repr");
    expect_render("{{ x }}", "{\"x\": 0.30000000000000004}", "0.30000000000000004",
                  "float from JSON keeps its digits");
    expect_render("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}",
                  "{}", "321", "recursive macro within the depth limit");
    expect_render("{% generation %}g{% endgeneration %}", "{}", "g", "generation block renders its body");

    expect_error("{{ raise_exception('boom ' ~ 1) }}", "{}", "boom 1", "raise_exception");
    expect_error("{% if x %}", "{}", "line 1", "unterminated if");
    expect_error("a\nb\n{{ x ", "{}", "line 3", "unterminated variable tag names its line");
    expect_error("{% for x in y %}{% endif %}", "{}", NULL, "mismatched end tag");
    char cerr[256];
    const char *nf = "{% if false %}{{ x | nosuchfilter }}{% endif %}";
    ok(!chat_template_compile(nf, strlen(nf), cerr, sizeof(cerr)) && strstr(cerr, "nosuchfilter"),
       "unknown filter is a compile error even in a branch never taken (%s)", cerr);
    ok(!chat_template_compile("{{ x is nosuchtest }}", 21, cerr, sizeof(cerr)) &&
           strstr(cerr, "nosuchtest"), "unknown test is a compile error (%s)", cerr);
    expect_error("{% nosuchtag %}", "{}", "nosuchtag", "unknown tag");
    expect_error("{{ 'abc }}", "{}", "string", "unterminated string");
    expect_error("{# abc", "{}", "comment", "unterminated comment");
    expect_error("{{ (1 }}", "{}", NULL, "unbalanced parenthesis");
    expect_error("{{ x.y.z }}", "{\"x\": {}}", "has no attribute 'y'", "attribute of undefined");
    expect_error("{{ 'a' + none }}", "{}", "concatenate", "str + None");
    expect_error("{{ x }}", "[1]", "object", "vars must be an object");

    /* hostile templates: bounded, never a crash */
    char *deep = xmalloc(200000);
    size_t k = 0;
    k += (size_t)sprintf(deep + k, "{{ ");
    for (int i = 0; i < 50000; i++)
        deep[k++] = '(';
    deep[k++] = '1';
    for (int i = 0; i < 50000; i++)
        deep[k++] = ')';
    k += (size_t)sprintf(deep + k, " }}");
    deep[k] = 0;
    expect_error(deep, "{}", "nested too deeply", "deep parenthesis nesting is refused");
    k = 0;
    for (int i = 0; i < 5000; i++)
        k += (size_t)sprintf(deep + k, "{%% if true %%}");
    deep[k] = 0;
    expect_error(deep, "{}", NULL, "deep block nesting is refused");
    k = (size_t)sprintf(deep, "{{ ");
    for (int i = 0; i < 20000; i++)
        k += (size_t)sprintf(deep + k, "[");
    deep[k] = 0;
    expect_error(deep, "{}", NULL, "20000 unclosed brackets in a tag are an error");
    free(deep);
    expect_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                 "{}", "limit", "huge nested loops hit the step or memory limit");
    struct tp_buf_s { char *p; size_t n; } big = {xmalloc(20000), 0};
    big.n = (size_t)sprintf(big.p, "{\"l\": [0");
    for (int i = 1; i < 2000; i++)
        big.n += (size_t)sprintf(big.p + big.n, ",%d", i);
    sprintf(big.p + big.n, "]}");
    int64_t t0 = now_us();
    expect_error("{% for i in l %}{% for j in l %}{% endfor %}{% endfor %}", big.p, "step limit",
                 "4 million loop steps hit the step limit");
    diag("step limit reached in %.1f ms", (double)(now_us() - t0) / 1000.0);
    free(big.p);
    expect_error("{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}", "{}", "exceeded",
                 "output bomb hits a limit");
    expect_error("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "{}", "too deep",
                 "infinite macro recursion is refused");
    expect_error("{{ range(1000000) | length }}", "{}", "Range too big", "range is capped");
    expect_error("{% set l = [1] %}{{ l.append(2) }}", "{}", "not allowed", "lists are immutable");
    char *out;
    char err[256];
    struct chat_template *t = chat_template_compile("a\0b", 3, err, sizeof(err));
    ok(!t && err[0], "NUL byte in a template is refused");
    out = NULL;
    (void)out;
}

/* Deterministic mutations of a real template (bytes flipped, spliced,
 * truncated, tag characters inserted): compile and render must return, not
 * crash (the ASan build checks memory). */
static void test_mutations(void)
{
    char *path = xasprintf("%s/examples/models/tokenizers/qwen3/tokenizer_config.json", srcdir());
    json_error_t je;
    json_t *cfg = json_load_file(path, 0, &je);
    free(path);
    const char *src = json_string_value(json_object_get(cfg, "chat_template"));
    if (!src) {
        ok(0, "qwen3 template for mutations");
        json_decref(cfg);
        return;
    }
    size_t n = strlen(src);
    json_t *vars = json_loads("{\"messages\": [{\"role\": \"system\", \"content\": \"s\"},"
                              "{\"role\": \"user\", \"content\": \"u\"},"
                              "{\"role\": \"assistant\", \"content\": \"<think>r</think>a\","
                              " \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": {\"x\": 1}}}]},"
                              "{\"role\": \"tool\", \"content\": \"t\"}],"
                              "\"tools\": [{\"type\": \"function\"}], \"add_generation_prompt\": true}",
                              0, &je);
    static const char pieces[] = "{}%#-+()[]'\".|~:,=!<>\\\n ";
    uint64_t x = 0x9E3779B97F4A7C15ull;
    char *buf = xmalloc(n + 64);
    int compiled = 0, rendered = 0, runs = 3000;
    const char *env = getenv("LLMUX_TMPL_MUTATIONS"); /* longer runs by hand: N[:seed] */
    if (env && atoi(env) > 0) {
        runs = atoi(env);
        const char *colon = strchr(env, ':');
        if (colon)
            x = strtoull(colon + 1, NULL, 0) | 1;
    }
    for (int it = 0; it < runs; it++) {
        memcpy(buf, src, n);
        size_t len = n;
        int edits = 1 + (int)(x % 4);
        for (int e = 0; e < edits; e++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (len < 2)
                break;
            size_t pos = (size_t)(x % len);
            switch ((x >> 32) % 4) {
            case 0:
                buf[pos] = pieces[(x >> 40) % (sizeof(pieces) - 1)];
                break;
            case 1:
                if (len < n + 60) {
                    memmove(buf + pos + 1, buf + pos, len - pos);
                    buf[pos] = pieces[(x >> 40) % (sizeof(pieces) - 1)];
                    len++;
                }
                break;
            case 2:
                memmove(buf + pos, buf + pos + 1, len - pos - 1);
                len--;
                break;
            default:
                len = pos + 1;
            }
        }
        char err[256];
        struct chat_template *t = chat_template_compile(buf, len, err, sizeof(err));
        if (t) {
            char *out = NULL;
            size_t olen;
            compiled++;
            if (chat_template_render(t, vars, &out, &olen, err, sizeof(err)) == 0)
                rendered++;
            free(out);
            chat_template_free(t);
        }
    }
    ok(1, "%d mutated templates: %d compiled, %d rendered, none crashed", runs, compiled, rendered);
    free(buf);
    json_decref(vars);
    json_decref(cfg);
}

int main(void)
{
    static const char *const goldens[] = {"qwen2.5", "qwen3", "qwen3-initial",
                                          "deepseek-r1-distill-qwen"};
    for (size_t i = 0; i < ARRAY_SIZE(goldens); i++)
        run_golden_file(goldens[i], 0);
    run_golden_file("features", 1);
    test_features();
    test_load_dir();
    test_mutations();
    return tap_done();
}
