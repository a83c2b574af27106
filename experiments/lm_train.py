"""Train a small Llama-style decoder on the King James Bible (Debian package ``bible-kjv-text``).

The demonstration language model of issue 14: a real English corpus that a Debian package ships
(the KJV text of 1611, public domain; the package's retrieval code is GPL-2+), a byte-level BPE
tokenizer trained on it, and a 6-layer decoder (12 residual units) trained on one CPU thread
for a fixed wall-clock budget. The result is an ordinary Hugging Face folder (config.json,
model.safetensors in float16, tokenizer.json), so every analysis runs on it exactly as on GPT-2
or Llama weights a user has: ``--model hf:results/lm/model --dataset text:results/lm/kjv_test.txt``.

Usage:
    apt-get install bible-kjv bible-kjv-text
    OMP_NUM_THREADS=1 python experiments/lm_train.py --out results/lm --minutes 25

Split: the last 10 books (Philemon .. Revelation plus Jude etc., see ``HELD_OUT``) are held out
as the test text; everything before them is the training text. The run checkpoints every few
minutes into ``OUT/train_state.pt`` (ignored by git) and resumes from it when started again.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import torch

HELD_OUT = "Phm1:1-Rev22:21"  # Philemon .. Revelation: the last 9 books of the New Testament
TRAIN = "Ge1:1-Tit3:15"  # Genesis .. Titus


def dump(ref: str) -> str:
    """The verses of ``ref`` as plain text, one verse a line, without their references."""
    out = subprocess.run(["bible", "-f", ref], capture_output=True, text=True, check=True).stdout
    lines = []
    for line in out.splitlines():
        parts = line.split(" ", 1)
        if len(parts) == 2 and any(ch.isdigit() for ch in parts[0]) and ":" in parts[0]:
            lines.append(parts[1].strip())
    return "\n".join(lines) + "\n"


def train_tokenizer(text_file: Path, folder: Path, vocab: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train([str(text_file)], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.save_pretrained(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/lm")
    ap.add_argument("--minutes", type=float, default=25.0, help="wall-clock training budget")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--intermediate", type=int, default=512)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    out = Path(args.out)
    folder = out / "model"
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    train_txt, test_txt = work / "kjv_train.txt", out / "kjv_test.txt"
    if not train_txt.exists():
        train_txt.write_text(dump(TRAIN))
        test_txt.write_text(dump(HELD_OUT))
    if not (folder / "tokenizer.json").exists():
        train_tokenizer(train_txt, folder, args.vocab)

    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = torch.tensor(tokenizer(train_txt.read_text())["input_ids"], dtype=torch.long)
    test_ids = torch.tensor(tokenizer(test_txt.read_text())["input_ids"], dtype=torch.long)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=args.context,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.95))
    state_file = work / "train_state.pt"
    step, spent, history = 0, 0.0, []
    if state_file.exists():
        state = torch.load(state_file, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, spent, history = state["step"], state["spent"], state["history"]
    budget = args.minutes * 60
    gen = torch.Generator().manual_seed(args.seed + step)
    t = args.context

    def evaluate(limit: int = 64) -> float:
        model.eval()
        windows = test_ids[: (len(test_ids) // t) * t].view(-1, t)[:limit]
        with torch.no_grad():
            loss = model(input_ids=windows, labels=windows).loss
        model.train()
        return float(loss)

    model.train()
    last_save = time.time()
    start = time.time() - spent
    print(f"{params / 1e6:.2f}M parameters, {len(ids)} training tokens, budget {budget:.0f}s")
    while time.time() - start < budget:
        # Cosine schedule over the time budget, 2% warm-up.
        frac = (time.time() - start) / budget
        lr = args.lr * (frac / 0.02 if frac < 0.02 else 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, len(ids) - t - 1, (args.batch,), generator=gen)
        batch = torch.stack([ids[s : s + t] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            row = {
                "step": step,
                "seconds": round(time.time() - start, 1),
                "tokens": step * args.batch * t,
                "lr": lr,
                "train_loss": float(loss),
            }
            if step % 200 == 0:
                row["test_loss"] = evaluate()
            history.append(row)
            print(json.dumps(row), flush=True)
        if time.time() - last_save > 180:
            spent = time.time() - start
            torch.save(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step,
                    "spent": spent,
                    "history": history,
                },
                state_file,
            )
            last_save = time.time()
    test_loss = evaluate(limit=10_000)
    model.eval()
    model.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    # Stored in float16 (half the size); loaded in float32 (transformers reads the dtype from
    # config.json), so that the analyses on a CPU run in full precision.
    config_file = folder / "config.json"
    config_json = json.loads(config_file.read_text())
    config_json["dtype"] = "float32"
    config_file.write_text(json.dumps(config_json, indent=2) + "\n")
    shutil.copy(Path(__file__), work / "lm_train.py.txt")
    summary = {
        "corpus": "Debian package bible-kjv-text 4.38 (King James Version, 1611; public domain)",
        "train_text": TRAIN,
        "test_text": HELD_OUT,
        "train_tokens": len(ids),
        "test_tokens": len(test_ids),
        "parameters": params,
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "steps": step,
        "tokens_seen": step * args.batch * t,
        "seconds": round(time.time() - start, 1),
        "threads": torch.get_num_threads(),
        "test_loss": test_loss,
        "test_perplexity": math.exp(test_loss),
        "stored_dtype": "float16",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    (out / "training.json").write_text(json.dumps({**summary, "history": history}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
