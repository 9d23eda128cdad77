"""The cached path (frozen prefix, full-model output statistics) equals the uncached one.

Tiny GPT-2 (learned positions) and Llama-layout (rotary embeddings) models with 4 blocks, the top
2 masked, so a real prefix of 2 frozen blocks exists; batches are right padded.
"""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.testing import assert_close

from kcs.config import TrainConfig
from kcs.encoding import encode_verbalisations, read_text_blocks
from kcs.kg import Verbalisation, read_kg
from kcs.masking import MaskedLM, WeightMask
from kcs.models import load_model, num_blocks, select_blocks
from kcs.objectives import maintenance_kl
from kcs.prefix import PrefixCache
from kcs.reference import FullModelReference
from kcs.training import CyclingSampler, TrainingData, mask_step, train_mask

from core_fixtures import ANIMALS, KINDS, fact, make_tiny_model

VIEWS = ("full", "remaining", "subnetwork")


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def deep_model_dir(request, tmp_path_factory, tiny_data):
    return make_tiny_model(tmp_path_factory.mktemp(f"deep_{request.param}"), request.param, tiny_data["text"], layers=4)


@pytest.fixture(scope="module")
def deep_gpt2_dir(tmp_path_factory, tiny_data):
    return make_tiny_model(tmp_path_factory.mktemp("deep_gpt2_only"), "gpt2", tiny_data["text"], layers=4)


def _masked_lm(model_dir, seed=3):
    model, tok = load_model(model_dir)
    mask = WeightMask.for_model(model, select_blocks(num_blocks(model)), init_p=0.3)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # logits of both signs, so every view differs from the others
        for logits in mask.logits:
            logits.copy_(torch.randn(logits.shape, generator=generator))
    return MaskedLM(model, mask).eval(), tok


def _kg(tok, n=10):
    facts = [fact(a, KINDS[i % len(KINDS)]) for i, a in enumerate(ANIMALS[:n])]
    facts[1]["prompt"] = f"Everyone knows that a {facts[1]['head']} is a kind of"  # a longer row: padding
    return encode_verbalisations([Verbalisation(f["prompt"], f["target"]) for f in facts], tok)


