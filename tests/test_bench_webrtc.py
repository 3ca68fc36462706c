"""``streamrt bench webrtc`` runs end to end on loopback and prints the issue's fields (speed is not asserted)."""

from __future__ import annotations

import json

from streamrt.cli import main as cli_main

FIELDS = ["suite", "pipeline", "sessions", "p50_ms", "p90_ms", "fps", "cpu_percent"]


def test_webrtc_suite_prints_the_issue_fields(capsys) -> None:
    argv = ["bench", "webrtc", "--json", "--seconds", "2", "--rounds", "1", "--sessions", "2"]
    assert cli_main([*argv, "--drift-seconds", "0", "--skip-streamdiffusion"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(r["pipeline"], r["sessions"]) for r in rows] == [
        ("echo", 1),
        ("passthrough", 1),
        ("passthrough", 2),
    ]
    for row in rows:
        assert list(row)[: len(FIELDS)] == FIELDS and row["suite"] == "webrtc"
        assert row["fps"] > 0 and row["p50_ms"] > 0, row  # frames came back and barcodes were read
    assert rows[1]["echo_p50_ms"] == rows[0]["p50_ms"]
