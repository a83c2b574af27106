"""The exact path-length gradient decomposition of decoder LMs, taken at the input embeddings
with the units (attention, MLP) as the blocks: against brute force over all 2^n paths (a plain
per-path backward) and against the ordinary gradient w.r.t. ``inputs_embeds`` of the model's
own forward."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from resnet_ensemble import path_length_gradients, sample_path_gradients
from resnet_ensemble.core.gradients import single_path_gradient

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

from .test_hf import VOCAB, _decoder, _tokens  # noqa: E402


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_lm_path_length_gradients_equal_brute_force_and_the_ordinary_gradient(kind: str) -> None:
    model = _decoder(kind).double()
    ids = _tokens(3, batch=2, length=6)
    per_length = path_length_gradients(model, ids, ids)  # at the input embeddings by default
    # Llama's RMSNorm computes in float32 whatever the model's dtype, so every cotangent that
    # passes one is rounded to float32: the paths then sum to the gradient to float32 precision.
    tol = {"rtol": 1e-9, "atol": 1e-12} if kind == "gpt2" else {"rtol": 1e-5, "atol": 1e-7}
    n = 6  # three layers, two units each
    assert per_length.shape == (n + 1, 2, 6, 32)
    # The ordinary gradient, through the model's own forward from inputs_embeds (GPT-2 adds
    # its position embeddings, a constant, after them: the same gradient).
    emb = model.get_input_embeddings()(ids).detach().requires_grad_()
    logits = model(inputs_embeds=emb, use_cache=False).logits
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    (grad,) = torch.autograd.grad(loss, emb)
    torch.testing.assert_close(per_length.sum(0), grad, **tol)
    # Brute force: every path's own gradient, summed by length.
    brute = torch.zeros_like(per_length)
    for k in range(n + 1):
        for subset in itertools.combinations(range(n), k):
            brute[k] += single_path_gradient(model, ids, ids, subset)
    torch.testing.assert_close(per_length, brute, **tol)
    assert all(float(per_length[k].norm()) > 0 for k in range(n + 1))
    # Truncation keeps lengths 0..K exact and lumps the rest.
    lumped = path_length_gradients(model, ids, ids, max_length=2)
    torch.testing.assert_close(lumped[:3], per_length[:3], **tol)
    torch.testing.assert_close(lumped[3], per_length[3:].sum(0), **tol)


def test_lm_sampled_path_norms_equal_single_path_gradients() -> None:
    model = _decoder("llama").double()
    ids = _tokens(4, batch=2, length=5)
    table = sample_path_gradients(model, (ids, ids), samples_per_length=2, lengths=[1, 3], seed=1)
    for _, row in table.iterrows():
        g = single_path_gradient(model, ids, ids, _parse(str(row["blocks"])))
        assert float(row["norm"]) == pytest.approx(float(g.norm()), rel=1e-9)


def _parse(text: str) -> list[int]:
    out: list[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def test_lm_gradients_refuse_token_ids_as_the_input() -> None:
    model = _decoder("gpt2")
    ids = _tokens(5)
    with pytest.raises(ValueError, match="token ids, which have no gradient"):
        path_length_gradients(model, ids, ids, at="image")
