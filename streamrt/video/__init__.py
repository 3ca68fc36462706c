"""The video backbone family shared by the streaming text-to-video generators (StreamDiT, Rolling Forcing,
StreamingT2V).

- ``flow``: flow-matching noise levels with the timestep shift, as ``NoiseSchedule`` strategies of the runtime's
  staggered window, and the noise strategies the video methods add (fresh noise keyed by slot, predicted noise);
- ``attention``: 3D rotary position embedding and the block-causal / (shifted) window attention masks;
- ``dit``: the adaLN DiT with one time embedding per frame, in the Wan2.1 parameter layout (so official checkpoints
  load by name);
- ``text``: a word-level text encoder that needs no download (the defaults' conditioning);
- ``codec``: the small frame autoencoder of the defaults (pixels <-> latents);
- ``folder``: model folders (config json + safetensors) written by the training recipes and read by ``load``;
- ``t2v``: what every text-to-video generator shares behind the generator contract (ticks, prompt transitions,
  the decode worker thread, bounded output queues).
"""
