"""`--server-binary PATH` (and `server_binary` in --config): the llama-server binary a user
brings. A path that is not a runnable file is one line naming --server-binary and the
fix, exit 2, before anything starts; the flag (or --parallel) without --server
llama-server is refused, not ignored; `--help` lists llama-server among the kinds."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

import pytest

from harness.cli.main import build_parser, main
from harness.config import settings as S
from harness.errors import UserError
from harness.servers.llama_server import SERVER_ENV, find_server_binary, llama_server_spec


def parse(argv: list[str]) -> S.BenchSettings:
    p = argparse.ArgumentParser()
    S.add_arguments(p)
    return S.from_args(p.parse_args(argv))


def gguf(tmp_path: Path) -> Path:
    """A file with the GGUF magic: enough for the command line to be built (llama-server
    is not started here)."""
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + bytes(60))
    return path


def executable(path: Path, text: str = "#!/bin/sh\necho 'version: 9999 (test)'\n") -> Path:
    """A runnable file standing in for a user's own llama-server build (only its path and
    `--version` are read here)."""
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_flag_and_config_key_give_the_binary(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SERVER_ENV, raising=False)
    binary = executable(tmp_path / "llama-server")
    assert find_server_binary(parse(["--server-binary", str(binary)])) == (
        binary, "--server-binary")
    config = tmp_path / "bench.toml"
    config.write_text(f'server = "llama-server"\nserver_binary = "{binary}"\n')
    assert parse(["--config", str(config)]).server_binary == str(binary)
    # The flag wins over $LLAMA_SERVER.
    monkeypatch.setenv(SERVER_ENV, str(tmp_path / "elsewhere"))
    assert find_server_binary(parse(["--server-binary", str(binary)]))[0] == binary


def test_the_binary_is_on_the_command_line_and_recorded(tmp_path: Path) -> None:
    binary = executable(tmp_path / "llama-server")
    settings = parse(["--server", "llama-server", "--server-binary", str(binary),
                      "--model", str(gguf(tmp_path))])
    spec = llama_server_spec(settings, 512, 1234, max_concurrency=2)
    assert spec.argv[0] == str(binary)
    assert spec.info["binary"] == str(binary)
    assert spec.info["binary_source"] == "--server-binary"
    assert spec.info["engine_version"] == "9999 (test)"
    assert spec.info["device"] == "unknown (user binary)"


def test_a_name_is_looked_up_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = executable(tmp_path / "my-llama-server")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    assert find_server_binary(parse(["--server-binary", "my-llama-server"]))[0] == binary


@pytest.mark.parametrize("what,words", [
    ("missing", "no such file; give the path of a llama-server binary"),
    ("folder", "a folder, not a file"),
    ("not executable", "not executable; chmod +x it"),
    ("bare name", "no such file (nor on PATH)"),
])
def test_bad_binary_is_a_user_error_naming_the_flag(tmp_path: Path, what: str,
                                                     words: str) -> None:
    path = {"missing": str(tmp_path / "nope" / "llama-server"), "folder": str(tmp_path),
            "bare name": "no-such-llama-server-here"}.get(what)
    if what == "not executable":
        plain = tmp_path / "llama-server"
        plain.write_text("#!/bin/sh\n")
        path = str(plain)
    with pytest.raises(UserError) as err:
        find_server_binary(parse(["--server-binary", str(path)]))
    assert str(err.value).startswith(f"--server-binary {path}: ")
    assert words in str(err.value) and "\n" not in str(err.value)


def test_bench_with_a_bad_binary_is_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "bin" / "llama-server"
    rc = main(["bench", "--server", "llama-server", "--server-binary", str(missing),
               "--model", str(gguf(tmp_path)), "--power", "none", "--quiet",
               "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err == [f"harness bench: error: --server-binary {missing}: no such file; give the "
                   "path of a llama-server binary, or leave it out to use the one built from "
                   "the llama-cpp-python sdist (make llama-server)"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,flags,now", [
    (["--server-binary", "/x/llama-server"], "--server-binary", "no --server"),
    (["--server", "llama-cpp-python", "--parallel", "4"], "--parallel",
     "--server llama-cpp-python"),
])
def test_llama_server_flags_without_llama_server_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], flags: str,
        now: str) -> None:
    rc = main(["bench", *argv, "--power", "none", "--quiet",
               "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith(f"harness bench: error: {flags} configures "
                                               f"--server llama-server, but this run has "
                                               f"{now}: add --server llama-server")


def test_help_lists_llama_server_among_the_kinds(capsys: pytest.CaptureFixture) -> None:
    parser, _ = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "start a managed server: llama-server (llama.cpp's own server" in text
    assert "--server-binary PATH" in text and "--parallel N" in text

