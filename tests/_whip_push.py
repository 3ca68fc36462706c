"""A real third-party WHIP client: FFmpeg's ``whip`` muxer inside PyAV's wheel, run as its own process.

Usage: ``python tests/_whip_push.py URL SECONDS [TOKEN]``. It pushes 320x240 H264 (baseline, no B-frames, as WHIP
wants) at 30 fps; every frame carries the wall-clock time in milliseconds (mod 2^16) as a barcode, so a viewer in
another process can measure push-to-view latency on the shared system clock. Closing the muxer sends the DELETE.

Two facts from the transport reference page shape it: the muxer completes DTLS with aiortc only with an ECDSA P-256
certificate (generated here), and it must run in its own process: PyAV holds the GIL while the muxer's header
write does the HTTP exchange and the ICE/DTLS handshake, which would freeze a server in the same process.
"""

from __future__ import annotations

import datetime
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from _peers import stamp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def write_ecdsa_cert(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "streamrt-whip-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def push(url: str, seconds: float, token: str | None = None, fps: int = 30) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = write_ecdsa_cert(Path(tmp))
        options = {"cert_file": str(cert_file), "key_file": str(key_file)}
        if token:
            options["authorization"] = token
        out = av.open(url, mode="w", format="whip", options=options)
        stream = out.add_stream(
            "libx264",
            rate=fps,
            options={
                "tune": "zerolatency",
                "preset": "ultrafast",
                "profile": "baseline",
                "bf": "0",
                "g": str(fps),
            },
        )
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        yy, xx = np.mgrid[0:240, 0:320]
        base = np.stack([xx * 255 // 320, yy * 255 // 240, np.full_like(xx, 80)], -1).astype(np.uint8)
        start = time.perf_counter()
        frames = int(seconds * fps)
        for i in range(frames):
            img = base.copy()
            stamp(img, int(time.time() * 1000) % (1 << 16))
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
            time.sleep(max(0.0, start + (i + 1) / fps - time.perf_counter()))
        for packet in stream.encode():
            out.mux(packet)
        out.close()
        return frames


if __name__ == "__main__":
    sent = push(sys.argv[1], float(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
    print(f"pushed {sent} frames", flush=True)
