"""The gradio demo (optional extra ``streamrt[gradio]``): the app builds, and webcam frames go through the runtime.

Skipped without gradio: it is an optional dependency, unlike the browser test's Chromium.
"""

from __future__ import annotations

import numpy as np
import pytest

gr = pytest.importorskip("gradio")


def test_live_runner_returns_the_newest_generated_frame() -> None:
    from demos.gradio_app import LiveRunner

    runner = LiveRunner("passthrough")
    try:
        frame = np.zeros((120, 160, 3), np.uint8)
        frame[:, :80] = 200
        out = runner.step(frame, wait=30)
        assert out is not None and out.shape == (120, 160, 3) and out[0, 0, 0] == 200
        # Calls never wait once a picture exists: with no new output, the last one comes back at once.
        assert runner.step(None) is out
    finally:
        runner.close()


def test_app_builds_with_controls_from_the_schema_and_serves(tmp_path) -> None:
    import urllib.request

    from tiny_sd import make_tiny_sd

    from demos.gradio_app import build_app

    app = build_app("streamdiffusion", model=str(make_tiny_sd(tmp_path / "sd")), max_sessions=1)
    labels = {getattr(b, "label", None) for b in app.blocks.values()}
    assert {"camera", "generated", "prompt", "strength", "cfg_type"} <= labels
    runners = app.streamrt_runners
    runner = runners.get("test-session")
    frame = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    out = None
    for _ in range(20):  # Stream Batch emits a frame once the next ones arrive; bounded, each wait up to 10 s
        out = runner.step(frame, wait=10)
        if out is not None:
            break
    assert out is not None and out.shape == (64, 64, 3)
    runner.update({"prompt": "a cat"})
    with pytest.raises(Exception, match="limit"):
        runners.get("another-session")
    runners.close("test-session")
    assert len(runners) == 0
    _, url, _ = app.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None)
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.status == 200
    finally:
        app.close()
