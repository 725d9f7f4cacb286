#!/usr/bin/env python3
"""A byte-level BPE tokenizer for the benchmarks against llama.cpp: trained by the `tokenizers`
library on a text file, with LLaMA 3's split pattern (GGUF's `llama-bpe`, which both dllm and
llama.cpp know) and three special tokens (<|begin_of_text|>, <|end_of_text|>, <|mdm_mask|>).
Writes OUT/tokenizer.json and OUT/tokenizer_config.json. Bench-only (never at dllm's run time).
Usage: python bench/bench_tokenizer.py TEXT[,TEXT...] OUT VOCAB_SIZE
"""
import json
import os
import sys

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

LLAMA3 = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
          "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|mdm_mask|>"]


def main(text, out, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train(text.split(","), trainer)
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    json.dump({"bos_token": SPECIALS[0], "eos_token": SPECIALS[1], "mask_token": SPECIALS[2]},
              open(os.path.join(out, "tokenizer_config.json"), "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
