"""The shared animation backbone of RAIN and EvAnimate (``backbone``), its streaming window (``stream``), the
generator-contract side (``generator``), model folders, RAIN's checkpoint layout and the training recipe pieces."""
