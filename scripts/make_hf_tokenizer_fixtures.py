#!/usr/bin/env python3
"""Generates tests/fixtures/hf/: small byte-level BPE tokenizer.json files in the layouts of the
LLaMA-3 (LLaDA), Qwen2 (Dream) and GPT-2 families, trained on tests/fixtures/genesis.txt with the
Hugging Face `tokenizers` library, and the reference library's answers for dllm's tests:

  <name>/tokenizer.json, <name>/tokenizer_config.json   the tokenizer, as a model directory has it
  <name>/cases.jsonl   {"text", "ids" (special-token strings read as text), "ids_special"
                        (special-token strings matched, the library's default), "decoded"}
  chat.jsonl           {"tokenizer", "template", "messages", "add_generation_prompt", "text",
                        "ids"}: transformers' apply_chat_template

Run once and commit the output (dllm never runs Python):
    pip install tokenizers transformers jinja2
    python3 scripts/make_hf_tokenizer_fixtures.py [OUT_DIR]
"""
import json
import os
import random
import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import AddedToken
from transformers import PreTrainedTokenizerFast

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
GENESIS = os.path.join(ROOT, "tests", "fixtures", "genesis.txt")

# The split regexes of the released tokenizer.json files (LLaMA-3 / LLaDA, and Qwen2 / Dream).
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Chat templates as the released tokenizer_config.json files spell them.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] "
    "| trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
QWEN25_TEMPLATE = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == "
    "'system' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are "
    "Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n    "
    "{{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query."
    "\" }}\n    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n"
    "    {%- endfor %}\n{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n        "
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}"
    "\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a "
    "helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in "
    "messages %}\n    {%- if (message.role == \"user\") or (message.role == \"system\" and not "
    "loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}\n        {{- "
    "'<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    "
    "{%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>"
    "assistant\\n' }}\n{%- endif %}\n")
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}")

TEXTS = [
    "Hello, world! This is dllm's tokenizer test.",
    "In the beginning God created the heaven and the earth.",
    "Numbers: 7 42 1234 98765 3.14159 1,000,000 and 2026-12-01.",
    "Punctuation!!! ... ??? --- (brackets) [square] {curly} <angle> \"quotes\" 'single' `tick`",
    "whitespace    runs\t\ttabs   and trailing   ",
    "line one\nline two\n\n\nafter blank lines\r\nwindows line\r\n",
    "  leading spaces and\n   indented\n\tcode();\n",
    "Accents: café, naïve, façade, Ångström, Straße, señor, Dvořák, Łódź.",
    "CJK: 漢字と日本語のテキスト。中文也可以。한국어 문장입니다.",
    "Emoji: 😀 👍🏽 🚀🚀 🇫🇷 👨‍👩‍👧",
    "Combining marks (NFC composes them): e\u0301 A\u030a n\u0303 \u1100\u1161",
    "Contractions: I'm you're they've she'll we'd it's DON'T I'M",
    "specials as text: <|eot_id|> <|im_start|>user <|endoftext|> <|begin_of_text|>x<|mask|>",
    "added token inside<tool>call</tool> text",
    "mixed: abc123def 12345678 ___ ___init___ x=y+z*2",
    "A xylophone, xylophones and xylophone.",
    "",
    " ",
    "\n",
    "a",
]


def random_texts(seed, count):
    """Strings drawn from pools that stress the split regex: letters, digit runs, punctuation,
    whitespace of every kind, accented Latin, CJK, emoji and special-token strings."""
    rng = random.Random(seed)
    pools = ["abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789",
             "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "   \t\n\r\u00a0\u3000",
             "éèêàâüößçñÅøÆœ", "漢字日本語中文한국어", "😀👍🚀🇫🇷✨", "'s'T're'LL"]
    specials = ["<|eot_id|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool>"]
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 12)):
            if rng.random() < 0.05:
                parts.append(rng.choice(specials))
            else:
                pool = rng.choice(pools)
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 8))))
        out.append("".join(parts))
    return out


def genesis_paragraphs():
    with open(GENESIS, encoding="utf-8") as f:
        return [p for p in f.read().split("\n\n") if p.strip()]


def training_files():
    """Genesis, plus text with digit runs, accents, CJK and emoji, so that merges exist across
    the places where the families' split regexes differ."""
    rng = random.Random(7)
    extra = os.path.join(os.environ.get("TMPDIR", "/tmp"), "dllm_hf_fixture_extra.txt")
    with open(extra, "w", encoding="utf-8") as f:
        for _ in range(3000):
            f.write(f"{rng.randint(0, 10**rng.randint(1, 9))} ")
        # (not the sentence that tests the unmerged words: they must stay out of the merges)
        f.write("\n".join([t for t in TEXTS if "xylophone" not in t] * 20) + "\n")
        f.write("\n".join(random_texts(99, 400)))
    return [GENESIS, extra]


