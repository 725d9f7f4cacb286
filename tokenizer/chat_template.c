#include "tokenizer/chat_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

// The expression each family renders a message with, as it reads with all whitespace removed
// (the released templates differ in spacing and in message['role'] vs message.role).
static const char *const LLAMA3_MESSAGE[] = {
    "'<|start_header_id|>'+message['role']+'<|end_header_id|>\\n\\n'+message['content']|trim+"
    "'<|eot_id|>'",
    NULL};
static const char *const CHATML_MESSAGE[] = {
    "'<|im_start|>'+message['role']+'\\n'+message['content']+'<|im_end|>'+'\\n'",
    "'<|im_start|>'+message.role+'\\n'+message.content+'<|im_end|>'+'\\n'",
    NULL};
// Features of newer templates that change the layout and that dllm does not render.
static const char *const REFUSED[] = {"Cutting Knowledge", "date_string", "enable_thinking",
                                      "reasoning_content", "<think>", NULL};

static char *squeeze(const char *s) {
    char *out = malloc(strlen(s) + 1), *o = out;
    if (!out) return NULL;
    for (; *s; s++)
        if (!strchr(" \t\r\n", *s)) *o++ = *s;
    *o = '\0';
    return out;
}

static int contains_any(const char *s, const char *const *list) {
    for (int i = 0; list[i]; i++)
        if (strstr(s, list[i])) return 1;
    return 0;
}

// ChatML's default system message: the literal after '<|im_start|>system\n' in a Jinja string,
// up to <|im_end|>, with the string's escapes undone. 0 when the template writes none.
static int default_system(const char *jinja, char *out, size_t cap) {
    static const char head[] = "<|im_start|>system\\n";
    for (const char *p = strstr(jinja, head); p; p = strstr(p + 1, head)) {
        const char *text = p + sizeof head - 1, *end = strstr(text, "<|im_end|>");
        if (!end || text == end) continue;
        size_t n = 0;
        const char *q = text;
        for (; q < end && n + 1 < cap; q++) {
            if (*q == '\'' || *q == '"') break;  // the string ends: a message's content follows
            if (*q == '\\' && q + 1 < end) {
                q++;
                out[n++] = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q;
            } else {
                out[n++] = *q;
            }
        }
        if (q != end) continue;
        out[n] = '\0';
        return 1;
    }
    return 0;
}

void chat_template_recognize(ChatTemplate *c, const char *jinja, const char *bos_token) {
    memset(c, 0, sizeof *c);
    if (!jinja) {
        snprintf(c->why, sizeof c->why, "the tokenizer has no chat_template");
        return;
    }
    char *flat = squeeze(jinja);
    if (!flat) {
        snprintf(c->why, sizeof c->why, "out of memory");
        return;
    }
    if (contains_any(jinja, REFUSED)) {
        snprintf(c->why, sizeof c->why, "the chat template uses features dllm does not render "
                                        "(dates, thinking)");
    } else if (contains_any(flat, LLAMA3_MESSAGE)) {
        c->kind = CHAT_LLAMA3;
        if (strstr(flat, "bos_token") && bos_token)
            snprintf(c->bos, sizeof c->bos, "%s", bos_token);
    } else if (contains_any(flat, CHATML_MESSAGE)) {
        c->kind = CHAT_CHATML;
        c->has_system = default_system(jinja, c->system, sizeof c->system);
    } else {
        snprintf(c->why, sizeof c->why, "unknown chat template (dllm knows the LLaMA-3 and "
                                        "ChatML families)");
    }
    free(flat);
}

