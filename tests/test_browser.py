"""Headless Chromium against the demo page: fake webcam in, generated frames out.

Debian's ``chromium`` driven by PyPI ``playwright`` through ``executable_path`` (no ``playwright install``, whose
download does not work offline). The fake webcam is a y4m clip written with PyAV. Neither is optional in CI: a
missing browser fails this test with the install line rather than skipping it.

The screenshot of each run is kept as an artifact in ``$STREAMRT_ARTIFACTS`` (default ``artifacts/`` at the repo
root, git-ignored).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from _peers import serving, wait_until
from tiny_sd import make_tiny_sd

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("STREAMRT_CHROMIUM", "/usr/bin/chromium")
# The flags the transport reference page verified on this kind of machine.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]  # fmt: skip


def artifact_dir() -> Path:
    path = Path(os.environ.get("STREAMRT_ARTIFACTS", ROOT / "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _has_non_loopback_interface() -> bool:
    import ipaddress

    import ifaddr  # aioice's dependency, so always there with aiortc

    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            addr = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            if not ipaddress.ip_address(addr.split("%")[0]).is_loopback:
                return True
    return False


def write_y4m(path: Path, seconds: float = 2.0, fps: int = 30, width: int = 640, height: int = 480) -> Path:
    """A moving test pattern as a raw y4m clip: Chromium loops it as the webcam."""
    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        yy, xx = np.mgrid[0:height, 0:width]
        for i in range(int(seconds * fps)):
            img = np.stack([(xx + i * 6) % 256, (yy * 255 // height), np.full_like(xx, 140)], -1).astype(
                np.uint8
            )
            cx = (i * 10) % (width - 120)
            img[180:300, cx : cx + 120] = (250, 220, 40)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_demo_page_in_headless_chromium(tmp_path: Path) -> None:
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: apt-get install -y chromium (CI must install it; this test does not skip)"
    )
    # Chromium, unlike aiortc with transport.ice's loopback candidates, gathers no ICE candidate at all when lo is the
    # only interface (checked in a bare network namespace; --force-webrtc-ip-handling-policy does not help), so the
    # page could never connect: say so at once instead of timing out.
    assert _has_non_loopback_interface(), (
        "headless Chromium needs a network interface other than lo for WebRTC (it never offers loopback candidates)"
    )
    from playwright.async_api import async_playwright

    clip = write_y4m(tmp_path / "webcam.y4m")
    # The embedded default weights once they are committed (the demo's real use: nothing downloaded), otherwise a
    # random tiny model: the transport is what is under test, the screenshot is merely nicer with trained weights.
    from pipelines.streamdiffusion.components import default_model_dir

    default = default_model_dir()
    model = (
        None
        if default.is_dir() and any(default.rglob("*.safetensors"))
        else make_tiny_sd(tmp_path / "tiny-sd")
    )

    async def scenario() -> None:
        async with (
            serving(pipeline="streamdiffusion", model=model and str(model), token="page-token") as (
                server,
                base,
            ),
            async_playwright() as pw,
        ):
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM,
                args=[*FLAGS, f"--use-file-for-fake-video-capture={clip}"],
            )
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 720})
                page.on("console", lambda m: log.info("page: %s", m.text))
                await page.goto(f"{base}/?token=page-token&pipeline=passthrough")
                await page.wait_for_function("window.streamrt.pipelines.length > 0", timeout=30_000)
                assert await page.locator("[data-param]").count() == 0  # passthrough has no parameters
                # The pipeline picker rebuilds the controls from the chosen pipeline's parameter schema.
                await page.select_option("#pipeline", "streamdiffusion")
                await page.wait_for_selector("#param-prompt", timeout=30_000)
                assert await page.locator("#param-strength").get_attribute("type") == "range"
                assert await page.locator("#param-cfg_type").evaluate("e => e.tagName") == "SELECT"
                assert set(await page.evaluate("window.streamrt.pipelines")) >= {
                    "passthrough",
                    "streamdiffusion",
                }
                await page.fill("#param-prompt", "a yellow square")
                await page.click("#start")
                await page.wait_for_function(
                    "window.streamrt.error || window.streamrt.framesReceived >= 10", timeout=90_000
                )
                assert await page.evaluate("window.streamrt.error") is None
                assert len(server.sessions) == 1
                # A live change travels over the data channel and is acknowledged.
                await page.fill("#param-prompt", "a blue circle")
                await page.press("#param-prompt", "Enter")
                await page.locator("#param-prompt").dispatch_event("change")
                await page.wait_for_function("window.streamrt.acks >= 1", timeout=30_000)
                await page.wait_for_function("window.streamrt.latencyMs !== null", timeout=30_000)
                sd = await page.evaluate("({...window.streamrt})")
                await page.evaluate("window.scrollTo(0, 0)")
                await page.screenshot(path=str(artifact_dir() / "browser-streamdiffusion.png"))
                log.warning(
                    "chromium + streamdiffusion: %s, %.1f fps displayed, est. latency %s ms",
                    sd["codec"], sd["fps"], sd["latencyMs"],
                )  # fmt: skip
                await page.click("#stop")
                await wait_until(lambda: not server.sessions, 15)

                # Measurement mode: a canvas clock barcode instead of the camera, read back from the displayed
                # output of passthrough: capture-to-display latency in the browser, on one clock.
                await page.goto(f"{base}/?token=page-token&pipeline=passthrough&source=barcode&autostart=1")
                await page.wait_for_function(
                    "window.streamrt.error || (window.streamrt.measuredSamples >= 60 && window.streamrt.latencyMs !== null)",
                    timeout=60_000,
                )
                pt = await page.evaluate("({...window.streamrt})")
                assert pt["error"] is None and pt["codec"] == "H264"
                await page.screenshot(path=str(artifact_dir() / "browser-passthrough.png"))
                log.warning(
                    "chromium + passthrough: %s, %.1f fps displayed, measured capture-to-display p50 %s ms (est. %s)",
                    pt["codec"], pt["fps"], pt["measuredLatencyMs"], pt["latencyMs"],
                )  # fmt: skip
                assert pt["fps"] > 5
                assert 0 < pt["measuredLatencyMs"] < 2000
            finally:
                await browser.close()
            # Closing the browser without a DELETE: the watchdog frees the session.
            await wait_until(lambda: not server.sessions, 10)

    asyncio.run(asyncio.wait_for(scenario(), 170))
