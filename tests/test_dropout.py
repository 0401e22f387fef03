"""BitDropout: the same per-element masks as torch's dropout (in distribution), seeded, with exact gradients."""

import pytest

torch = pytest.importorskip("torch")

from tracekd.train.dropout import RESOLUTION, BitDropout, drop_count, random_words, use_bit_dropout  # noqa: E402


def test_masks_drop_each_element_independently_with_the_effective_p():
    d = BitDropout(0.05).train()
    torch.manual_seed(0)
    y = d(torch.ones(4, 1000, 576))  # 2.3 million elements: every 16-bit quarter of the random words used
    dropped = y == 0
    p, n = d.effective_p, dropped.numel()
    assert abs(float(dropped.float().mean()) - p) < 5 * (p * (1 - p) / n) ** 0.5
    assert torch.allclose(y[~dropped], torch.tensor(RESOLUTION / (RESOLUTION - d.dropped)))
    assert abs(float(y.mean()) - 1.0) < 0.002  # kept values scaled so the expectation is the input
    # neighbours (two quarters of one word, or the last of one word and the first of the next) are independent
    flat = dropped.flatten().float()
    for lag in (1, 2, 3, 4):
        both = float((flat[:-lag] * flat[lag:]).mean())
        assert abs(both - p * p) < 5 * (p * p / n) ** 0.5, lag
    # rows of an odd size reuse no bits across rows (the tail of the last word is discarded)
    z = d(torch.ones(3, 7))
    assert z.shape == (3, 7)


def test_seeded_masks_repeat_and_eval_is_identity():
    d = BitDropout(0.3).train()
    x = torch.randn(5, 33)
    torch.manual_seed(7)
    a = d(x)
    torch.manual_seed(7)
    assert torch.equal(a, d(x))
    assert not torch.equal(a, d(x))  # the generator moved on: another mask
    assert torch.equal(d.eval()(x), x)
    assert drop_count(0.3) == 19661 and BitDropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        BitDropout(1.5)


def test_gradient_is_the_mask_times_the_scale():
    d = BitDropout(0.2).train()
    x = torch.randn(6, 40, requires_grad=True)
    torch.manual_seed(1)
    y = d(x)
    y.sum().backward()
    kept = y.detach() != 0
    scale = RESOLUTION / (RESOLUTION - d.dropped)
    assert torch.allclose(x.grad, kept.float() * scale)
    assert torch.allclose(y.detach(), x.detach() * kept * scale)


def test_use_bit_dropout_replaces_the_lora_dropouts_only():
    from peft import LoraConfig, get_peft_model

    from tracekd import students

    model = get_peft_model(students.load_model(students.resolve("tiny-random")),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, task_type="CAUSAL_LM",
                                      target_modules=["q_proj", "down_proj"]))
    assert use_bit_dropout(model) == 4  # 2 layers x 2 targets
    drops = [m for m in model.modules() if isinstance(m, (BitDropout, torch.nn.Dropout))]
    assert len(drops) == 4 and all(isinstance(m, BitDropout) and m.p == 0.05 for m in drops)
    assert use_bit_dropout(model) == 0  # idempotent
    none = get_peft_model(students.load_model(students.resolve("tiny-random")),
                          LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                                     target_modules=["q_proj"]))
    assert use_bit_dropout(none) == 0  # no dropout: PEFT's identity stays


def _masked_fill_reference(d, x):
    """The former BitDropout: the same random words, a boolean mask, masked_fill."""
    n = x.numel()
    words = random_words((n + 3) // 4)
    drop = words.view(torch.int16)[:n].view(x.shape) < d.dropped - RESOLUTION // 2
    return (x * (RESOLUTION / (RESOLUTION - d.dropped))).masked_fill_(drop, 0)


@pytest.mark.parametrize("autocast", [False, True])
def test_values_and_gradients_equal_masked_fill_bit_for_bit(autocast):
    """Under autocast the output is in autocast's type, exactly what the adapter's projection would have cast the
    masked_fill result to; the gradient reaching x is the same bits either way."""
    d = BitDropout(0.05).train()
    x = torch.randn(4, 37, 96)
    weight = torch.randn(8, 96)
    results = []
    for fn in (d, lambda t: _masked_fill_reference(d, t)):
        leaf = x.clone().requires_grad_()
        torch.manual_seed(3)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            dropped = fn(leaf)
            out = torch.nn.functional.linear(dropped, weight)
        out.float().square().sum().backward()
        results.append((dropped.dtype, out.detach(), leaf.grad))
    (dtype, out, grad), (_, ref_out, ref_grad) = results
    assert dtype == (torch.bfloat16 if autocast else torch.float32)
    assert torch.equal(out, ref_out) and torch.equal(grad, ref_grad)
