"""X-Streamer's Thinker: tokenizer, training, streaming hidden states, bounded context, loading errors."""

from __future__ import annotations

import pytest
import torch

from pipelines.xstreamer.thinker import SPECIALS, Thinker, build_tokenizer, train_thinker
from streamrt.errors import InputError, ParamError

torch.set_num_threads(1)

_THINGS = ["sky", "grass", "sun", "sea", "snow", "coal", "rose", "lemon", "plum", "cloud"]
_COLOURS = ["blue", "green", "yellow", "teal", "white", "black", "red", "sour", "purple", "grey"]
_NAMES = ["anna", "bob", "carl", "dora", "eve", "finn", "gus", "hana", "ivan", "jo"]
PAIRS = [
    (f"what is the colour of the {t}?", f"the {t} is {c}, i think.")
    for t, c in zip(_THINGS, _COLOURS, strict=True)
] + [(f"how old is {n}?", f"{n} is {20 + i} years old!") for i, n in enumerate(_NAMES)]
CONTEXT = 32  # small context: trimming starts after two turns


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("thinker")
    metrics = train_thinker(
        PAIRS,
        out,
        steps=250,
        batch=8,
        lr=3e-3,
        warmup=20,
        max_context=CONTEXT,
        held_out=PAIRS,
        single=0.6,
        dropout=0.0,
    )
    return out, metrics