// Python's str.isspace for one code point: what Jinja's trim strips.
static int is_python_space(utf8proc_int32_t cp) {
    if (cp >= 0x1c && cp <= 0x1f) return 1;
    const utf8proc_property_t *p = utf8proc_get_property(cp);
    return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
           p->bidi_class == UTF8PROC_BIDI_CLASS_B || p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

// The bounds of text with leading and trailing whitespace removed.
static void trim(const char *s, size_t len, size_t *start, size_t *out_len) {
    size_t a = 0, b = len;
    while (a < len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + a,
                                              (utf8proc_ssize_t)(len - a), &cp);
        if (k <= 0 || !is_python_space(cp)) break;
        a += (size_t)k;
    }
    while (b > a) {
        size_t c = b - 1;
        while (c > a && ((unsigned char)s[c] & 0xC0) == 0x80) c--;
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + c,
                                              (utf8proc_ssize_t)(b - c), &cp);
        if (k <= 0 || (size_t)k != b - c || !is_python_space(cp)) break;
        b = c;
    }
    *start = a;
    *out_len = b - a;
}

void chat_template_turn_text(const ChatTemplate *c, const char *text, size_t len,
                             size_t *start, size_t *out_len) {
    if (c->kind == CHAT_LLAMA3) {
        trim(text, len, start, out_len);
    } else {
        *start = 0;
        *out_len = len;
    }
}

const char *chat_template_end_of_turn(const ChatTemplate *c) {
    return c->kind == CHAT_LLAMA3 ? "<|eot_id|>" : c->kind == CHAT_CHATML ? "<|im_end|>" : "";
}

// A growing output string.
typedef struct {
    char *s;
    size_t n, cap;
    int failed;
} Text;

static void put(Text *t, const char *s, size_t len) {
    if (t->failed) return;
    if (t->n + len + 1 > t->cap) {
        size_t cap = 2 * (t->n + len + 1);
        char *grown = realloc(t->s, cap);
        if (!grown) {
            t->failed = 1;
            return;
        }
        t->s = grown;
        t->cap = cap;
    }
    memcpy(t->s + t->n, s, len);
    t->n += len;
    t->s[t->n] = '\0';
}

static void puts_(Text *t, const char *s) { put(t, s, strlen(s)); }

static void render_message(const ChatTemplate *c, const ChatMessage *m, Text *t) {
    size_t start, len;
    chat_template_turn_text(c, m->content, strlen(m->content), &start, &len);
    if (c->kind == CHAT_LLAMA3) {
        puts_(t, "<|start_header_id|>");
        puts_(t, m->role);
        puts_(t, "<|end_header_id|>\n\n");
    } else {
        puts_(t, "<|im_start|>");
        puts_(t, m->role);
        puts_(t, "\n");
    }
    put(t, m->content + start, len);
    puts_(t, chat_template_end_of_turn(c));
    if (c->kind == CHAT_CHATML) puts_(t, "\n");
}

int chat_template_render(const ChatTemplate *c, const ChatMessage *m, int n,
                         int add_generation_prompt, char **text, Error *err) {
    if (c->kind != CHAT_LLAMA3 && c->kind != CHAT_CHATML)
        return error_set(err, "%s: use --chat 0 and lay the prompt out yourself",
                         c->kind == CHAT_NONE ? c->why : "dllm's own layout has no template");
    for (int i = 0; i < n; i++)
        if (strcmp(m[i].role, "system") && strcmp(m[i].role, "user") &&
            strcmp(m[i].role, "assistant"))
            return error_set(err, "chat message %d: role '%s' (dllm knows system, user and "
                                  "assistant)", i, m[i].role);
    Text t = {0};
    puts_(&t, "");
    if (c->kind == CHAT_LLAMA3 && n > 0) puts_(&t, c->bos);
    if (c->kind == CHAT_CHATML && c->has_system && (n == 0 || strcmp(m[0].role, "system"))) {
        puts_(&t, "<|im_start|>system\n");
        puts_(&t, c->system);
        puts_(&t, "<|im_end|>\n");
    }
    for (int i = 0; i < n; i++) render_message(c, &m[i], &t);
    if (add_generation_prompt)
        puts_(&t, c->kind == CHAT_LLAMA3 ? "<|start_header_id|>assistant<|end_header_id|>\n\n"
                                         : "<|im_start|>assistant\n");
    if (t.failed) {
        free(t.s);
        return error_set(err, "out of memory rendering a chat");
    }
    *text = t.s;
    return 0;
}
