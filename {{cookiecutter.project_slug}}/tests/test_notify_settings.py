"""The e-mail settings: SMTP_* variables, the .env file, what is refused and how it is named, the recipients."""

import os
from pathlib import Path

import pytest
from smtp_server import PASSWORD, SENDER, _warnings, forget_personal_settings

from config.schema import validate_config
from config.serialize import ConfigError
from config.train_config import TRAIN_CONFIG
from utils.notify.settings import SMTPConfigError, SMTPSettings, parse_recipients, read_env_file


@pytest.fixture(autouse=True)
def _no_personal_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own SMTP_* variables and .env must not reach the tests (nor the tests' servers)."""
    forget_personal_settings(monkeypatch)


@pytest.mark.parametrize("host", ["smtp.example.org", "10.0.0.1", "localhost.example.org"])
def test_unencrypted_smtp_is_refused_for_another_machine(host: str) -> None:
    with pytest.raises(SMTPConfigError, match=f"unencrypted to {host}; it is only allowed for a server on this"):
        SMTPSettings.from_env({"SMTP_HOST": host, "SMTP_SECURITY": "none", "SMTP_FROM": SENDER})


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1"])
def test_unencrypted_smtp_is_allowed_on_this_machine(host: str) -> None:
    settings = SMTPSettings.from_env({"SMTP_HOST": host, "SMTP_SECURITY": "NONE", "SMTP_FROM": SENDER})
    assert (settings.security, settings.port) == ("none", 25)


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({}, "SMTP_HOST is not set"),
        ({"SMTP_SECURITY": "tls"}, "SMTP_SECURITY must be one of starttls, ssl, none, got 'tls'"),
        ({"SMTP_PORT": "five"}, "SMTP_PORT must be a whole number, got 'five'"),
        ({"SMTP_PORT": "70000"}, "SMTP_PORT must be a port number"),
        ({"SMTP_TIMEOUT": "0"}, "SMTP_TIMEOUT must be a number of seconds > 0"),
        ({"SMTP_TIMEOUT": "inf"}, "SMTP_TIMEOUT must be a number of seconds > 0"),
        ({"SMTP_FROM": ""}, "SMTP_FROM is not set"),
        ({"SMTP_FROM": "runs"}, "SMTP_FROM must be the sender's e-mail address"),
        ({"SMTP_PASSWORD": PASSWORD}, "SMTP_PASSWORD is set but SMTP_USER is not"),
        ({"SMTP_CA_FILE": "/no/such/ca.pem"}, "SMTP_CA_FILE /no/such/ca.pem: no such file"),
    ],
)
def test_bad_settings_are_named(environ: dict[str, str], problem: str) -> None:
    full = {"SMTP_HOST": "smtp.example.org", "SMTP_FROM": SENDER} if environ else {}
    full.update(environ)
    with pytest.raises(SMTPConfigError) as raised:
        SMTPSettings.from_env(full)
    assert problem in str(raised.value) and PASSWORD not in str(raised.value)


def test_a_ca_file_that_holds_no_certificate_is_named(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not a certificate\n", encoding="utf-8")
    with pytest.raises(SMTPConfigError, match=f"SMTP_CA_FILE {ca_file}: not a PEM certificate"):
        SMTPSettings.from_env({"SMTP_HOST": "smtp.example.org", "SMTP_FROM": SENDER, "SMTP_CA_FILE": str(ca_file)})


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# mail settings\n"
        "\n"
        "SMTP_HOST=smtp.example.org   # the relay\n"
        "export SMTP_USER='bob'\n"
        'SMTP_PASSWORD="pa ss\\"wo#rd"\n'
        "SMTP_FROM=runs@example.org\n"
        "SMTP_PORT=2525\n"
        "SMTP_TIMEOUT=7.5\n"
        "OTHER_KEY=not an SMTP setting\n"
        "this line is broken, and holds hunter2\n",
        encoding="utf-8",
    )
    settings = SMTPSettings.from_env({"SMTP_PORT": "587", "SMTP_ENV_FILE": "/ignored"}, env_file=env_file)
    assert (settings.host, settings.user, settings.password) == ("smtp.example.org", "bob", 'pa ss"wo#rd')
    assert (settings.port, settings.timeout, settings.sender, settings.security) == (587, 7.5, SENDER, "starttls")
    (warning,) = _warnings(caplog)
    assert warning == f"{env_file}: line 10 skipped (expected KEY=VALUE)"  # its number, never its text
    # SMTP_ENV_FILE points at the file when none is given; a value set to "" in the environment still wins.
    settings = SMTPSettings.from_env({"SMTP_ENV_FILE": str(env_file), "SMTP_USER": "", "SMTP_PASSWORD": ""})
    assert (settings.user, settings.password, settings.port) == ("", "", 2525)
    assert not read_env_file(tmp_path / "missing.env")


def test_the_sender_defaults_to_a_login_that_is_an_address() -> None:
    settings = SMTPSettings.from_env({"SMTP_HOST": "smtp.example.org", "SMTP_USER": "me@example.org"})
    assert settings.sender == "me@example.org"


def test_recipients_are_parsed_and_checked() -> None:
    assert parse_recipients("a@b.org, c@d.org;a@b.org") == ["a@b.org", "c@d.org"]
    assert parse_recipients(["a@b.org", "c@d.org e@f.org"]) == ["a@b.org", "c@d.org", "e@f.org"]
    with pytest.raises(SMTPConfigError, match="'a@b' is not an e-mail address"):
        parse_recipients("a@b")
    with pytest.raises(SMTPConfigError, match="no e-mail address"):
        parse_recipients([])


def test_notify_is_refused_before_training_without_a_way_to_send(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMTP_HOST", raising=False)
    monkeypatch.setenv("SMTP_ENV_FILE", os.devnull)  # a developer's own .env must not make this pass
    with pytest.raises(ConfigError, match="NOTIFY: SMTP_HOST is not set"):
        validate_config({**TRAIN_CONFIG, "NOTIFY": ["a@b.org"]})