def test_tokenizer_round_trip(tmp_path):
    from transformers import AutoTokenizer

    tok = build_tokenizer(["Hello there, how are you?", "I don't know!"])
    assert tok.convert_tokens_to_ids(list(SPECIALS)) == list(range(len(SPECIALS)))
    text = "hello there, how are you? i don't know!"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == [
        "hello",
        "there",
        ",",
        "how",
        "are",
        "you",
        "?",
        "i",
        "don't",
        "know",
        "!",
    ]
    assert tok.decode(ids) == text
    assert tok("HELLO There", add_special_tokens=False)["input_ids"] == ids[:2]  # lower-cased
    unk = tok("hello zebra", add_special_tokens=False)["input_ids"]
    assert unk == [ids[0], tok.convert_tokens_to_ids("<unk>")]
    marked = tok("<user> hello <bot> know <eos>", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(marked) == ["<user>", "hello", "<bot>", "know", "<eos>"]
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert again(text, add_special_tokens=False)["input_ids"] == ids
    assert again.decode(ids) == text


def test_training_memorises_pairs(trained):
    out, metrics = trained
    assert metrics["train_accuracy"] == 1.0
    assert metrics["held_out_accuracy"] == 1.0  # held_out = the training pairs here
    assert metrics["held_out_accuracy_in_call"] == 1.0  # all twenty in one call: trimming keeps answers right
    assert metrics["final_loss"] < 0.2
    thinker = Thinker.load(out, max_context=CONTEXT)
    for user, reply in (PAIRS[3], PAIRS[17]):
        thinker.reset()
        steps = thinker.reply(user)
        assert thinker.decode(steps) == reply
        assert steps[-1].done and steps[-1].text == "<eos>" and not any(s.done for s in steps[:-1])


def test_saved_folder_loads_with_plain_transformers(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = trained
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    user, reply = PAIRS[5]
    ids = tok(f"<user> {user} <bot>", add_special_tokens=False)["input_ids"]
    with torch.no_grad():  # plain greedy decoding without a cache
        while ids[-1] != tok.eos_token_id and len(ids) < 40:
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    assert tok.decode(ids, skip_special_tokens=True) == f"{user} {reply}"


def test_streaming_states_equal_teacher_forced(trained):
    out, _ = trained
    live, forced = Thinker.load(out, max_context=CONTEXT), Thinker.load(out, max_context=CONTEXT)
    assert live.hidden_size == 128
    for user, _ in (PAIRS[0], PAIRS[11], PAIRS[7], PAIRS[19]):  # the third and fourth turns are trimmed
        steps = live.reply(user)
        hidden, tokens = forced.reply_states(user, live.decode(steps))
        assert tokens == [s.text for s in steps]
        assert hidden.shape == (len(steps), live.hidden_size)
        assert (torch.stack([s.hidden for s in steps]) - hidden).abs().max() <= 1e-5
        assert forced.context_ids == live.context_ids
    # The states depend on the conversation so far: the same turn in a fresh call gives other states.
    fresh, _ = Thinker.load(out, max_context=CONTEXT).reply_states(PAIRS[19][0], PAIRS[19][1])
    assert (fresh - hidden).abs().max() > 1e-3


def test_context_stays_bounded_over_a_long_call(trained):
    out, _ = trained
    thinker = Thinker.load(out, max_context=CONTEXT)
    user_id = thinker.tokenizer.convert_tokens_to_ids("<user>")
    longest = 0
    for turn in range(60):
        user, reply = PAIRS[(turn * 7) % len(PAIRS)]
        thinker.start_turn(user)
        assert thinker.context_tokens <= CONTEXT
        assert thinker.context_ids[0] == user_id  # trimmed at a turn boundary
        steps = [thinker.step()]
        while not steps[-1].done:
            steps.append(thinker.step())
        longest = max(longest, thinker.context_tokens)
        assert thinker.decode(steps) == reply  # still answers right after many trims
    assert CONTEXT < longest <= CONTEXT + thinker.max_reply
    # an over-long user turn keeps its latest words and still fits
    thinker.start_turn(" ".join(["sky"] * 200) + " how old is bob?")
    assert thinker.context_tokens <= CONTEXT and thinker.context_ids[0] == user_id
    assert thinker.tokenizer.decode(thinker.context_ids[-6:]) == "how old is bob? <bot>"


def test_step_needs_a_turn(trained):
    thinker = Thinker.load(trained[0], max_context=CONTEXT)
    with pytest.raises(ParamError, match="start_turn"):
        thinker.step()
    thinker.reply(PAIRS[0][0])
    with pytest.raises(ParamError, match="start_turn"):
        thinker.step()  # the reply is finished
    with pytest.raises(InputError, match="empty"):
        thinker.start_turn("   ")
    with pytest.raises(ParamError, match="positions"):
        Thinker.load(trained[0], max_context=CONTEXT + 1)  # 33 + 64 > 96 positions


def test_not_a_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not exist.*train_thinker"):
        Thinker.load(tmp_path / "missing")
    with pytest.raises(InputError, match="not a model folder.*train_thinker"):
        Thinker.load(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(InputError, match="safetensors"):
        Thinker.load(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match="could not load"):
        Thinker.load(tmp_path)


def _generic_model(folder):
    """A tiny random GPT-2 with a byte-level BPE tokenizer (no <user>/<bot>): the generic prompt format."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False)
    bpe.train_from_iterator(["User: hello there\nAssistant: hi, how are you?\n"] * 4, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=96, n_embd=32, n_layer=2, n_head=2, eos_token_id=0)
    model = GPT2LMHeadModel(cfg)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model, tok


def test_generic_model_prompt_format_and_newline_stop(tmp_path):
    _, tok = _generic_model(tmp_path)
    live, forced = Thinker.load(tmp_path, max_context=32), Thinker.load(tmp_path, max_context=32)
    live.start_turn("hello there")
    assert tok.decode(live.context_ids) == "User: hello there\nAssistant:"
    steps = [live.step() for _ in range(5)]
    with torch.no_grad():  # streaming with the cache = one pass over the whole context without it
        full = live.model(torch.tensor([live.context_ids]), output_hidden_states=True).hidden_states[-1][0]
    assert (torch.stack([s.hidden for s in steps]) - full[-5:]).abs().max() <= 1e-5
    hidden, tokens = forced.reply_states("hello there", "hi, how are you?")
    assert (
        "".join(tokens) == " hi, how are you?\n"
    )  # the reply follows "Assistant:" and ends with its newline
    assert tok.decode(forced.context_ids) == "User: hello there\nAssistant: hi, how are you?\n"
    assert hidden.shape == (len(tokens), 32)
    # Force the newline: zero the final norm's gain and point its bias at the newline's (tied) embedding row.
    newline = tok("\n", add_special_tokens=False)["input_ids"][-1]
    with torch.no_grad():
        live.model.transformer.ln_f.weight.zero_()
        live.model.transformer.ln_f.bias.copy_(live.model.transformer.wte.weight[newline] * 100)
    live.reset()
    steps = live.reply("hello there")
    assert [s.token_id for s in steps] == [newline] and steps[0].done
    live.start_turn("hello")  # the last reply ended with a newline: no extra one before "User:"
    assert tok.decode(live.context_ids) == "User: hello there\nAssistant:\nUser: hello\nAssistant:"
