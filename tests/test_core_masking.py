"""Masks, views, sparsity and mask files on tiny GPT-2 and Llama models."""

import pytest
import torch
from transformers import AutoModelForCausalLM, BertConfig, BertLMHeadModel

from kcs.errors import KcsError
from kcs.maskfile import load_mask, save_mask
from kcs.masking import MaskedLM, WeightMask
from kcs.models import LAYOUTS, layout_for, load_model, maskable_parameters, num_blocks, select_blocks
from kcs.removal import zero_subnetwork_


def _mask(model, granularity="weight"):
    return WeightMask.for_model(model, select_blocks(num_blocks(model)), granularity)


def _random_binary(mask, seed=0, share=0.3):
    gen = torch.Generator().manual_seed(seed)
    mask.load_binary({n: torch.rand(t.shape, generator=gen) < share for n, t in zip(mask.names, mask.logits)})


def test_top_half_blocks_and_matrix_count(tiny_model_dir):
    model, _ = load_model(tiny_model_dir)
    layout = layout_for(model)
    blocks = select_blocks(num_blocks(model))
    assert blocks == [1]  # 2 blocks -> the top one
    params = maskable_parameters(model, blocks)
    assert len(params) == len(layout.matrices)
    assert all(".1." in name and name.endswith(".weight") for name in params)
    assert select_blocks(48) == list(range(24, 48))
    assert select_blocks(12, top_k=3) == [9, 10, 11]
    assert select_blocks(12, block_range=[2, 4]) == [2, 3, 4]


def test_unsupported_architecture_is_refused_with_the_list():
    model = BertLMHeadModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=32, is_decoder=True))
    with pytest.raises(KcsError) as err:
        layout_for(model)
    for name in LAYOUTS:
        assert name in str(err.value)


def test_initial_mask_is_empty_and_remaining_equals_full(tiny_model_dir):
    model, tok = load_model(tiny_model_dir)
    mask = _mask(model)
    assert mask.sparsity() == 1.0
    assert all(torch.allclose(torch.sigmoid(t), torch.tensor(0.45)) for t in mask.logits)
    lm = MaskedLM(model, mask).eval()
    ids = tok(["A dog is a kind of animal"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        full = lm("full", input_ids=ids).logits
        assert torch.equal(lm("remaining", input_ids=ids).logits, full)


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_views_match_zeroed_weights(tiny_model_dir, granularity):
    model, tok = load_model(tiny_model_dir)
    mask = _mask(model, granularity)
    _random_binary(mask)
    assert 0.5 < mask.sparsity() < 0.9
    lm = MaskedLM(model, mask).eval()
    ids = tok(["A cat is a kind of pet", "the fox was a hunter"], return_tensors="pt", padding=True)["input_ids"]
    remaining = lm("remaining", input_ids=ids).logits
    subnetwork = lm("subnetwork", input_ids=ids).logits

    reference, _ = load_model(tiny_model_dir)
    zeroed = zero_subnetwork_(reference, mask)
    assert torch.allclose(reference(input_ids=ids.to(reference.device)).logits, remaining, atol=1e-5)
    removed = sum(int(z.sum()) for z in zeroed.values())
    assert removed == mask.sparsity_report()["removed_weights"]

    # subnetwork view = only the subnetwork's weights kept inside the masked matrices
    complement, _ = load_model(tiny_model_dir)
    params = dict(complement.named_parameters())
    with torch.no_grad():
        for name, member in mask.binary().items():
            params[name].masked_fill_(~member.expand_as(params[name]), 0.0)
    assert torch.allclose(complement(input_ids=ids.to(complement.device)).logits, subnetwork, atol=1e-5)


def test_straight_through_gradients_reach_every_logit(tiny_model_dir):
    model, tok = load_model(tiny_model_dir)
    mask = _mask(model)
    lm = MaskedLM(model, mask).train()
    ids = tok(["A dog is a kind of animal"], return_tensors="pt")["input_ids"]
    lm("remaining", input_ids=ids).logits.logsumexp(-1).sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in mask.logits)
    assert all(p.grad is None for p in model.parameters())


def test_training_samples_are_fresh_and_eval_is_deterministic(tiny_model_dir):
    model, _ = load_model(tiny_model_dir)
    mask = _mask(model)
    torch.manual_seed(0)
    a, b = mask.sample(0, "remaining", True), mask.sample(0, "remaining", True)
    assert not torch.equal(a, b)
    # P(in subnetwork) = sigmoid(logit) = 0.45 in training, so the remaining view keeps ~55%
    assert 0.5 < float(a.detach().mean()) < 0.6
    assert torch.equal(mask.sample(0, "remaining", False), torch.ones_like(a))


def test_sparsity_report_by_layer_and_module(tiny_model_dir):
    model, _ = load_model(tiny_model_dir)
    mask = _mask(model)
    with torch.no_grad():
        mask.logits[0].fill_(5.0)  # the first matrix entirely in the subnetwork
    report = mask.sparsity_report()
    first = mask.infos[mask.names[0]]
    assert report["sparsity_by_module"][first.module] == 0.0
    assert report["removed_weights"] == first.weight_shape[0] * first.weight_shape[1]
    assert report["sparsity"] == pytest.approx(1 - report["removed_weights"] / report["masked_weights"])
    assert set(report["sparsity_by_layer"]) == {"1"}


def test_mask_file_round_trip_and_model_mismatch(tiny_model_dir, tiny_data, tmp_path):
    model, _ = load_model(tiny_model_dir)
    mask = _mask(model)
    _random_binary(mask, seed=3)
    path = tmp_path / "mask.safetensors"
    save_mask(path, mask, base_model=str(tiny_model_dir), model_type=model.config.model_type)
    loaded = load_mask(path, model=model)
    assert loaded.names == mask.names
    assert all(torch.equal(a, b) for a, b in zip(loaded.logits, mask.logits))
    assert loaded.metadata["granularity"] == "weight"

    wider = AutoModelForCausalLM.from_config(model.config.__class__(**{
        **model.config.to_dict(), ("n_embd" if model.config.model_type == "gpt2" else "hidden_size"): 64}))
    with pytest.raises(KcsError, match=r"shape .* this model's weight is"):
        load_mask(path, model=wider)

    not_a_mask = tmp_path / "other.safetensors"
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(2)}, str(not_a_mask))
    with pytest.raises(KcsError, match="not a kcs mask file"):
        load_mask(not_a_mask)


