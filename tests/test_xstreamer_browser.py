"""Headless Chromium against the demo page with X-Streamer: no camera, the character's video and audio tracks come
back, a typed turn travels as the live ``say`` parameter over the data channel."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import torch
from _peers import serving, wait_until
from _xstreamer import tiny_xstreamer_folder
from test_browser import CHROMIUM, FLAGS, artifact_dir

log = logging.getLogger(__name__)
torch.set_num_threads(1)


def test_talking_character_in_the_demo_page(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    folder = tiny_xstreamer_folder(tmp_path)

    async def scenario() -> None:
        async with (
            serving(pipeline="xstreamer", model=str(folder), fps=25) as (server, base),
            async_playwright() as pw,
        ):
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 720})
                page.on("console", lambda m: log.info("page: %s", m.text))
                await page.goto(f"{base}/?pipeline=xstreamer")
                await page.wait_for_selector("#param-say", timeout=30_000)
                # the portrait picker and the text box come from the parameter schema
                assert await page.locator("#param-portrait").count() == 1
                await page.fill("#param-say", "hello there")
                await page.click("#start")
                await page.wait_for_function(
                    "window.streamrt.error || window.streamrt.framesReceived >= 10", timeout=90_000
                )
                assert await page.evaluate("window.streamrt.error") is None
                audio = await page.evaluate(
                    "document.getElementById('remote').srcObject.getAudioTracks().length"
                )
                assert audio >= 1, "no audio track from the character"
                await page.fill("#param-say", "what is your name?")
                await page.locator("#param-say").dispatch_event("change")
                await page.wait_for_function("window.streamrt.acks >= 1", timeout=30_000)
                await page.screenshot(path=str(artifact_dir() / "browser-xstreamer.png"))
                await page.click("#stop")
                await wait_until(lambda: not server.sessions, 15)
            finally:
                await browser.close()

    asyncio.run(asyncio.wait_for(scenario(), 170))
