"""The model card of an X-Streamer folder (README.md), from its ``metrics.json``."""

from __future__ import annotations

from pathlib import Path


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table(d: dict) -> str:
    return "\n".join(f"| {k} | {_fmt(v)} |" for k, v in d.items() if not isinstance(v, dict))


def write_card(folder: Path, metrics: dict) -> None:
    size = sum(f.stat().st_size for f in folder.rglob("*.safetensors"))
    t = metrics.get("timings", {})
    top = {k: v for k, v in metrics.items() if not isinstance(v, dict) and k not in ("command",)}
    text = f"""# xstreamer-tiny

X-Streamer's embedded default: a talking character from one portrait. The user's text goes to the **Thinker** (a
tiny GPT-2, `thinker/`, a plain Hugging Face folder), whose per-token hidden states condition the **Actor**, a
chunk-wise autoregressive diffusion transformer that emits, per 320-ms chunk, the words it starts (text tokens), 16
steps of audio-codec tokens (4 FSQ groups each) and 8 frames of video latents; the audio codec and the frame
autoencoder decode them. Random weights are never a default: this folder is what `streamrt train xstreamer` writes.

## Data (all synthesised offline by the recipe)

- Dialogue: `streamrt.dialogue` (templated turns and replies; held-out phrasings for evaluation).
- Speech: each reply spoken by espeak-ng in several English voices (`streamrt.speech_timing`), with exact word and
  phoneme timing from espeak-ng's own synthesis events.
- Faces: procedural portraits (`streamrt.faces`) whose mouth follows the phonemes and the sound, with blinks and head
  motion (`streamrt.talking_clips`); the reference portrait is the character's neutral frame; evaluation portraits
  (`portraits/`) are held-out characters.

## Command

```
{metrics.get("command", "streamrt train xstreamer")}
```

Device: {metrics.get("device")}, {metrics.get("threads")} thread(s). Weights: {size / 1e6:.1f} MB (fp16 safetensors).
Stage times (s): {", ".join(f"{k} {v:.0f}" for k, v in t.items())}.

## Metrics (held-out portraits and phrasings, streaming path)

| metric | value |
|---|---|
{_table(top)}

Thinker:

| metric | value |
|---|---|
{_table(metrics.get("thinker", {}))}

Audio codec:

| metric | value |
|---|---|
{_table(metrics.get("audio_codec", {}))}

Actor training:

| metric | value |
|---|---|
{_table(metrics.get("actor", {}))}

How they are measured: `pipelines/xstreamer/evaluate.py` (lip sync and identity with the face probe,
`assets/face-probe`).
"""
    (folder / "README.md").write_text(text)