@pytest.mark.parametrize("view,sign", [("subnetwork", 1.0), ("remaining", -1.0)])
@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_straight_through_gradient_is_ds_dlogit(tiny_model_dir, view, sign, granularity):
    model, _ = load_model(tiny_model_dir)
    mask = _mask(model, granularity)
    with torch.no_grad():
        mask.logits[0].normal_()
    weight = dict(model.named_parameters())[mask.names[0]]
    upstream = torch.randn_like(weight)
    (mask.masked_weight(0, weight, view, stochastic=False) * upstream).sum().backward()
    soft = torch.sigmoid(mask.logits[0].detach())
    expected = sign * soft * (1 - soft) * (upstream * weight)
    if granularity == "neuron":
        expected = expected.sum(dim=[d for d in range(2) if soft.shape[d] == 1], keepdim=True)
    assert torch.allclose(mask.logits[0].grad, expected, atol=1e-6)


def test_logits_at_equals_the_full_forward_at_those_positions(tiny_model_dir):
    model, tok = load_model(tiny_model_dir)
    mask = _mask(model)
    _random_binary(mask, seed=5)
    lm = MaskedLM(model, mask).eval()
    enc = tok(["A cat is a kind of pet", "the fox"], return_tensors="pt", padding=True)
    positions = torch.tensor([3, 1])
    for view in ("full", "remaining", "subnetwork"):
        with torch.no_grad():
            full = lm(view, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            picked = lm.logits_at(view, enc["input_ids"], enc["attention_mask"], positions)
        assert torch.allclose(full[torch.arange(2), positions], picked, atol=1e-5)


def test_expected_density_and_its_gradient_match_autograd_of_mean_sigmoid(tiny_model_dir):
    model, _ = load_model(tiny_model_dir)
    mask = _mask(model)
    with torch.no_grad():
        for logits in mask.logits:
            logits.normal_()
    density = mask.expected_density()
    density.backward()
    ours = [logits.grad.clone() for logits in mask.logits]
    flat = torch.cat([logits.detach().flatten() for logits in mask.logits]).requires_grad_(True)
    reference = torch.sigmoid(flat).mean()
    reference.backward()
    torch.testing.assert_close(density.detach(), reference.detach())
    torch.testing.assert_close(torch.cat([g.flatten() for g in ours]), flat.grad)


def test_maintenance_kl_equals_the_definition():
    from kcs.objectives import maintenance_kl

    gen = torch.Generator().manual_seed(0)
    head = torch.randn(11, 4, generator=gen)  # an output layer with V = 11, d = 4, and a bias
    bias = torch.randn(11, generator=gen)
    ref = torch.log_softmax(torch.randn(5, 11, generator=gen), dim=-1)
    hidden = torch.randn(5, 4, generator=gen)
    logits = hidden @ head.T + bias
    log_q = torch.log_softmax(logits, dim=-1)
    expected = (ref.exp() * (ref - log_q)).sum(dim=-1)
    p = ref.exp()
    statistics = (p @ head, (p * ref).sum(dim=-1) - p @ bias)
    torch.testing.assert_close(maintenance_kl(logits, hidden, *statistics), expected.mean())
    weights = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    torch.testing.assert_close(maintenance_kl(logits, hidden, *statistics, weights), (expected * weights).sum() / 3)


def test_a_logit_of_exactly_zero_stays_out_of_the_subnetwork(tiny_model_dir):
    # s = 0.5 exactly: not in the subnetwork (logit > 0 is), so kept by the remaining view
    model, _ = load_model(tiny_model_dir)
    mask = _mask(model)
    with torch.no_grad():
        mask.logits[0].zero_()
        mask.logits[0][0, 0] = 1e-6
    remaining = mask.sample(0, "remaining", False)
    subnetwork = mask.sample(0, "subnetwork", False)
    assert remaining[0, 0] == 0 and subnetwork[0, 0] == 1
    assert torch.equal(remaining + subnetwork, torch.ones_like(remaining))
    assert int(subnetwork.sum()) == 1 == int(mask.binary()[mask.names[0]].sum())
