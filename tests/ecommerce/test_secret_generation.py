"""The run command's secret: random per checkout, kept in the untracked .env, never regenerated."""
import os
import stat
import subprocess
from pathlib import Path

from tests.servers import ROOT

LIB = ROOT / "scripts" / "lib.sh"


def run_command_secret(checkout: Path, **env: str) -> str:
    """Do what scripts/run.sh does first (load .env, ensure the secret) and print the key it then has."""
    script = f'source "{LIB}"; load_dotenv "$1"; ensure_secret_key "$1"; printf %s "$DJANGO_SECRET_KEY"'
    base = {key: value for key, value in os.environ.items() if key != "DJANGO_SECRET_KEY"}
    completed = subprocess.run(
        ["bash", "-c", script, "run", str(checkout)], env={**base, **env}, capture_output=True, text=True, timeout=30
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_two_fresh_checkouts_get_different_random_secrets(tmp_path):
    # given two fresh checkouts
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()

    # when the run command starts in each
    first_key, second_key = run_command_secret(first), run_command_secret(second)

    # then each has its own long random key, kept in its .env, readable by its owner only
    assert first_key != second_key
    assert len(first_key) >= 50 and len(second_key) >= 50
    for checkout, key in ((first, first_key), (second, second_key)):
        dotenv = checkout / ".env"
        assert f"DJANGO_SECRET_KEY={key}\n" in dotenv.read_text()
        assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600


def test_the_next_run_keeps_the_secret_and_other_settings(tmp_path):
    # given a checkout whose .env already has settings of its own (no trailing newline)
    (tmp_path / ".env").write_text("LOG_FORMAT=text")
    key = run_command_secret(tmp_path)

    # when the run command starts again
    again = run_command_secret(tmp_path)

    # then the same key is used, and nothing was appended twice or lost
    assert again == key
    lines = (tmp_path / ".env").read_text().splitlines()
    assert "LOG_FORMAT=text" in lines
    assert sum(line.startswith("DJANGO_SECRET_KEY=") for line in lines) == 1


def test_a_secret_from_the_environment_wins_and_nothing_is_written(tmp_path):
    # when
    key = run_command_secret(tmp_path, DJANGO_SECRET_KEY="given-by-the-operator-" + "x" * 40)

    # then
    assert key == "given-by-the-operator-" + "x" * 40
    assert not (tmp_path / ".env").exists()


def test_the_run_command_ensures_the_secret_right_after_loading_env():
    # given
    lines = [line.strip() for line in (ROOT / "scripts" / "run.sh").read_text().splitlines()]

    # then
    assert lines[lines.index('load_dotenv "$ROOT"') + 1] == 'ensure_secret_key "$ROOT"'