def test_the_split_forward_equals_the_whole_model(deep_model_dir):
    lm, tok = _masked_lm(deep_model_dir)
    assert lm.first_block == 2
    enc = _kg(tok)
    real = enc.attention_mask.bool()
    for view in VIEWS:
        with torch.no_grad():
            whole = lm(view, input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
            split = lm.head(lm.upper(view, lm.lower(enc.input_ids, enc.attention_mask)))
        assert_close(split[real], whole[real])


@pytest.mark.parametrize("budget_rows", [0, 4, 10])
def test_prefix_cache_gives_the_uncached_block_inputs(deep_model_dir, budget_rows):
    lm, tok = _masked_lm(deep_model_dir)
    enc = _kg(tok)
    row_bytes = enc.input_ids.shape[1] * lm.model.config.hidden_size * 4
    cache = PrefixCache.for_lm(lm, enc.input_ids, enc.attention_mask, budget_bytes=budget_rows * row_bytes)
    assert cache.n_cached == budget_rows
    rows = torch.tensor([7, 1, 3, 9, 0])  # cached and uncached rows mixed
    batch = enc.subset(rows)
    real = batch.attention_mask.bool()
    cached = cache.block_inputs(rows, batch.input_ids, batch.attention_mask)
    fresh = lm.lower(batch.input_ids, batch.attention_mask)
    assert_close(cached.hidden[real], fresh.hidden[real])
    for view in VIEWS:
        with torch.no_grad():
            assert_close(lm.upper(view, cached)[real], lm.upper(view, fresh)[real])


def _statistics_of(lm, logits):
    """The full model's expected output embedding and offset, from its logits by the definition."""
    p = torch.softmax(logits, dim=-1)
    return p @ lm.model.get_output_embeddings().weight, (p * p.log()).sum(dim=-1)


@pytest.mark.parametrize("budget_rows", [0, 3, 10])
def test_full_model_reference_equals_the_full_forward(deep_model_dir, budget_rows):
    lm, tok = _masked_lm(deep_model_dir)
    enc = _kg(tok)
    d_model = lm.model.config.hidden_size
    prefix = PrefixCache.for_lm(lm, enc.input_ids, enc.attention_mask, budget_bytes=10**9)
    reference = FullModelReference(lm, prefix, enc.kl_index("tail"), budget_bytes=budget_rows * (d_model + 1) * 4)
    assert reference.n_cached == budget_rows
    rows = torch.tensor([8, 2, 5, 0])
    batch = enc.subset(rows)
    with torch.no_grad():
        logits = lm("full", input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    for ours, expected in zip(reference.statistics(rows), _statistics_of(lm, logits[torch.arange(4), batch.kl_index("tail")])):
        assert_close(ours, expected)

    text = torch.randint(0, 300, (6, 16), generator=torch.Generator().manual_seed(0))
    text_prefix = PrefixCache.for_lm(lm, text, None, budget_bytes=2 * 16 * d_model * 4)
    text_reference = FullModelReference(lm, text_prefix, None, budget_bytes=budget_rows // 3 * 16 * (d_model + 1) * 4)
    rows = torch.tensor([5, 0, 3])
    with torch.no_grad():
        logits = lm("full", input_ids=text[rows]).logits
    for ours, expected in zip(text_reference.statistics(rows), _statistics_of(lm, logits)):
        assert_close(ours, expected)


def test_maintenance_kl_from_the_statistics_equals_the_definition_with_its_gradient(deep_model_dir):
    """The cached statistics give KL(p_full || p_remaining) and its gradient, as the vocabulary-wide
    definition does (kcs.reference)."""
    lm, tok = _masked_lm(deep_model_dir)
    text = torch.randint(0, 300, (3, 16), generator=torch.Generator().manual_seed(1))
    prefix = PrefixCache.for_lm(lm, text, None, budget_bytes=10**9)
    reference = FullModelReference(lm, prefix, None, budget_bytes=10**9)
    rows = torch.tensor([2, 0])
    with torch.no_grad():
        log_p = torch.log_softmax(lm("full", input_ids=text[rows]).logits, dim=-1).flatten(0, 1)
    for logits in lm.mask.logits:  # a mask that removes weights, so p_remaining differs from p_full
        logits.data.copy_(torch.randn(logits.shape, generator=torch.Generator().manual_seed(2)))
    lm.train()

    def kl_and_gradient(kl_of):
        torch.manual_seed(3)  # the same mask sample on both sides
        hidden = lm.upper("remaining", prefix.block_inputs(rows, text[rows])).flatten(0, 1)
        kl = kl_of(hidden)
        grads = torch.autograd.grad(kl, lm.mask.logits)
        return kl.detach(), torch.cat([g.flatten() for g in grads])

    expected, offset = reference.statistics(rows)
    ours = kl_and_gradient(lambda h: maintenance_kl(lm.head(h), h, expected.flatten(0, 1), offset.flatten()))
    definition = kl_and_gradient(lambda h: F.kl_div(torch.log_softmax(lm.head(h), dim=-1), log_p,
                                                   reduction="none", log_target=True).sum(dim=-1).mean())
    assert definition[0] > 1e-4  # the check compares a real difference, not two zeros
    assert_close(ours[0], definition[0], rtol=1e-3, atol=1e-7)
    assert_close(ours[1], definition[1], rtol=1e-4, atol=1e-6)


def _losses_and_gradients(model_dir, text_file, budget_mb):
    torch.manual_seed(0)
    lm, tok = _masked_lm(model_dir)
    lm.train()
    config = TrainConfig(steps=10, controlkg_batch_size=4, targetkg_batch_size=3, controllm_batch_size=2,
                         controllm_block_size=16, prefix_cache_mb=budget_mb, reference_cache_mb=budget_mb,
                         use_expression=True)
    enc = _kg(tok)
    text = read_text_blocks([text_file], tok, 16, 8)
    data = TrainingData.build(lm, config, enc.subset(slice(0, 4)), enc.subset(slice(4, 10)), text, enc.subset(slice(4, 8)))
    samplers = {"targetkg": CyclingSampler(4, 3, 1), "controlkg": CyclingSampler(6, 4, 2), "controllm": CyclingSampler(8, 2, 3)}
    optimiser = torch.optim.SGD(lm.mask.parameters(), lr=0.0)  # keep the logits: compare the gradients
    torch.manual_seed(1)
    _, _, terms, _, total = mask_step(lm, optimiser, config, samplers, data, step_index=5)
    grads = [logits.grad.clone() for logits in lm.mask.logits]
    return {k: v.detach() for k, v in terms.items()}, total.detach(), grads, data.cache_report()


def assert_same_step(cached, plain):
    """Two steps' (terms, total, gradients) agree, and the gradients are not all zero."""
    (cached_terms, cached_total, cached_grads), (plain_terms, plain_total, plain_grads) = cached, plain
    assert set(cached_terms) == {"targetkg", "expression", "controlkg", "controllm"}
    for name in cached_terms:
        assert_close(cached_terms[name], plain_terms[name])
    assert_close(cached_total, plain_total)
    for cached, plain in zip(cached_grads, plain_grads):
        assert cached.abs().sum() > 0
        assert_close(cached, plain)


def test_cached_and_uncached_steps_give_the_same_losses_and_gradients(deep_model_dir, tiny_data):
    *cached, report = _losses_and_gradients(deep_model_dir, tiny_data["text"], 64)
    *plain, plain_report = _losses_and_gradients(deep_model_dir, tiny_data["text"], 0)
    assert report["prefix/controllm"]["rows"] == 8 and report["reference/controllm"]["rows"] == 8
    assert plain_report["prefix/controllm"]["rows"] == 0 and plain_report["reference/controlkg"]["rows"] == 0
    assert_same_step(cached, plain)


def test_a_short_run_ends_with_the_same_mask_with_and_without_caches(deep_gpt2_dir, tiny_data, tmp_path):
    masks = {}
    for budget in (0, 64):
        config = TrainConfig(steps=12, controllm_block_size=32, controllm_batch_size=4, controllm_max_blocks=40,
                             validate_every=4, checkpoint_every=3, eval_controllm_blocks=4,
                             prefix_cache_mb=budget, reference_cache_mb=budget)
        path = train_mask(deep_gpt2_dir, tiny_data["targetkg"], tiny_data["controlkg"], [tiny_data["text"]],
                          tmp_path / f"budget{budget}", config, seed=3, progress=False)
        masks[budget] = load_file(path)
    for name, logits in masks[64].items():
        assert_close(logits, masks[0][name])
        assert torch.equal(logits > 0, masks[0][name] > 0), name
    assert read_kg(tiny_data["targetkg"])  # the run read the real files


def test_kg_statistics_equal_the_whole_model_with_and_without_a_prefix_cache(deep_model_dir):
    from kcs.evaluation import kg_statistics

    lm, tok = _masked_lm(deep_model_dir)
    enc = _kg(tok)
    prefix = PrefixCache.for_lm(lm, enc.input_ids, enc.attention_mask, budget_bytes=10**9)
    for cache in (None, prefix):
        stats = kg_statistics(lm, VIEWS, enc, batch_size=4, prefix=cache)
        for view in VIEWS:
            with torch.no_grad():
                logits = lm(view, input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits.float()
            rows = torch.arange(len(enc))
            log_probs = torch.log_softmax(logits[rows, enc.last_index - 1], dim=-1)
            nll = -log_probs[rows, enc.gold_last()]
            assert_close(stats[view]["nll"], nll.to(stats[view]["nll"].device))
            labels = enc.tail_labels()[:, 1:].to(logits.device)
            tail_nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                         ignore_index=-100)
            assert stats[view]["tail_ppl"] == pytest.approx(torch.exp(tail_nll).item(), rel=1e-4)
            batch_ppls = [torch.exp(nll[s:s + 4].mean()).item() for s in range(0, len(enc), 4)]
            assert stats[view]["ppl"] == pytest.approx(sum(batch_ppls) / len(batch_ppls), rel=1e-4)


def test_a_prefix_store_is_read_back_and_keyed_by_weights_and_rows(deep_model_dir, tmp_path):
    from kcs.prefix import PrefixStore

    lm, tok = _masked_lm(deep_model_dir)
    enc = _kg(tok)
    store = PrefixStore(tmp_path / "store")
    computed = PrefixCache.for_lm(lm, enc.input_ids, enc.attention_mask, budget_bytes=10**9, store=store)
    files = list((tmp_path / "store").glob("*.safetensors"))
    assert len(files) == 1
    # another process (a fresh store object) reads the file instead of running the prefix
    lm.model.base_model.forward = None  # would fail if the prefix ran
    read = PrefixCache.for_lm(lm, enc.input_ids, enc.attention_mask, budget_bytes=10**9, store=PrefixStore(store.root))
    del lm.model.base_model.forward
    assert torch.equal(read.hidden, computed.hidden)
    # other rows, or other prefix weights, are other files: never a wrong hit
    PrefixCache.for_lm(lm, enc.input_ids[:5], enc.attention_mask[:5], budget_bytes=10**9, store=store)
    with torch.no_grad():
        lm.model.get_input_embeddings().weight[0, 0] += 1.0
    changed = PrefixCache.for_lm(lm, enc.input_ids, enc.attention_mask, budget_bytes=10**9, store=PrefixStore(store.root))
    assert len(list((tmp_path / "store").glob("*.safetensors"))) == 3
    assert not torch.equal(changed.hidden, computed.hidden)
    # a damaged file is recomputed and replaced
    files[0].write_bytes(b"not a safetensors file")
    lm2, _ = _masked_lm(deep_model_dir)
    again = PrefixCache.for_lm(lm2, enc.input_ids, enc.attention_mask, budget_bytes=10**9, store=PrefixStore(store.root))
    assert torch.equal(again.hidden, computed.hidden)
    assert PrefixStore.load(files[0], tuple(computed.hidden.shape)) is not None


def test_an_evaluation_with_a_prefix_store_equals_one_without(deep_gpt2_dir, tiny_data, tmp_path):
    from kcs.evaluation import evaluate_mask
    from kcs.maskfile import save_mask

    lm, _ = _masked_lm(deep_gpt2_dir)
    mask_path = tmp_path / "mask.safetensors"
    save_mask(mask_path, lm.mask, base_model=str(deep_gpt2_dir), model_type=lm.model.config.model_type)
    config = TrainConfig(eval_batch_size=4, eval_lm_batch_size=2, controllm_block_size=32)
    args = (str(deep_gpt2_dir), mask_path, tiny_data["targetkg"], tiny_data["controlkg"], [tiny_data["text"]], config)
    plain = evaluate_mask(*args)
    first = evaluate_mask(*args, prefix_store=tmp_path / "store")
    assert len(list((tmp_path / "store").glob("*.safetensors"))) >= 3  # targetkg, controlkg, text
    second = evaluate_mask(*args, prefix_store=tmp_path / "store")
    for name in ("targetkg", "controlkg", "controllm"):
        assert first[name]["ppl_remaining"] == second[name]["ppl_remaining"]
        assert first[name]["ppl_remaining"] == pytest.approx(plain[name]["ppl_remaining"], rel=1e-5)
    assert first["targetkg"]["ppl_subnetwork"] == pytest.approx(plain["targetkg"]["ppl_subnetwork"], rel=1e-5)
