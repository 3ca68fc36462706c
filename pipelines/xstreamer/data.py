"""The Actor's training data: synthetic calls cut into windows of chunks, with per-chunk targets.

A *call segment* is what the Actor sees around one reply: ``idle`` listening chunks, then the talking clip (a short
silence, the spoken reply, a tail of silence), padded to whole chunks with more listening. Every segment is stored
as tensors ready to cut:

- ``latents`` (F, 4, 16, 16): the frame codec's latents of every frame;
- ``codes`` (2F, 4): the audio codec's tokens (two 20-ms steps per 40-ms frame);
- ``text`` (F / 8, slots): per chunk, the Thinker ids of the words whose spoken onset falls in that chunk, PAD-filled
  (the Actor learns to say which word it is starting, and reads its own past words back from the cache);
- ``thinker`` (L, D): the Thinker's hidden states for the reply, as the streaming Thinker exposes them;
- ``visible_chunk``: the first chunk allowed to see them (the chunk in which the user's turn ended).

A training sample is a window of ``C`` consecutive chunks of one segment with the segment's portrait; its
``first_chunk`` is shifted by a random offset so the model meets the absolute positions of long calls.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from pipelines.xstreamer.actor import ActorBatch

FRAME_SAMPLES = 640
STEPS_PER_FRAME = 2


@dataclass
class Segment:
    portrait: torch.Tensor  # (4, 16, 16) latent of the character's portrait
    latents: torch.Tensor  # (F, 4, 16, 16) fp16
    codes: torch.Tensor  # (2F, 4) long
    text: torch.Tensor  # (F / chunk_frames, slots) long
    thinker: torch.Tensor  # (L, D)
    visible_chunk: int
    mouth: torch.Tensor | None = None  # (F, 2) the mouth's (x, y) per frame in latent cells

    @property
    def chunks(self) -> int:
        return int(self.text.shape[0])


def word_chunks(
    onsets: list[tuple[float, int]], chunks: int, chunk_s: float, slots: int, pad: int
) -> torch.Tensor:
    """(chunks, slots) ids: each word id in the chunk that holds its onset (seconds); extra words in a full chunk go
    to the next chunk with room (speech at ~3 words/s leaves room: 4 slots per 320 ms)."""
    out = torch.full((chunks, slots), pad, dtype=torch.long)
    fill = [0] * chunks
    for t, token in sorted(onsets):
        k = min(chunks - 1, max(0, int(t / chunk_s)))
        while k < chunks and fill[k] >= slots:
            k += 1
        if k >= chunks:
            break
        out[k, fill[k]] = token
        fill[k] += 1
    return out


def sample_batch(
    segments: list[Segment],
    batch: int,
    chunks: int,
    chunk_frames: int,
    silence: torch.Tensor,
    rng: random.Random,
    max_offset: int = 2000,
) -> ActorBatch:
    """A batch of ``chunks``-chunk windows from random segments (every segment must have at least ``chunks``)."""
    picks = [segments[rng.randrange(len(segments))] for _ in range(batch)]
    starts = [rng.randrange(s.chunks - chunks + 1) for s in picks]
    f = chunk_frames
    video = torch.stack(
        [s.latents[w * f : (w + chunks) * f] for s, w in zip(picks, starts, strict=True)]
    ).float()
    audio = torch.stack(
        [
            s.codes[w * f * STEPS_PER_FRAME : (w + chunks) * f * STEPS_PER_FRAME]
            for s, w in zip(picks, starts, strict=True)
        ]
    )
    text = torch.stack([s.text[w : w + chunks] for s, w in zip(picks, starts, strict=True)])
    length = max(s.thinker.shape[0] for s in picks)
    dim = picks[0].thinker.shape[1]
    thinker = torch.zeros(batch, max(1, length), dim)
    thinker_chunk = torch.full((batch, max(1, length)), 1 << 30, dtype=torch.long)  # padding: never visible
    for i, (s, w) in enumerate(zip(picks, starts, strict=True)):
        n = s.thinker.shape[0]
        thinker[i, :n] = s.thinker
        thinker_chunk[i, :n] = s.visible_chunk - w  # relative to the window's first chunk
    mouth = None
    if all(s.mouth is not None for s in picks):
        mouth = torch.stack([s.mouth[w * f : (w + chunks) * f] for s, w in zip(picks, starts, strict=True)])
        mouth = mouth.view(batch, chunks, f, 2)
    return ActorBatch(
        video=video.view(batch, chunks, f, *video.shape[2:]),
        audio=audio.view(batch, chunks, f * STEPS_PER_FRAME, -1),
        text=text,
        portrait=torch.stack([s.portrait for s in picks]).float(),
        silence=silence,
        thinker=thinker,
        thinker_chunk=thinker_chunk,
        first_chunk=torch.tensor([rng.randrange(max_offset) for _ in range(batch)], dtype=torch.long),
        mouth=mouth,
    )
