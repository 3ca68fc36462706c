"""The shared animation backbone of RAIN (pose maps) and EvAnimate (event slices).

- ``backbone``: ``AnimationBackbone`` (ReferenceNet + motion UNet + condition guider + frame codec) and the LCM
  schedule at t = 999/749/499/249; ``unet``, ``reference``, ``guider``: its parts;
- ``stream``: ``AnimationStream``, RAIN's 4 groups x 4 frames on the runtime's staggered window;
- ``generator``: ``AnimationGenerator``, the generator-contract side: a pipeline subclasses it (with
  ``streamrt.generator.Generator``) and implements ``condition_of(frame, index) -> (C0, S, S)`` in [0, 1] (and
  ``condition_at(index)`` for file-driven conditions, ``on_stream_start()`` for per-stream state);
- ``recipe`` / ``training`` / ``card``: ``run_recipe(args, name=..., condition=Condition(name, channels,
  from_clip), summary=...)`` is a whole recipe for any condition made from a puppet clip (frames, keypoints);
- ``folder``: model folders; ``checkpoint``: RAIN's published key layout.
"""
