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


def test_webcam_streams_through_the_app_in_headless_chromium(tmp_path) -> None:
    import asyncio

    from test_browser import CHROMIUM, FLAGS, artifact_dir, write_y4m

    from demos.gradio_app import build_app

    app = build_app("passthrough")
    _, url, _ = app.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None)
    clip = write_y4m(tmp_path / "webcam.y4m")

    async def scenario() -> None:
        from playwright.async_api import async_playwright

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, args=[*FLAGS, f"--use-file-for-fake-video-capture={clip}"]
            )
            try:
                page = await browser.new_page(viewport={"width": 1300, "height": 800})
                await page.goto(url)
                record = page.locator('button:visible:has-text("Record")')
                access = page.get_by_text("Click to Access Webcam")
                for _ in range(30):  # a click before the page has hydrated does nothing: retry, bounded
                    if await record.count():
                        break
                    if await access.count():
                        await access.first.click(timeout=5_000)
                    try:
                        await record.first.wait_for(timeout=2_000)
                    except Exception:  # playwright's TimeoutError: not yet
                        continue
                await record.first.click(timeout=30_000)
                runners = app.streamrt_runners
                deadline = asyncio.get_running_loop().time() + 60
                while asyncio.get_running_loop().time() < deadline:
                    snaps = [r.session.metrics.snapshot() for r in runners._runners.values()]
                    if snaps and snaps[0].frames_out >= 40:
                        break
                    await asyncio.sleep(0.25)  # polling the app's own counters, bounded by the deadline
                assert snaps and snaps[0].frames_out >= 40, "webcam frames did not stream through the runtime"
                await page.screenshot(path=str(artifact_dir() / "gradio-passthrough.png"))
            finally:
                await browser.close()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 120))
    finally:
        app.close()
