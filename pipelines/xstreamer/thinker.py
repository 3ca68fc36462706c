"""X-Streamer's Thinker: the causal language model that reads the user's turn and writes the character's reply.

The paper's Thinker is a frozen pretrained speech-language model whose hidden states condition the Actor. Here any
local Hugging Face causal LM can play that part (``AutoModelForCausalLM`` + ``AutoTokenizer``, local files only,
safetensors only); the default is a tiny GPT-2 that :func:`train_thinker` trains on the project's synthetic dialogue.

What the Actor sees. Each generated token comes with the Thinker's *last-layer hidden state at that token's own
position* (for GPT-2 the output of the final layer norm, the vector the LM head reads), computed when the token is fed
back into the model. It therefore encodes the token itself and everything before it, and it exists as soon as the
token does: the streaming path pays exactly one forward pass per token, and the Actor never waits for the next one.
:meth:`Thinker.reply_states` computes the same vectors teacher-forced (one pass over prompt + reply), so the Actor's
training data are the states it will meet when streaming.

Prompt format. The default model has its own special tokens: a turn is ``<user> {text} <bot> {reply} <eos>``. A
generic model without them gets ``User: {text}\\nAssistant:`` and its reply stops at a newline or at its eos token.

Bounded context. The conversation lives in one token list with a KV cache over it. At the start of each turn, when the
list would pass ``max_context`` tokens, the oldest whole turns are dropped and the rest is re-encoded (absolute
positions make a rolling cache impossible for GPT-2), so an hour-long call costs the same per token as its first minute.
A reply is at most ``max_reply`` tokens, and ``max_context + max_reply`` fits the model's positions.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from streamrt.errors import InputError, ParamError

log = logging.getLogger(__name__)

SPECIALS = ("<pad>", "<unk>", "<user>", "<bot>", "<eos>")
PAD, UNK, USER, BOT, EOS = range(len(SPECIALS))  # ids of the specials in a tokenizer from build_tokenizer

MAX_CONTEXT = 192  # conversation tokens kept at the start of a turn
MAX_REPLY = 64  # tokens of one reply; 192 + 64 = the default model's 256 positions
# Words (keeping inner apostrophes: "don't" is one word) or single punctuation marks.
_WORD_PATTERN = r"\w+(?:['’]\w+)*|[^\w\s]"


# ---------------------------------------------------------------------------------------------------------- tokenizer
def _word_level(vocab: dict[str, int]):
    """The word-level tokenizers pipeline: NFKC + lower case, split on spaces then into words and punctuation."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(_WORD_PATTERN), behavior="isolated")]
    )
    # WordPiece's decoder joins words with spaces and its cleanup glues punctuation back on ("you ?" -> "you?").
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return tok


def build_tokenizer(texts: Iterable[str]):
    """A word-level tokenizer over ``texts``: the specials (ids 0-4), then words by falling frequency.

    Word level because the corpus is small and synthetic: every word is one token, so the Actor's text tokens are whole
    words and a reply's length in tokens is predictable. Unknown words become ``<unk>``. The result is a transformers
    ``PreTrainedTokenizerFast`` that ``save_pretrained`` writes and ``AutoTokenizer`` reads back.
    """
    from transformers import PreTrainedTokenizerFast

    splitter = _word_level({s: i for i, s in enumerate(SPECIALS)})
    counts: Counter[str] = Counter()
    for text in texts:
        norm = splitter.normalizer.normalize_str(text)
        counts.update(w for w, _ in splitter.pre_tokenizer.pre_tokenize_str(norm))
    words = sorted(
        (w for w in counts if w not in SPECIALS), key=lambda w: (-counts[w], w)
    )  # deterministic order
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    vocab.update({w: len(SPECIALS) + i for i, w in enumerate(words)})
    return PreTrainedTokenizerFast(
        tokenizer_object=_word_level(vocab),
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<eos>",
        additional_special_tokens=["<user>", "<bot>"],
    )


