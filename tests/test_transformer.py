"""The character transformer: causal forward, key/value cache == full forward, windows score each character once, train/resume/sample/score/export."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.checkpoint import Loaded
from chargen.cli import app
from chargen.data.streams import as_streams
from chargen.errors import UsageError
from chargen.export import export, load_runner, max_difference
from chargen.generation.kvcache import KVCacheStepper, keep_on_slide
from chargen.generation.windows import WindowReader, windowed_log_probs, windows
from chargen.inference import make_stepper
from chargen.models import ModelConfig, TransformerLM, build_model, check_family_settings
from chargen.models.transformer import apply_rotary, rotary_tables
from chargen.sample import generate
from chargen.schema import parameter_estimate
from chargen.score import score_text
from chargen.tasks import build_task
from chargen.tasks.lm import evaluate_lm
from chargen.train import TrainConfig, fit
from chargen.vocab import Vocab

runner = CliRunner()
VOCAB = Vocab.from_text("abcdefghijklmnopqrs .")
POSITIONS = ("learned", "rotary")
TEXT = "Once upon a time a miller had three sons, a mill, a donkey and a cat. " * 40


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread: None) -> None:
    """Small models run fastest on one thread (see conftest)."""


def tiny(positions: str = "learned", *, context: int = 8, conditions: int = 0, seed: int = 0,
         tie: bool = True) -> TransformerLM:
    torch.manual_seed(seed)
    cfg = ModelConfig(family="transformer", vocab_size=len(VOCAB), n_layer=2, n_head=2, d_model=16, context=context,
                      positions=positions, num_conditions=conditions, tie_weights=tie)
    cfg.check()
    model = build_model(cfg)
    with torch.no_grad():  # larger than nanoGPT's init: logits of a trained model's size, whose context matters
        for p in model.parameters():
            p.mul_(3.0)
    assert isinstance(model, TransformerLM)
    return model.eval()


def ids(T: int, N: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(len(VOCAB), (T, N), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- the model


@pytest.mark.parametrize("positions", POSITIONS)
def test_the_forward_is_causal_and_its_loss_is_cross_entropy(positions: str) -> None:
    model = tiny(positions)
    x = ids(8, 3)
    logits, loss, state = model(x, None, targets=x)
    assert logits.shape == (8, 3, len(VOCAB)) and state is None
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, len(VOCAB)), x.reshape(-1)))
    changed = x.clone()
    changed[5:] = (changed[5:] + 1) % len(VOCAB)  # the future changes: the past's predictions must not
    later, _, _ = model(changed)
    torch.testing.assert_close(later[:5], logits[:5], rtol=0, atol=0)
    assert not torch.allclose(later[5:], logits[5:])


def test_no_state_is_carried_and_the_context_is_a_hard_limit() -> None:
    model = tiny()
    with pytest.raises(ValueError, match="no state"):
        model(ids(4, 1), (torch.zeros(1),))
    with pytest.raises(ValueError, match="context of 8"):
        model(ids(9, 1))


def test_rotary_attention_scores_depend_only_on_the_distance() -> None:
    cos, sin = rotary_tables(32, 8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i: int, j: int) -> float:
        return float((apply_rotary(q, cos[i : i + 1], sin[i : i + 1]) * apply_rotary(k, cos[j : j + 1], sin[j : j + 1])).sum())

    assert score(7, 3) == pytest.approx(score(20, 16), abs=1e-5) == pytest.approx(score(4, 0), abs=1e-5)
    assert score(7, 3) != pytest.approx(score(7, 4), abs=1e-3)
    assert score(0, 0) == pytest.approx(float((q * k).sum()), abs=1e-6)  # position 0 is no rotation


@pytest.mark.parametrize("positions", POSITIONS)
def test_a_cached_forward_in_pieces_equals_the_whole_forward(positions: str) -> None:
    model = tiny(positions, conditions=2)
    x, cond = ids(8, 3), torch.tensor([0, 1, 1])
    whole, _, _ = model(x, condition=cond)  # (T, N, V)
    cache = model.new_cache(3)
    pieces = [model.forward_cached(x[a:b].t(), cache, cond) for a, b in ((0, 3), (3, 4), (4, 7), (7, 8))]
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole.transpose(0, 1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="exceed"):
        model.forward_cached(x[:1].t(), cache, cond)


def test_weights_tie_init_and_the_parameter_estimate() -> None:
    model = tiny(tie=True)
    assert model.head.weight is model.embed.weight
    untied = tiny(tie=False, context=16, positions="rotary")
    assert untied.head.weight is not untied.embed.weight
    for m in (model, untied):
        assert sum(p.numel() for p in m.parameters()) == parameter_estimate(m.cfg.to_dict())
    torch.manual_seed(0)
    fresh = build_model(ModelConfig(family="transformer", vocab_size=50, n_layer=8, d_model=64))
    assert fresh.blocks[0].fc.weight.std().item() == pytest.approx(0.02, rel=0.1)  # nanoGPT's init
    assert fresh.blocks[0].proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.1)
    assert float(fresh.blocks[0].fc.bias.detach().abs().max()) == 0.0


@pytest.mark.parametrize(("settings", "params"), [
    ({"d_model": 30, "n_head": 4}, ("d_model", "n_head")),
    ({"d_model": 12, "n_head": 4, "positions": "rotary"}, ("positions", "d_model", "n_head")),
    ({"positions": "sinusoid"}, ("positions",)),
    ({"context": 1}, ("context",)),
    ({"n_layer": 0}, ("n_layer",)),
    ({"family": "convolutional"}, ("family",)),
])
def test_impossible_settings_are_usage_errors_naming_them(settings: dict[str, Any], params: tuple[str, ...]) -> None:
    with pytest.raises(UsageError) as caught:
        ModelConfig(**{"family": "transformer", **settings}).check()
    assert caught.value.params == params


def test_a_transformer_classifier_and_settings_of_the_other_family_are_refused() -> None:
    with pytest.raises(UsageError, match="builds language models") as caught:
        build_model(ModelConfig(family="transformer", kind="classifier", vocab_size=5, num_classes=2))
    assert caught.value.params == ("family",)
    with pytest.raises(UsageError, match="hidden_size is not read by family 'transformer'"):
        check_family_settings("transformer", {"hidden_size": 8, "d_model": 16, "cell": None})
    with pytest.raises(UsageError, match="n_head, context are not read"):
        check_family_settings("recurrent", {"n_head": 2, "context": 8, "hidden_size": 8})
    check_family_settings("transformer", {"d_model": 16, "dropout": 0.1, "cell": None, "cell_options": None})


# --------------------------------------------------------------------------- sliding windows


@pytest.mark.parametrize("context", [2, 3, 4, 7, 8])
def test_every_target_is_scored_exactly_once_with_half_a_context_of_history(context: int) -> None:
    for n in range(0, 60):
        scored: list[int] = []
        for w in windows(n, context):
            assert 1 <= w.length <= context and w.start + w.length <= n - 1
            for p in range(w.skip, w.length):
                target = w.start + p + 1
                history = p + 1  # inputs start..start+p
                assert history >= context / 2 or w.start == 0, (n, w)
                scored.append(target)
        assert sorted(scored) == scored == list(range(1, n)), (n, context)


def test_windows_planned_as_the_text_grows_are_the_windows_of_the_whole_text() -> None:
    context, n = 7, 50
    grown: list[Any] = []
    for seen in range(n + 1):  # what a reader that has seen `seen` ids may already score
        grown += list(windows(seen, context, final=False, first=len(grown)))
    grown += list(windows(n, context, first=len(grown)))
    assert grown == list(windows(n, context))


@pytest.mark.parametrize("positions", POSITIONS)
def test_windowed_log_probs_equal_each_target_scored_alone_in_its_window(positions: str) -> None:
    model = tiny(positions, context=6)
    data = ids(23, 2)
    got = windowed_log_probs(model, data)  # (22, 2)
    stride = 6 // 2
    expected = torch.empty(22, 2, dtype=torch.float64)
    for t in range(1, 23):  # the window that scores target t, by its own rule: the last start leaving it in reach
        k = 0 if t <= 6 else math.ceil((t - 6) / stride)
        start = k * stride
        logits, _, _ = model(data[start:t])
        expected[t - 1] = F.log_softmax(logits[-1].double(), dim=-1).gather(1, data[t].view(-1, 1)).squeeze(1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)  # float32 logits, summed in other orders


def test_reading_in_pieces_gives_the_same_totals_as_reading_at_once() -> None:
    model = tiny(context=8)
    data = ids(61, 1, seed=4)
    whole = WindowReader(model)
    whole.push(data)
    pieces = WindowReader(model, batch_windows=2)
    cuts = sorted(random.Random(0).sample(range(1, 61), 9))
    for a, b in zip([0, *cuts], [*cuts, 61]):
        pieces.push(data[a:b])
        assert pieces.buffer is not None and pieces.buffer.shape[0] <= 8 + 8 + b - a  # constant memory
    (lp_whole, n_whole), (lp_pieces, n_pieces) = whole.totals(), pieces.totals()
    assert n_whole == n_pieces == 60
    assert lp_pieces == pytest.approx(lp_whole, rel=1e-12)
    assert whole.totals() == (lp_whole, n_whole)  # reading the totals consumes nothing


def test_evaluation_scores_the_recurrent_models_characters_with_the_same_metric() -> None:
    model = tiny(context=8)
    val = ids(203, 1, seed=5).view(-1)
    streams = as_streams(val, 8)  # (25, 8): what evaluate_lm reads, for either family
    per_char = windowed_log_probs(model, streams)
    assert per_char.shape == (streams.shape[0] - 1, 8)  # every stream's characters after its first, once
    assert evaluate_lm(model, val, torch.device("cpu")) == pytest.approx(-float(per_char.mean()), rel=1e-6)


def test_scoring_a_text_is_the_same_whatever_the_chunks_and_counts_a_primed_text_whole() -> None:
    model = tiny(context=8)
    text = "abc def ghij. klm nopq rs. " * 4
    a, _ = score_text(model, VOCAB, text, chunk_size=1000)
    b, _ = score_text(model, VOCAB, [text[:5], text[5:40], text[40:]], chunk_size=3)
    assert a.chars == b.chars == len(text) - 1
    assert b.log_prob == pytest.approx(a.log_prob, rel=1e-9)
    primed, _ = score_text(model, VOCAB, text, prime="sea ")
    assert primed.chars == len(text)
    whole = windowed_log_probs(model, torch.tensor(VOCAB.encode("sea " + text)).view(-1, 1))  # targets 1..
    assert primed.log_prob == pytest.approx(float(whole[3:].sum()), rel=1e-9)


# --------------------------------------------------------------------------- generation with the cache


@pytest.mark.parametrize("positions", POSITIONS)
def test_cached_steps_give_the_full_forward_logits_of_the_window_across_slides(positions: str) -> None:
    context = 7
    model = tiny(positions, context=context, conditions=2)
    cond = torch.tensor([1, 0, 1])
    stepper = KVCacheStepper(model, 3, cond)
    uncached = KVCacheStepper(model, 3, cond, cached=False)
    x = ids(40, 3, seed=2)
    window = x[:3]
    got, reference = stepper.prime(window), uncached.prime(window)
    keep = keep_on_slide(context)
    for t in range(3, 40):
        full, _, _ = model(window, condition=cond)  # the full forward over the window, by the documented rule
        torch.testing.assert_close(got, full[-1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(reference, full[-1], rtol=1e-5, atol=1e-5)
        assert torch.equal(stepper.state[0], window.t())
        window = torch.cat([window[len(window) - keep + 1 :] if len(window) == context else window, x[t : t + 1]])
        got, reference = stepper.step(x[t]), uncached.step(x[t])
    assert stepper.slides == uncached.slides >= 4


def test_a_long_prime_keeps_its_last_context() -> None:
    model = tiny(context=8)
    x = ids(20, 2)
    got = KVCacheStepper(model, 2).prime(x)
    full, _, _ = model(x[-8:])
    torch.testing.assert_close(got, full[-1], rtol=1e-5, atol=1e-5)


def test_cached_generation_runs_each_character_once_plus_a_half_window_per_slide() -> None:
    """Flat cost: one position per character, and a re-prime of context/2 positions every context/2 characters."""
    model = tiny(context=8)
    lengths: list[int] = []
    hook = model.embed.register_forward_hook(lambda m, i, o: lengths.append(i[0].shape[1]))  # positions per forward
    "".join(generate(model, VOCAB, prime="abcdef", length=100, seed=0))
    hook.remove()
    keep = keep_on_slide(8)
    assert lengths[0] == 6 and set(lengths[1:]) == {1, keep}
    # 100 steps (one per character drawn); the window (6 after the prime, one more per step) is full after
    # 2 steps, so step 3 slides it to `keep`, and so does every (8 - keep + 1)-th step after that
    assert len(lengths) == 1 + 100
    assert lengths.count(keep) == 1 + (100 - 3) // (8 - keep + 1)
    assert sum(lengths) <= 6 + 100 * (1 + keep / (8 - keep + 1))


@pytest.mark.parametrize("positions", POSITIONS)
def test_seeded_sampling_is_reproducible_and_the_cache_writes_the_uncached_text(positions: str) -> None:
    model = tiny(positions, context=8)
    assert isinstance(make_stepper(model), KVCacheStepper)
    texts = ["".join(generate(model, VOCAB, prime="sea", length=80, seed=s, lean=lean)) for s in (3, 3, 4)
             for lean in (True, False)]
    assert texts[0] == texts[1] == texts[2] == texts[3] and len(texts[0]) == 80
    assert texts[4] == texts[5] != texts[0]


# --------------------------------------------------------------------------- train, resume, sample, score, export


def lm_task(corpus: Path, **options: Any) -> Any:
    return build_task("lm", seed=3, corpus=str(corpus), seq_len=8, batch_size=4, **options)


MODEL = ModelConfig(family="transformer", n_layer=2, n_head=2, d_model=16, context=8, dropout=0.1)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "tale.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.mark.parametrize("batching", ["streams", "windows"])
def test_an_interrupted_transformer_run_resumes_exactly(corpus: Path, tmp_path: Path, batching: str) -> None:
    from test_train import assert_same_run, interrupted_then_resumed, log

    cfg = TrainConfig(steps=8, lr=1e-2, warmup=2, eval_every=4, sample_every=3, log_every=1, seed=5, device="cpu",
                      deterministic=True)
    try:
        fit(lm_task(corpus, batching=batching), MODEL, cfg, tmp_path / "straight")
        interrupted_then_resumed(lambda: lm_task(corpus, batching=batching), cfg, MODEL, tmp_path / "resumed", at=5)
    finally:
        torch.use_deterministic_algorithms(False)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    assert log(tmp_path / "straight", "samples.jsonl") == log(tmp_path / "resumed", "samples.jsonl")
    loaded = checkpoint.load(tmp_path / "resumed")
    assert isinstance(loaded.model, TransformerLM) and loaded.model.head.weight is loaded.model.embed.weight


def test_a_transformer_lm_trains_needs_seq_len_equal_to_its_context(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        fit(lm_task(corpus), ModelConfig(**{**MODEL.to_dict(), "context": 16}), TrainConfig(steps=1, device="cpu"),
            tmp_path / "run")
    assert caught.value.params == ("seq_len", "context")


def test_the_cli_trains_samples_scores_and_exports_a_transformer(corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", "--family", "transformer", "--corpus", str(corpus), "--n-layer", "1",
                                  "--n-head", "2", "--d-model", "16", "--context", "16", "--positions", "rotary",
                                  "--batch-size", "4", "--steps", "6", "--eval-every", "3", "--out", str(run), "-q"])
    assert trained.exit_code == 0, trained.stderr
    config = checkpoint.load_config(run)
    assert config["model"]["family"] == "transformer" and config["task_config"]["options"]["seq_len"] == 16
    args = ["sample", "--model", str(run), "--length", "40", "--seed", "7", "--prime", "Once"]
    first, again = runner.invoke(app, args), runner.invoke(app, args)
    assert first.exit_code == 0, first.stderr
    assert first.stdout == again.stdout and first.stdout.startswith("Once") and len(first.stdout) == 4 + 40 + 1
    scored = runner.invoke(app, ["score", "--model", str(run), "--json", str(corpus)])
    assert scored.exit_code == 0, scored.stderr
    assert '"chars": ' + str(len(TEXT) - 1) in scored.stdout.replace(",\n", ",")
    out = tmp_path / "m.pt"
    exported = runner.invoke(app, ["export", "--model", str(run), "--out", str(out), "--check", TEXT[:60]])
    assert exported.exit_code == 0, exported.stderr
    refused = runner.invoke(app, ["train", "--family", "transformer", "--hidden", "8", "--corpus", str(corpus),
                                  "--out", str(tmp_path / "other")])
    assert refused.exit_code == 2 and "--hidden is not read by --family 'transformer'" in refused.stderr
    beam = runner.invoke(app, ["sample", "--model", str(run), "--beam", "3", "--prime", "Once"])
    assert beam.exit_code == 2 and "leave out --beam" in beam.stderr
    tuned = runner.invoke(app, ["train", "--init-from", str(run), "--corpus", str(corpus), "--batch-size", "4",
                                "--steps", "2", "--eval-every", "2", "--out", str(tmp_path / "tuned"), "-q"])
    assert tuned.exit_code == 0, tuned.stderr  # the parent's context is the fine-tune's seq_len
    assert checkpoint.load_config(tmp_path / "tuned")["task_config"]["options"]["seq_len"] == 16


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("positions", POSITIONS)
def test_the_exported_step_equals_generation_across_slides(positions: str, fmt: str, tmp_path: Path) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    model = tiny(positions, context=8)
    config = {"task": "lm", "model": model.cfg.to_dict(), "vocab": VOCAB.to_json(), "task_config": {"options": {}}}
    loaded = Loaded(tmp_path, config, model, VOCAB)
    out = export(loaded, fmt, tmp_path / "m.pt")
    text = "abc def ghij. klm nopq rs. sea"
    assert max_difference(loaded, out, fmt, text) < 1e-5
    run = load_runner(out, fmt)  # two streams at once (the batch axis is dynamic), against the cached stepper
    stepper = KVCacheStepper(model, 2)
    state: list[Any] = [torch.zeros(2, 8, dtype=torch.long).numpy(), torch.zeros(2, dtype=torch.long).numpy()]
    for t, i in enumerate(VOCAB.encode(text)):
        x = torch.tensor([i, (i + 1) % len(VOCAB)])
        logits, probs, state = run(x.numpy(), state)
        expected = stepper.prime(x.view(1, 2)) if t == 0 else stepper.step(x)
        torch.testing.assert_close(torch.as_tensor(logits), expected, rtol=1e-5, atol=1e-5)
    assert stepper.slides >= 3


@pytest.mark.corpus
def test_a_transformer_name_generator_trains_samples_and_scores(corpus_mirror: Path, tmp_path: Path) -> None:
    from chargen.tasks.generate import conditional_log_probs, sample_names

    task = build_task("generate", seed=1, batch_size=16)
    model_cfg = ModelConfig(family="transformer", n_layer=1, n_head=2, d_model=16, context=24)
    fit(task, model_cfg, TrainConfig(steps=3, eval_every=3, sample_every=3, device="cpu"), tmp_path / "gen")
    loaded = checkpoint.load(tmp_path / "gen", task="generate")
    names = list(sample_names(loaded, lang="Italian", n=5, seed=2))
    assert names == list(sample_names(loaded, lang="Italian", n=5, seed=2)) and len(names) == 5
    logp = conditional_log_probs(loaded.model, loaded.vocab, ["Rossi", "Smith"], 3, torch.device("cpu"))
    assert logp.shape == (2, 3) and bool((logp < 0).all())
    with pytest.raises(UsageError) as caught:
        fit(build_task("generate", seed=1), ModelConfig(**{**model_cfg.to_dict(), "context": 8}),
            TrainConfig(steps=1, device="cpu"), tmp_path / "short")
    assert caught.value.params == ("context",)


@pytest.mark.parametrize(("field", "value", "says"), [
    ("n_layer", 10**6, "n_layer must be an integer"), ("context", "long", "context must be an integer"),
    ("tie_weights", "yes", "tie_weights must be true or false"), ("d_model", 16_384, "make a model of about"),
])
def test_a_crafted_transformer_config_is_refused_naming_the_field(field: str, value: Any, says: str) -> None:
    from chargen import schema

    model = {**ModelConfig(family="transformer", vocab_size=30).to_dict(), field: value}
    with pytest.raises(schema.SchemaError, match=says):
        schema.check_model(model, "model.")


def test_the_train_help_shows_the_transformer_defaults() -> None:
    from chargen.cli.train import TRANSFORMER_HELP_DEFAULTS
    from chargen.models import TRANSFORMER_SETTINGS

    defaults = {k: ModelConfig.__dataclass_fields__[k].default for k in TRANSFORMER_SETTINGS}
    assert TRANSFORMER_HELP_DEFAULTS == {k: ("on" if v else "off") if isinstance(v, bool) else str(v)
                                         for k, v in defaults.items()}
    shown = " ".join(runner.invoke(app, ["train", "--help"], env={"COLUMNS": "300"}).stdout.split())
    assert "Transformer blocks. Default: 4." in shown and "--family" in shown
