"""Builds the tiny GPT-2 that a local replica serves, entirely offline.

Runs inside .venv-vllm (torch, transformers, tokenizers). A byte-level BPE tokenizer is
trained on a small built-in finance corpus, a 2-layer GPT-2 of width 64 is initialised
from a fixed seed and briefly trained on the same corpus so its output reads vaguely like
the domain, and both are saved with a chat template so that vLLM serves
/v1/completions and /v1/chat/completions from the directory. The same arguments give the
same files: the seed, the corpus and single-threaded training fix every weight.

    .venv-vllm/bin/python local/make_tiny_model.py [--out .serve/model] [--name finsight-tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

# Nothing here may reach a hub: the model is made, never fetched.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

END_OF_TEXT = "<|endoftext|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
# Minimal chat markup: role tag, content, end-of-text. vLLM renders it with Jinja.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|endoftext|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

CORPUS = (
    "The S&P 500 closed 0.8% higher as technology shares rallied after earnings.",
    "Treasury yields fell after the Federal Reserve held rates steady at its meeting.",
    "The 10-year yield slipped to 4.12% while the dollar weakened against the euro.",
    "Revenue grew 12% year over year to $4.2 billion, ahead of analyst estimates.",
    "Operating margin expanded 150 basis points on lower input costs.",
    "Earnings per share came in at $1.35 versus a consensus of $1.28.",
    "The company raised full-year guidance and announced a $2 billion buyback.",
    "Free cash flow was $860 million, up from $710 million a year earlier.",
    "Net debt to EBITDA fell to 1.9x after the company repaid its term loan.",
    "Crude oil futures rose 2% on supply concerns; Brent settled at $83 a barrel.",
    "Gold traded near a record as investors sought safety ahead of the jobs report.",
    "The VIX volatility index jumped to 21 as equities sold off into the close.",
    "Nonfarm payrolls rose by 210,000 and the unemployment rate held at 3.9%.",
    "Core CPI rose 0.3% month over month, in line with expectations.",
    "The yield curve between two-year and ten-year notes remained inverted.",
    "Bank stocks led gains after stress test results cleared capital return plans.",
    "The index rebalance on Friday is expected to move $30 billion of shares.",
    "Markets close early at 1 p.m. Eastern on the day after Thanksgiving.",
    "Credit spreads on high-yield bonds widened 25 basis points this week.",
    "The central bank signalled two rate cuts next year, citing slowing inflation.",
    "Portfolio turnover was 35%, and the fund's expense ratio is 0.45%.",
    "Analysts cut their price target to $145 and kept a neutral rating.",
    "Quarterly dividend of $0.62 per share is payable to holders of record.",
    "The merger values the target at 11 times forward earnings, a 28% premium.",
    "Liquidity remained thin in pre-market trading ahead of the open at 9:30.",
    "Volume on the NYSE was 4.1 billion shares, below the 20-day average.",
    "Semiconductor stocks fell 3% after export restrictions were tightened.",
    "The euro area PMI rose to 51.2, signalling a return to expansion.",
    "Mortgage rates eased to 6.6%, lifting homebuilder shares.",
    "Return on equity improved to 14% as net interest margin widened.",
    "Q: What drove the move in bonds today? A: A softer inflation print.",
    "Q: How did the stock react to earnings? A: Shares rose 6% after hours.",
    "Q: What is the company's leverage? A: Net debt is 1.9 times EBITDA.",
    "Q: When does the market open? A: At 9:30 a.m. Eastern, Monday to Friday.",
)


def corpus_lines() -> list[str]:
    return list(CORPUS)


def training_texts() -> list[str]:
    """Plain lines, and the Q/A lines once more in the chat markup so chat answers too."""
    texts = [f"{line}{END_OF_TEXT}" for line in CORPUS]
    for line in CORPUS:
        if line.startswith("Q: "):
            question, answer = line[3:].split(" A: ", 1)
            texts.append(f"<|user|>{question}{END_OF_TEXT}<|assistant|>{answer}{END_OF_TEXT}")
    return texts


def train_tokenizer(vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT, *ROLE_TOKENS],
        # Every byte gets a token, so no input is ever unknown to the model.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus_lines(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        additional_special_tokens=list(ROLE_TOKENS),
        chat_template=CHAT_TEMPLATE,
        model_max_length=256,
    )


def build(out: Path, name: str, seed: int, train_steps: int) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    random.seed(seed)
    torch.manual_seed(seed)
    # One thread and deterministic kernels: the same seed then gives bit-identical weights.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    tokenizer = train_tokenizer(vocab_size=1024)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=256,
        n_embd=64,
        n_layer=2,
        # head_dim 32: the smallest that vLLM's CPU attention kernels support.
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = GPT2LMHeadModel(config)

    if train_steps > 0:
        # A few hundred steps on the corpus: enough for domain-looking words, seconds on a CPU.
        encoded = tokenizer(training_texts(), padding=True, return_tensors="pt")
        labels = encoded["input_ids"].clone()
        labels[encoded["attention_mask"] == 0] = -100
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(train_steps):
            loss = model(**encoded, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        model.eval()
        sys.stdout.write(f"make_tiny_model: final training loss {loss.item():.3f}\n")

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "finsight_model.json").write_text(
        json.dumps({"served_model_name": name, "seed": seed, "train_steps": train_steps}) + "\n"
    )
    parameters = sum(p.numel() for p in model.parameters())
    sys.stdout.write(f"make_tiny_model: {name} ({parameters:,} parameters) written to {out}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path(".serve/model"))
    parser.add_argument("--name", default="finsight-tiny", help="name recorded for serving")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--train-steps", type=int, default=200)
    args = parser.parse_args(argv)
    build(args.out, args.name, args.seed, args.train_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
