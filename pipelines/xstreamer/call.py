"""One conversation with a talking character: the Thinker, the Actor's stream and both decoders on one clock.

The media clock is the Actor's chunk index: chunk k covers video frames [8k, 8k + 8) and audio samples
[5120k, 5120k + 5120) (at 25 fps and 16 kHz). A user turn is answered by the Thinker at once (a tiny LM takes
milliseconds per token); its hidden states become visible to the chunks that enter the Actor's window from then on
(``visible_from_chunk``), which is what "Thinker states up to its own time" means here. Chunks already in the window
cannot see them, so the reply starts at the earliest ``levels`` chunks later: that is the Actor's share of the
response latency, reported by the bench.

Between replies the Actor keeps generating: the character listens (silence, blinks, small head motion) for as long
as the call lasts. A reply is over when the Actor has spoken its words (it emits the words it speaks as text tokens
in the chunk where each starts) or, failing that, after a generous deadline derived from the reply's length.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from pipelines.xstreamer.actor_stream import ActorStream
from pipelines.xstreamer.model import FPS, SAMPLE_RATE, XStreamerModel
from pipelines.xstreamer.thinker import Thinker
from streamrt.errors import InputError

log = logging.getLogger(__name__)

MAX_PENDING_TURNS = 8  # bounded: a client that floods turns gets an error, not a growing queue
MAX_TURN_CHARS = 300
SECONDS_PER_WORD = 0.5  # the deadline's allowance; espeak speaks ~0.3-0.4 s per word at the training speed


@dataclass(frozen=True)
class CallChunk:
    index: int
    frames: torch.Tensor  # (8, 3, H, W) float in [0, 1]
    audio: torch.Tensor  # (samples,) float in [-1, 1]
    words: list[str]  # the words the Actor says it starts in this chunk
    speaking: bool  # a reply was in progress during this chunk


@dataclass
class _Reply:
    text: str
    words: list[str]
    first_chunk: int  # first chunk that may see the Thinker's states
    deadline: int  # last chunk of the reply, at the latest
    spoken: int = 0
    emitted: list[str] = field(default_factory=list)  # the words the Actor said it started (bounded below)
    said_at: float = 0.0  # perf_counter when the user's turn ended
    first_audio_s: float | None = None  # wall seconds from the turn to the reply's first voiced chunk
    first_audio_chunk: int | None = None


class Call:
    """The per-stream engine behind the generator and the script render."""

    def __init__(
        self,
        model: XStreamerModel,
        thinker: Thinker,
        portrait: torch.Tensor,
        *,
        seed: int = 0,
        temperature: float = 0.0,
        max_reply_tokens: int = 32,
        voiced_rms: float = 0.02,
    ) -> None:
        self.model = model
        self.thinker = thinker
        self.max_reply_tokens = max_reply_tokens
        self.voiced_rms = voiced_rms
        self.chunk_frames = model.actor.cfg.chunk_frames
        self.samples_per_chunk = round(self.chunk_frames * SAMPLE_RATE / FPS)
        self.stream = ActorStream(model.actor, seed=seed, temperature=temperature)
        with torch.no_grad():
            self.portrait_latent = model.frames.encode(portrait[None].float())[0]
        self.stream.reset(self.portrait_latent)
        self.decoder = model.audio_codec.stream_decoder()
        self.pending: deque[str] = deque()
        self.reply: _Reply | None = None
        self.finished: list[_Reply] = []  # bounded below
        self.chunks = 0

    # ------------------------------------------------------------------ turns
    def say(self, text: str) -> None:
        """Queue a user turn; it is answered as soon as the current reply is over."""
        text = " ".join(str(text).split())
        if not text:
            raise InputError("an empty user turn; type something to say")
        if len(text) > MAX_TURN_CHARS:
            raise InputError(f"a user turn has at most {MAX_TURN_CHARS} characters; got {len(text)}")
        if len(self.pending) >= MAX_PENDING_TURNS:
            raise InputError(
                f"{MAX_PENDING_TURNS} turns are already waiting; wait for the character to answer"
            )
        self.pending.append(text)
        if self.reply is None:
            self._answer_next()

    @property
    def speaking(self) -> bool:
        return self.reply is not None or bool(self.pending)

    def _answer_next(self) -> None:
        text = self.pending.popleft()
        said_at = time.perf_counter()
        self.thinker.start_turn(text)
        steps = []
        for _ in range(self.max_reply_tokens):
            step = self.thinker.step()
            steps.append(step)  # the stop token's state too: the Actor was trained with it (``reply_states``)
            if step.done:
                break
        words = [s.text for s in steps if not s.done and any(c.isalnum() for c in s.text)]
        first = self.stream.next_chunk_index
        self.stream.clear_thinker()  # the previous reply is over: its states go, memory stays bounded
        if steps:
            hidden = torch.stack([s.hidden for s in steps])
            self.stream.add_thinker_states(hidden, visible_from_chunk=first)
        levels = self.model.actor.cfg.levels
        seconds = SECONDS_PER_WORD * len(words) + 0.6
        deadline = first + levels + math.ceil(seconds * FPS / self.chunk_frames)
        text = " ".join(s.text for s in steps if not s.done)
        self.reply = _Reply(text, words, first, deadline, said_at=said_at)
        log.info("turn %r -> reply %r (chunks %d..%d)", text, self.reply.text, first, deadline)

    # ------------------------------------------------------------------ media
    @torch.no_grad()
    def next_chunk(self) -> CallChunk:
        """Generate the next chunk of the call (video frames + audio), on the media clock."""
        chunk = None
        while chunk is None:  # the first few steps only fill the Actor's window
            chunk = self.stream.step()
        frames = self.model.frames.decode(chunk.video.float())
        audio = self.decoder.push(chunk.audio[None])[0]
        words = self._words_of(chunk.text)
        speaking = self.reply is not None and chunk.index >= self.reply.first_chunk
        if self.reply is not None and chunk.index >= self.reply.first_chunk:
            self._track_reply(chunk.index, words, audio)
        self.chunks += 1
        return CallChunk(chunk.index, frames, audio, words, speaking)

    def _words_of(self, tokens: torch.Tensor) -> list[str]:
        tok = self.thinker.tokenizer
        skip = self.thinker.special_ids
        ids = [int(t) for t in tokens if int(t) not in skip and int(t) < len(tok)]
        return [tok.convert_ids_to_tokens(i) for i in ids]

    def _track_reply(self, index: int, words: list[str], audio: torch.Tensor) -> None:
        r = self.reply
        assert r is not None
        r.spoken += len(words)
        r.emitted = (r.emitted + words)[: 2 * len(r.words) + 8]
        voiced = float(audio.pow(2).mean().sqrt()) > self.voiced_rms
        if voiced and r.first_audio_s is None:
            r.first_audio_s = time.perf_counter() - r.said_at
            r.first_audio_chunk = index
        done_speaking = r.spoken >= len(r.words) and not words and not voiced
        if done_speaking or index >= r.deadline:
            self.finished.append(r)
            del self.finished[:-64]
            self.reply = None
            if self.pending:
                self._answer_next()

    def reset(self) -> None:
        self.thinker.reset()
        self.stream.reset(self.portrait_latent)
        self.decoder.reset()
        self.pending.clear()
        self.reply = None
        self.chunks = 0
