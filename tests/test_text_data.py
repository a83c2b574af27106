"""``--dataset text:PATH``: a text file tokenised with the model folder's tokenizer into fixed
windows; perplexity over it against a hand computation with the model's own forward, and the
KL divergence from the full network against a hand computation, for LMs and classifiers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from resnet_ensemble import evaluate_routes
from resnet_ensemble.data.text import WINDOW_ENV, load_text
from resnet_ensemble.studies.experiment import open_experiment

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
transformers.logging.set_verbosity_error()

TEXT = (
    "In the beginning was the word, and the word was with the reader. The reader read the "
    "word again and again, until the words were worn thin. "
) * 12


def make_lm_folder(folder: Path, kind: str = "gpt2") -> Path:
    """A tiny random decoder with a byte-level BPE tokenizer trained on ``TEXT``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([TEXT], trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    vocab = len(fast)
    if kind == "gpt2":
        config = transformers.GPT2Config(
            vocab_size=vocab, n_layer=2, n_embd=32, n_head=4, n_positions=64
        )
        model = transformers.GPT2LMHeadModel(config)
    else:
        config = transformers.LlamaConfig(
            vocab_size=vocab,
            num_hidden_layers=2,
            hidden_size=32,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=48,
            max_position_embeddings=64,
        )
        model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lm_folder(tmp_path_factory.mktemp("lm"))


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(TEXT)
    return path


def test_text_windows_are_the_tokenised_file_cut_in_order(lm_folder: Path, text_file: Path) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(lm_folder)
    ids = tok(TEXT)["input_ids"]
    ds = load_text(f"text:{text_file}", lm_folder, window=16)
    assert len(ds) == len(ids) // 16
    x, y = ds[2]
    assert x.tolist() == ids[32:48] and torch.equal(x, y)
    assert len(load_text(f"text:{text_file}", lm_folder, window=16, limit=3)) == 3
    with pytest.raises(FileNotFoundError, match="not found"):
        load_text("text:/no/such.txt", lm_folder)
    with pytest.raises(ValueError, match="fewer than one window"):
        load_text(f"text:{text_file}", lm_folder, window=100_000)
    with pytest.raises(ValueError, match="tokenizer"):
        load_text(f"text:{text_file}", text_file.parent)


def test_perplexity_over_a_text_file_equals_a_hand_computation(
    lm_folder: Path, text_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WINDOW_ENV, "16")
    exp = open_experiment(
        f"hf:{lm_folder}", dataset=f"text:{text_file}", batch_size=4, device="cpu"
    )
    assert exp.describe()["images"] == len(exp.dataset) and exp.anatomy.task == "language"
    model = exp.model.eval()
    nll, count = 0.0, 0
    with torch.no_grad():
        for x, _ in exp.loader():
            logp = model(x).logits.double().log_softmax(-1)
            for b in range(x.shape[0]):
                for t in range(x.shape[1] - 1):
                    nll -= float(logp[b, t, x[b, t + 1]])
                    count += 1
    (ppl,) = evaluate_routes(model, exp.loader(), [range(4)], metric="perplexity")
    assert ppl == pytest.approx(math.exp(nll / count), rel=1e-6)
    # Gradient batches of text come from the file itself (there is no training split).
    batches = exp.random_batches(3, 2)
    assert batches[0][0].shape == (3, 16) and torch.equal(batches[0][0], batches[0][1])
    with pytest.raises(ValueError, match="not a language model"):
        open_experiment(None, dataset=f"text:{text_file}", device="cpu")


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_kl_from_the_full_model_equals_a_hand_computation(tmp_path: Path, kind: str) -> None:
    folder = make_lm_folder(tmp_path / kind, kind)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    from .zoo_reference import randomize_norms, zeroed

    randomize_norms(model)
    ids = torch.randint(
        0, model.config.vocab_size, (3, 9), generator=torch.Generator().manual_seed(1)
    )
    layers = model.base_model.h if kind == "gpt2" else model.base_model.layers
    mlp = layers[0].mlp
    with torch.no_grad():
        p = model(ids).logits[:, :-1].double().log_softmax(-1)
        with zeroed([mlp]):
            q = model(ids).logits[:, :-1].double().log_softmax(-1)
    expected = float((p.exp() * (p - q)).sum(-1).mean())
    full, kl = evaluate_routes(model, [ids], [range(4), [0, 2, 3]], metric="kl")
    assert full == pytest.approx(0.0, abs=1e-12)
    assert kl == pytest.approx(expected, rel=1e-6) and kl > 0


def test_kl_of_a_classifier_is_over_its_class_distributions() -> None:
    from resnet_ensemble.models import cifar_resnet

    torch.manual_seed(0)
    net = cifar_resnet(20, num_classes=10).eval()
    x, y = torch.randn(5, 3, 32, 32), torch.zeros(5, dtype=torch.long)
    from resnet_ensemble import lesion

    with torch.no_grad():
        p = net(x).double().log_softmax(-1)
        with lesion(net, drop=[4]):
            q = net(x).double().log_softmax(-1)
    expected = float((p.exp() * (p - q)).sum(-1).mean())
    (kl,) = evaluate_routes(net, [(x, y)], [[i for i in range(9) if i != 4]], metric="kl")
    assert kl == pytest.approx(expected, rel=1e-6)


def test_cli_sweeps_and_lesion_run_on_a_language_model_over_a_text_file(
    lm_folder: Path, text_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd
    from click.testing import CliRunner

    from resnet_ensemble.cli import cli

    monkeypatch.setenv(WINDOW_ENV, "16")
    data = ["--model", f"hf:{lm_folder}", "--dataset", f"text:{text_file}", "--device", "cpu"]
    out = tmp_path / "single.csv"
    run = CliRunner().invoke(
        cli, ["sweep", "single", *data, "--metric", "perplexity", "--out", str(out)]
    )
    assert run.exit_code == 0, run.output
    table = pd.read_csv(out)
    assert len(table) == 5 and "perplexity" in table.columns
    exp = open_experiment(f"hf:{lm_folder}", dataset=f"text:{text_file}", device="cpu")
    (full,) = evaluate_routes(exp.model, exp.loader(), [range(4)], metric="perplexity")
    assert float(table.loc[table["config"] == "baseline", "perplexity"].iloc[0]) == pytest.approx(
        full, rel=1e-9
    )
    run = CliRunner().invoke(cli, ["--drop-block", "1", *data, "--metric", "kl", "--json"])
    assert run.exit_code == 0, run.output
    assert '"kl_full": 0' in run.output and '"kl_lesioned"' in run.output
    # A text is counted in windows, not images.
    run = CliRunner().invoke(cli, ["--drop-block", "1", *data])
    assert run.exit_code == 0, run.output
    assert f"windows:  {len(exp.dataset)}\n" in run.output and "images" not in run.output


def test_cli_gradients_on_a_language_model_are_taken_at_the_input_embeddings(
    lm_folder: Path, text_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --at, a language model's gradient is taken where it exists: at its input
    embeddings (token ids have none); the per-length entries still sum to that gradient."""
    import json

    import pandas as pd
    from click.testing import CliRunner

    from resnet_ensemble.cli import cli

    monkeypatch.setenv(WINDOW_ENV, "16")
    out = tmp_path / "g.csv"
    args = ["gradients", "--model", f"hf:{lm_folder}", "--dataset", f"text:{text_file}",
            "--images", "2", "--batches", "1", "--samples-per-length", "1", "--sign-draws", "0",
            "--device", "cpu", "--out", str(out)]  # fmt: skip
    run = CliRunner().invoke(cli, args)
    assert run.exit_code == 0, run.output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["measured_at"] == "blocks" and set(pd.read_csv(out)["measured_at"]) == {"blocks"}
    assert "at the input of the first residual block" in run.output
    refused = CliRunner().invoke(cli, [*args[:-2], "--at", "image"])
    assert refused.exit_code == 1 and "token ids" in refused.output