def train(pre_tokenizer, specials, added, normalizer, vocab_size, ignore_merges):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])
    tok.train(training_files(), trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.add_tokens([AddedToken(s, special=False, normalized=False) for s in added])
    return tok


def split_then_bytes(regex):
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])


FAMILIES = {
    # LLaMA-3 / LLaDA layout: no normalizer, its split regex, ignore_merges.
    "llama3": dict(
        tokenizer=lambda: train(split_then_bytes(LLAMA3_REGEX),
                                ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                 "<|end_header_id|>", "<|eot_id|>", "<|mdm_mask|>"],
                                ["<tool>"], None, 1000, True),
        config=dict(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                    pad_token="<|end_of_text|>", chat_template=LLAMA3_TEMPLATE),
        templates={"llama3": LLAMA3_TEMPLATE}),
    # Qwen2 / Dream layout: NFC, its split regex (single digits).
    "qwen2": dict(
        tokenizer=lambda: train(split_then_bytes(QWEN2_REGEX),
                                ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"],
                                ["<tool>"], normalizers.NFC(), 1000, False),
        config=dict(bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                    mask_token="<|mask|>", chat_template=QWEN2_TEMPLATE),
        templates={"qwen2": QWEN2_TEMPLATE, "qwen2.5": QWEN25_TEMPLATE,
                   "chatml": CHATML_TEMPLATE}),
    # A Split followed by a ByteLevel that applies its own regex too (two regex steps, one
    # inside the other's pieces: found by fuzzing, where the second step's matches overwrote
    # the first's).
    "split_bytelevel": dict(
        tokenizer=lambda: train(pre_tokenizers.Sequence([
                                    pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated",
                                                         invert=False),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                             use_regex=True)]),
                                ["<|endoftext|>"], [], None, 600, False),
        config=dict(eos_token="<|endoftext|>"),
        templates={}),
    # GPT-2 layout: the ByteLevel pre-tokenizer's own regex, with a prefix space; legacy
    # "a b" merge strings.
    "gpt2": dict(
        tokenizer=lambda: train(pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
                                ["<|endoftext|>"], [], None, 600, False),
        config=dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>"),
        templates={}),
}

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "You answer in one word."},
     {"role": "user", "content": "  Name a colour.\n"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me about Genesis 1:1 <|eot_id|> please."}],
]


def unmerged_words(path, words):
    """Adds vocabulary entries that no merge sequence builds: with ignore_merges (LLaMA-3) a
    piece equal to one is taken whole, without it the piece is merged from bytes. They take the
    ids after the trained vocabulary; the added tokens move up, as in a released file."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    vocab = data["model"]["vocab"]
    first = max(vocab.values()) + 1
    for i, w in enumerate(words):
        assert w not in vocab, w
        vocab[w] = first + i
    for t in data["added_tokens"]:
        t["id"] += len(words)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)


def legacy_merges(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures", "hf")
    texts = TEXTS + genesis_paragraphs()[:40] + random_texts(20261201, 300)
    chat_rows = []
    for name, fam in FAMILIES.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        tok = fam["tokenizer"]()
        path = os.path.join(d, "tokenizer.json")
        tok.save(path)
        if name == "gpt2":
            legacy_merges(path)
        if name == "llama3":
            unmerged_words(path, ["\u0120xylophone", "xylophone"])
        tok = Tokenizer.from_file(path)
        config = dict(fam["config"], tokenizer_class="PreTrainedTokenizerFast")
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=1)
        rows = []
        for t in texts:
            tok.encode_special_tokens = False
            ids_special = tok.encode(t, add_special_tokens=False).ids
            tok.encode_special_tokens = True
            ids = tok.encode(t, add_special_tokens=False).ids
            rows.append({"text": t, "ids": ids, "ids_special": ids_special,
                         "decoded": tok.decode(ids, skip_special_tokens=False)})
        write_jsonl(os.path.join(d, "cases.jsonl"), rows)
        hf = PreTrainedTokenizerFast.from_pretrained(d)
        for tname, template in fam["templates"].items():
            for conv in CONVERSATIONS:
                for gen in (True, False):
                    text = hf.apply_chat_template(conv, chat_template=template, tokenize=False,
                                                  add_generation_prompt=gen)
                    ids = hf.apply_chat_template(conv, chat_template=template, tokenize=True,
                                                 add_generation_prompt=gen)
                    if hasattr(ids, "keys"):
                        ids = ids["input_ids"]
                    chat_rows.append({"tokenizer": name, "template_name": tname,
                                      "template": template, "messages": conv,
                                      "add_generation_prompt": gen, "text": text, "ids": ids})
        print(f"{name}: {tok.get_vocab_size(with_added_tokens=True)} tokens, {len(rows)} cases")
    write_jsonl(os.path.join(out, "chat.jsonl"), chat_rows)
    print(f"chat: {len(chat_rows)} layouts")


if __name__ == "__main__":
    main()
