"""`unitocom certs`, `up --tls-dir`, `status`, `send` with and without a token, `down`: the CLI of a TLS stack."""
from __future__ import annotations

import json

from tests.conftest import free_consecutive
from unitocom import cli


def test_a_tls_stack_from_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UNITOCOM_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("UNITOCOM_TLS_DIR", raising=False)
    tls = tmp_path / "tls"
    assert cli.main(["certs", "--out", str(tls)]) == 0
    assert cli.main(["up", "--tls-dir", str(tmp_path / "nothing")]) == 2  # checked before anything starts
    assert "unitocom certs --out" in capsys.readouterr().err
    base = free_consecutive(6)
    target = f"127.0.0.1:{base}"
    ports = ["--base-port", str(base), "--metrics-base-port", str(base + 3)]
    assert cli.main(["up", "--tls-dir", str(tls), *ports]) == 0, capsys.readouterr().err
    try:
        capsys.readouterr()
        assert cli.main(["status", "--json"]) == 0  # health over TLS, with the client certificate
        rows = json.loads(capsys.readouterr().out)["services"]
        assert [r["status"] for r in rows] == ["SERVING"] * 3
        assert all("--tls-dir" in r["extra_args"] for r in rows)
        assert cli.main(["send", "--target", target, "--tls-dir", str(tls), "--text", "over tls",
                         "--snr-db", "30", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["output"] == "over tls"
        bad = tmp_path / "bad-token"
        bad.write_text("not-a-token\n")
        assert cli.main(["send", "--target", target, "--tls-dir", str(tls), "--token-file", str(bad),
                         "--text", "x"]) == 1
        assert "PERMISSION_DENIED" in capsys.readouterr().err
        assert cli.main(["send", "--target", target, "--text", "plaintext to a TLS port"]) == 1
        assert "UNAVAILABLE" in capsys.readouterr().err
    finally:
        assert cli.main(["down"]) == 0
    assert "transmitter" in capsys.readouterr().out


def test_a_token_file_without_tls_is_refused(monkeypatch, capsys):
    monkeypatch.delenv("UNITOCOM_TLS_DIR", raising=False)
    assert cli.main(["send", "--text", "x", "--token-file", "tokens"]) == 2
    assert "--token-file needs --tls-dir" in capsys.readouterr().err
