"""RAIN's streaming on the runtime's staggered denoising window: 4 groups of 4 latent frames at t = [249, 499, 749,
999], one UNet pass over all 16 frames per step.

A group is one ``Slot`` of the window (``rows`` = its frames). Each ``step``:

1. 4 new condition frames (pose maps / event slices) go through the guider ONCE; a group of 4 noise frames enters
   at level 0 (t = 999) carrying those features in its slot state, so condition and latent stay aligned: they
   travel in the same slot;
2. ONE pass of the motion UNet over every frame in the window, in time order (oldest group first), each frame at
   its group's timestep, reading the cached reference K/V: temporal attention spans all 16 frames across the
   noise levels;
3. one LCM step: x0 predicted for every frame; the group at t = 249 leaves (it is emitted and decoded); the others
   are re-noised to their next level (``StaggeredWindow``).

So every frame gets exactly 4 passes (t = 999, 749, 499, 249). While the window fills (and drains at the end of a
stream) it holds fewer groups, never placeholder frames.
"""

from __future__ import annotations

from typing import Any

import torch

from streamrt.animation.backbone import GROUP_FRAMES, GROUPS, AnimationBackbone
from streamrt.animation.reference import ReferenceCache
from streamrt.window import FixedNoise, FreshNoise, NoiseSource, Slot, StaggeredWindow, WindowPass

CONDITION = "condition"  # the slot-state key of a group's guider features


class AnimationStream:
    """The window of one stream over one backbone and one reference."""

    def __init__(
        self, backbone: AnimationBackbone, *, seed: int, noise: str = "fixed", device: str = "cpu"
    ) -> None:
        from pipelines.streamdiffusion.pipeline import to_epsilon
        from streamrt.animation.backbone import group_schedule

        self.backbone = backbone
        self.device = torch.device(device)
        self.schedule = group_schedule(self.device, backbone.cfg.prediction_type)
        self._to_epsilon = to_epsilon
        h = backbone.cfg.size // backbone.cfg.codec.scale
        self.latent_shape = (backbone.cfg.codec.latent_channels, h, h)
        self.noise_kind = noise
        self.noise: NoiseSource = self._noise_source(seed)
        self.window = StaggeredWindow(self.schedule, self.noise, self.denoise)
        self.cache: ReferenceCache | None = None
        self._entry_gen = torch.Generator().manual_seed(seed + 1)
        self.seed = seed
        abar = self.schedule.alpha.pow(2).view(-1)
        self._abar = abar  # per level

    def _noise_source(self, seed: int) -> NoiseSource:
        if self.noise_kind == "fixed":
            # Stream Batch's choice, one noise map per level, here also shared by the frames of a group (one row,
            # broadcast): a still pose then gives a still output, with no flicker from frame-to-frame noise
            return FixedNoise(GROUPS, 1, self.latent_shape, seed, str(self.device))
        return FreshNoise(seed, str(self.device))

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.seed = seed
        self.window.reset()
        self.noise.reseed(self.seed)
        self._entry_gen = torch.Generator().manual_seed(self.seed + 1)

    @torch.no_grad()
    def set_reference(self, image: torch.Tensor) -> None:
        """(3, H, W) in [0, 1]: computes the reference cache once; it is read, never rewritten, by every pass."""
        self.cache = self.backbone.encode_reference(image[None].to(self.device)).detached()

    @torch.no_grad()
    def step(self, conditions: torch.Tensor | None, payload: list[Any]) -> list[tuple[torch.Tensor, Any]]:
        """A group of ``len(payload)`` frames (``conditions``: (n, C0, H, W) in [0, 1]) enters, one pass runs;
        returns the decoded frames ((3, H, W) in [0, 1], payload) of the group that left. ``conditions`` None: no
        group enters (draining)."""
        entering = None
        if conditions is not None:
            n = conditions.shape[0]
            if n < 1 or n > GROUP_FRAMES:
                raise ValueError(f"a group holds 1..{GROUP_FRAMES} frames; got {n}")
            features = self.backbone.guide(conditions.to(self.device))
            if self.noise_kind == "fixed":
                x_t = self.noise.sample(0, 1, features).expand(n, *self.latent_shape)  # the level-0 noise map
            else:
                x_t = torch.randn((n, *self.latent_shape), generator=self._entry_gen).to(self.device)
            entering = self.window.enter_noisy(x_t.clone(), payload)
            entering.state[CONDITION] = features
        return self._decode(self.window.step(entering))

    @torch.no_grad()
    def drain(self) -> list[tuple[torch.Tensor, Any]]:
        return self._decode(self.window.drain())

    def denoise(self, batch: WindowPass) -> torch.Tensor:
        """The window's denoiser: one motion-UNet pass over all frames, in time order, then LCM's x0."""
        if self.cache is None:
            raise RuntimeError("set_reference() before streaming")
        # The window orders slots noisiest (newest) first; the UNet's temporal attention wants time order.
        order = list(reversed(range(len(batch.slots))))
        rows = batch.slot_rows()
        x_t = torch.cat([batch.latents[rows[i]] for i in order])
        t = torch.cat([batch.timesteps[rows[i]] for i in order])
        levels = torch.cat([batch.levels[rows[i]] for i in order])
        features = torch.cat([batch.slots[i].state[CONDITION] for i in order])
        out = self.backbone.predict(x_t, t, features, self.cache, num_frames=x_t.shape[0])
        abar = self._abar[levels.to(self._abar.device)].view(-1, 1, 1, 1)
        eps = self._to_epsilon(self.backbone.cfg.prediction_type, out, x_t, abar)
        x0 = self.schedule.denoise(x_t, eps, levels)
        # back to the window's row order
        back = torch.empty_like(x0)
        start = 0
        for i in order:
            r = rows[i]
            n = r.stop - r.start
            back[r] = x0[start : start + n]
            start += n
        return back

    def _decode(self, slots: list[Slot]) -> list[tuple[torch.Tensor, Any]]:
        if not slots:
            return []
        frames = self.backbone.codec.decode(torch.cat([s.latent for s in slots]))
        payload = [p for s in slots for p in s.payload]
        return list(zip(frames, payload, strict=True))