# ------------------------------------------------------------------------------------------------------ prompt format
class _Format:
    """How turns become token ids: the default model's specials, or the generic ``User:/Assistant:`` text format."""

    def __init__(self, tokenizer) -> None:
        self.tok = tokenizer
        vocab = tokenizer.get_vocab()
        self.native = all(s in vocab for s in ("<user>", "<bot>", "<eos>"))
        if self.native:
            self.user, self.bot, self.eos = (vocab[s] for s in ("<user>", "<bot>", "<eos>"))
            self.head: list[int] = []
        else:
            self.eos = tokenizer.eos_token_id
            # Models whose BOS differs from EOS (Llama-like) expect it first; it stays at the head of every context.
            bos = tokenizer.bos_token_id
            self.head = [bos] if bos is not None and bos != self.eos else []

    def encode(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def user_turn(self, text: str, needs_newline: bool, limit: int) -> list[int]:
        """The ids that open a reply to ``text``; the oldest words are dropped if the turn alone passes ``limit``."""
        if self.native:
            prefix, body, suffix = [self.user], self.encode(text), [self.bot]
        else:
            prefix = self.encode(("\n" if needs_newline else "") + "User:")
            body, suffix = self.encode(" " + text.strip()), self.encode("\nAssistant:")
        keep = max(0, limit - len(prefix) - len(suffix))
        return prefix + body[len(body) - keep :] + suffix

    def reply_ids(self, text: str) -> list[int]:
        """A complete reply, its stop token included (what streaming ends with)."""
        if self.native:
            return self.encode(text) + [self.eos]
        return self.encode(" " + text.strip()) + self.encode("\n")

    def is_stop(self, token_id: int) -> bool:
        if token_id == self.eos:
            return True
        return not self.native and "\n" in self.tok.decode([token_id])

    def token_text(self, token_id: int) -> str:
        if self.native:
            return self.tok.convert_ids_to_tokens(token_id)
        return self.tok.decode([token_id])  # keeps the leading space of a BPE piece


# ------------------------------------------------------------------------------------------------------------ Thinker
@dataclass(frozen=True)
class ThinkerStep:
    """One generated reply token and the hidden state the Actor cross-attends to.

    ``hidden`` (hidden_size,) is the last layer's hidden state at this token's position; ``done`` marks the reply's
    last step (the stop token, or the reply length limit).
    """

    token_id: int
    text: str
    hidden: torch.Tensor
    done: bool


def _cache_argument(model) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache``; accept models written for either."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _positions(config) -> int:
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 30  # relative positions (RoPE): no table to run off


class Thinker:
    """Greedy streaming reply generation with a KV cache, exposing a hidden state per generated token."""

    def __init__(
        self, model, tokenizer, *, max_context: int = MAX_CONTEXT, max_reply: int = MAX_REPLY
    ) -> None:
        positions = _positions(model.config)
        if max_context < 8 or max_reply < 1 or max_context + max_reply > positions:
            raise ParamError(
                f"max_context={max_context} + max_reply={max_reply} must fit the model's {positions} positions "
                "(max_context >= 8, max_reply >= 1); lower one of them"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_context, self.max_reply = max_context, max_reply
        self.hidden_size: int = int(model.config.hidden_size)
        self.device = next(model.parameters()).device
        self._fmt = _Format(tokenizer)
        # Ids that are markup, not words (the Actor's text slots and a transcript leave them out).
        self.special_ids: frozenset[int] = frozenset(int(i) for i in tokenizer.all_special_ids)
        self._cache_arg = _cache_argument(model)
        self.reset()

    @classmethod
    def load(
        cls,
        folder: str | Path,
        device: str = "cpu",
        *,
        max_context: int = MAX_CONTEXT,
        max_reply: int = MAX_REPLY,
    ) -> Thinker:
        """A Thinker from a local model folder (config.json + safetensors weights + tokenizer files)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(folder)
        fix = (
            "pass a folder holding a Hugging Face causal LM (config.json, model.safetensors and tokenizer files), "
            "e.g. one written by pipelines.xstreamer.thinker.train_thinker"
        )
        if not path.is_dir():
            raise InputError(f"Thinker model folder {str(path)!r} does not exist; {fix}")
        if not (path / "config.json").is_file():
            raise InputError(f"{str(path)!r} is not a model folder (no config.json); {fix}")
        if not any(path.glob("*.safetensors")):
            raise InputError(f"{str(path)!r} has no safetensors weights (only safetensors are loaded); {fix}")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(
                path, local_files_only=True, use_safetensors=True, dtype=torch.float32
            )
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"could not load the Thinker from {str(path)!r} ({exc}); {fix}") from exc
        return cls(model.to(device), tokenizer, max_context=max_context, max_reply=max_reply)

    # -------------------------------------------------------------------------------------------------- conversation
    def reset(self) -> None:
        """A new call: the conversation context and its cache are dropped (weights kept)."""
        self._ids: list[int] = list(self._fmt.head)  # the conversation, all of it in the cache
        self._turns: list[int] = []  # offsets in _ids where user turns start (where trimming may cut)
        self._cache: Any = None
        self._logits: torch.Tensor | None = None  # next-token logits after the last fed token
        self._reply_len = 0
        self._replying = False

    @property
    def context_tokens(self) -> int:
        """Tokens in the conversation context (and the KV cache) now."""
        return len(self._ids)

    @property
    def context_ids(self) -> list[int]:
        return list(self._ids)

    def _open_turn(self, user_text: str) -> tuple[list[int], list[int], bool]:
        """(context, turn starts) for a new user turn, trimmed to max_context; and whether the old prefix survives."""
        head = len(self._fmt.head)
        needs_newline = (
            bool(self._ids[head:]) and not self._fmt.native and not self._fmt.is_stop(self._ids[-1])
        )
        turn = self._fmt.user_turn(user_text, needs_newline, self.max_context - head)
        ids, starts = self._ids + turn, [*self._turns, len(self._ids)]
        if len(ids) <= self.max_context:
            return ids, starts, True
        # Drop the oldest whole turns: the earliest turn start that leaves at most max_context tokens (the new turn
        # alone always fits, user_turn saw to that). The head (a BOS) stays, like an attention sink.
        cut = next(s for s in starts if head + len(ids) - s <= self.max_context)
        kept = self._fmt.head + ids[cut:]
        return kept, [s - cut + head for s in starts if s >= cut], False

    def _feed(self, ids: list[int]) -> torch.Tensor:
        """Run ``ids`` through the model on top of the cache; returns the last layer's hidden states (n, hidden)."""
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        with torch.no_grad():
            out = self.model(x, use_cache=True, output_hidden_states=True, **{self._cache_arg: self._cache})
        cache = out.get("cache", None)
        self._cache = cache if cache is not None else out.get("past_key_values", None)
        self._logits = out.logits[0, -1]
        self._ids.extend(ids)
        return out.hidden_states[-1][0]

    def start_turn(self, user_text: str) -> None:
        """Append the user's turn to the context (an unfinished reply stays as it was: the user barged in)."""
        if not isinstance(user_text, str) or not user_text.strip():
            raise InputError("the user's turn is empty; pass the text the user said")
        ids, starts, keep_prefix = self._open_turn(user_text)
        new = ids[len(self._ids) :]
        if not keep_prefix:  # trimmed: re-encode the kept context from scratch
            log.debug("thinker context trimmed to %d tokens", len(ids))
            self._ids, self._cache, new = [], None, ids
        self._feed(new)
        self._turns = starts
        self._reply_len, self._replying = 0, True

    def step(self) -> ThinkerStep:
        """Generate one reply token (greedy) and feed it back, exposing its hidden state."""
        if not self._replying:
            raise ParamError("no reply in progress; call start_turn(user_text) first (or reply(user_text))")
        assert self._logits is not None
        token = int(self._logits.argmax())
        hidden = self._feed([token])[-1].clone()
        self._reply_len += 1
        done = self._fmt.is_stop(token) or self._reply_len >= self.max_reply
        self._replying = not done
        return ThinkerStep(token, self._fmt.token_text(token), hidden, done)

    def reply(self, user_text: str, max_tokens: int = 48) -> list[ThinkerStep]:
        """A whole reply, at most ``max_tokens`` steps; the last step is marked ``done`` even when cut short."""
        if max_tokens < 1:
            raise ParamError(f"max_tokens must be at least 1, got {max_tokens}")
        self.start_turn(user_text)
        steps: list[ThinkerStep] = []
        while self._replying and len(steps) < max_tokens:
            steps.append(self.step())
        if not steps[-1].done:
            steps[-1] = replace(steps[-1], done=True)
            self._replying = False
        return steps

    def reply_states(self, user_text: str, reply_text: str) -> tuple[torch.Tensor, list[str]]:
        """Teacher-forced: the hidden states (L, hidden_size) streaming would expose for ``reply_text``, and its tokens.

        Same prompt format and the same (trimmed) context as :meth:`start_turn`; the reply includes its stop token and
        is cut at ``max_reply`` tokens, like a streamed one. The conversation advances as if the Thinker had said it,
        so a dialogue's turns fed in order give each turn the context it would have had live.
        """
        if not isinstance(reply_text, str) or not reply_text.strip():
            raise InputError("the reply is empty; pass the text the character says")
        if not isinstance(user_text, str) or not user_text.strip():
            raise InputError("the user's turn is empty; pass the text the user said")
        ids, starts, _ = self._open_turn(user_text)
        reply = self._fmt.reply_ids(reply_text)[: self.max_reply]
        self._ids, self._cache = [], None
        hidden = self._feed(ids + reply)[
            len(ids) :
        ].clone()  # (L, hidden): states at the reply's own positions
        self._turns, self._reply_len, self._replying = starts, len(reply), False
        return hidden, [self._fmt.token_text(t) for t in reply]

    def decode(self, steps: Sequence[ThinkerStep]) -> str:
        """The reply text of ``steps`` (stop tokens left out)."""
        return self.tokenizer.decode([s.token_id for s in steps], skip_special_tokens=True).strip()


# ----------------------------------------------------------------------------------------------------------- training
def _encode_pairs(tok, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    fmt = _Format(tok)
    return [(fmt.user_turn(u, False, 1 << 30), fmt.reply_ids(r)) for u, r in pairs]


def _conversation(
    rng: random.Random, encoded: list[tuple[list[int], list[int]]], budget: int, max_len: int
) -> tuple[list[int], list[int]]:
    """Random whole turns packed up to ``budget`` tokens (at least one turn); labels only on reply tokens.

    Packing several turns teaches the model to answer the *last* user turn wherever it sits in the context and
    whatever came before, which is what it meets in a long call (absolute positions up to max_context + max_reply).
    """
    ids: list[int] = []
    labels: list[int] = []
    while True:
        user, reply = encoded[rng.randrange(len(encoded))]
        turn = (user + reply)[:max_len]
        if ids and len(ids) + len(turn) > budget:
            break
        ids += turn
        labels += [-100] * len(user) + turn[len(user) :]
        if len(ids) >= budget:
            break
    return ids[:max_len], labels[:max_len]


def _accuracy(thinker: Thinker, pairs: Sequence[tuple[str, str]], *, in_call: bool) -> float:
    """Exact-reply accuracy: the greedy reply's token ids equal the reference's (stop token included)."""
    if not pairs:
        return float("nan")
    hits = 0
    thinker.reset()
    for user, reply in pairs:
        if not in_call:
            thinker.reset()
        got = [s.token_id for s in thinker.reply(user, max_tokens=thinker.max_reply)]
        hits += got == thinker._fmt.reply_ids(reply)[: thinker.max_reply]
    return hits / len(pairs)


def train_thinker(
    pairs: Sequence[tuple[str, str]],
    out: str | Path,
    *,
    steps: int = 2000,
    batch: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = False,
    held_out: Sequence[tuple[str, str]] = (),
    max_context: int = MAX_CONTEXT,
    warmup: int = 100,
    single: float = 0.5,
    dropout: float = 0.1,
) -> dict[str, Any]:
    """Train the default Thinker (a 4-layer, 128-wide GPT-2) on (user, reply) pairs and save it to ``out``.

    Sequences are ``<user> {user} <bot> {reply} <eos>`` turns with the loss on reply tokens only (the Thinker is never
    asked to write the user's side): a fraction ``single`` of the batches hold one turn each, the others random
    conversations packed up to a random length (so that replies deep in a long call are trained too). ``dropout``
    (GPT-2's three) helps the held-out phrasings; a memorisation test sets it to 0. AdamW, linear warm-up then cosine decay to 10 %.
    Writes model.safetensors + config.json + tokenizer files (``save_pretrained``) and train_metrics.json. Returns
    the final loss (mean of the last 50 steps), exact-reply accuracy on ``held_out`` (fresh call per pair, and all in
    one long call), on up to 200 training pairs, and the seconds taken.
    """
    from tqdm.auto import tqdm
    from transformers import GPT2Config, GPT2LMHeadModel

    if not pairs:
        raise ParamError("train_thinker needs (user, reply) pairs; got none")
    if steps < 1 or batch < 1 or lr <= 0:
        raise ParamError(f"steps, batch and lr must be positive; got steps={steps}, batch={batch}, lr={lr}")
    t0 = time.perf_counter()
    rng = random.Random(seed)
    tok = build_tokenizer(t for pair in pairs for t in pair)
    encoded = _encode_pairs(tok, pairs)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=max_context + MAX_REPLY,
        n_embd=128,
        n_layer=4,
        n_head=4,
        bos_token_id=EOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
    )
    with torch.random.fork_rng():  # seeded initialisation without touching the caller's global RNG
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)

    def lr_at(i: int) -> float:
        if i < warmup:
            return (i + 1) / warmup
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (i - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    max_len = config.n_positions
    losses: list[float] = []
    with torch.random.fork_rng():
        torch.manual_seed(seed + 1)  # dropout masks
        for _ in tqdm(range(steps), desc="thinker", disable=not progress):
            # One length budget per batch keeps padding low. Half the batches are single turns (most of the
            # signal per token); the rest are conversations up to the longest context a call reaches.
            budget = 0 if rng.random() < single else rng.randint(1, max_len)
            convs = [_conversation(rng, encoded, budget, max_len) for _ in range(batch)]
            width = max(len(ids) for ids, _ in convs)
            x = torch.full((batch, width), PAD, dtype=torch.long)
            y = torch.full((batch, width), -100, dtype=torch.long)
            mask = torch.zeros(batch, width, dtype=torch.long)
            for b, (ids, labels) in enumerate(convs):  # right padding: causal attention never sees it
                x[b, : len(ids)], y[b, : len(ids)], mask[b, : len(ids)] = (
                    torch.tensor(ids),
                    torch.tensor(labels),
                    1,
                )
            loss = model(input_ids=x, attention_mask=mask, labels=y).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
    model.eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    train_seconds = time.perf_counter() - t0

    thinker = Thinker.load(out, max_context=max_context)
    metrics: dict[str, Any] = {
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "held_out_accuracy": _accuracy(thinker, held_out, in_call=False),
        "held_out_accuracy_in_call": _accuracy(thinker, held_out, in_call=True),
        "train_accuracy": _accuracy(thinker, list(pairs)[:200], in_call=False),
        "train_seconds": train_seconds,
        "seconds": time.perf_counter() - t0,
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "seed": seed,
        "pairs": len(pairs),
        "held_out_pairs": len(held_out),
        "vocab": len(tok),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    (out / "train_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("thinker trained: %s", metrics)
    return metrics
