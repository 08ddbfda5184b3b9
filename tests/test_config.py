"""Settings: every variable documented, and the forms people actually type accepted."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from core.config import LOG_LEVELS, Settings, settings_problems

EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", EXAMPLE.read_text(), re.MULTILINE))
    assert documented == {name.upper() for name in Settings.model_fields}


def test_env_example_copied_to_dotenv_gives_the_defaults() -> None:
    settings = Settings(_env_file=EXAMPLE)  # type: ignore[call-arg]
    assert settings == Settings(_env_file=None)  # type: ignore[call-arg]
    assert not settings.llm_configured and not settings.slack_configured
    assert settings.persona_path is None and settings.anthropic_temperature is None


def test_discord_channel_ids_accept_commas_and_json() -> None:
    assert Settings(_env_file=None, discord_channel_ids="1, 2,3").discord_channel_ids == [1, 2, 3]  # type: ignore[call-arg,arg-type]
    assert Settings(_env_file=None, discord_channel_ids="").discord_channel_ids == []  # type: ignore[call-arg,arg-type]


# --- Checked at start, named as the operator set them ------------------------------------


def problems(**values: object) -> list[str]:
    """What `momentum` prints for these settings, one line each ([] when they are fine)."""
    try:
        Settings(_env_file=None, **values)  # type: ignore[call-arg,arg-type]
    except ValidationError as error:
        return settings_problems(error)
    return []


@given(st.sampled_from(LOG_LEVELS), st.lists(st.booleans(), min_size=8, max_size=8))
def test_log_level_is_accepted_in_any_case(level: str, upper: list[bool]) -> None:
    typed = "".join(c.upper() if up else c.lower() for c, up in zip(level, upper, strict=False))
    assert Settings(_env_file=None, log_level=f" {typed} ").log_level == level  # type: ignore[call-arg]


def test_bad_settings_are_named_by_their_variable_without_pydantic_noise() -> None:
    assert problems(log_level="loud") == [
        "LOG_LEVEL=loud: not a log level: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
    ]
    assert problems(slack_port="abc", discord_channel_ids="12,x") == [
        "SLACK_PORT=abc: Input should be a valid integer, unable to parse string as an integer",
        "DISCORD_CHANNEL_IDS=12,x: channel ids are numbers, separated by commas: 123,456",
    ]
    for line in problems(slack_port="abc", log_level="x", default_timezone="x"):
        assert "errors.pydantic.dev" not in line and "type=" not in line
        assert line.split("=")[0].isupper()
    assert problems(slack_bot_token=12345) == ["SLACK_BOT_TOKEN: Input should be a valid string"]


def test_default_timezone_must_be_a_real_zone_and_is_kept_canonical() -> None:
    """An unknown zone used to be accepted, and the first /schedule then failed."""
    [line] = problems(default_timezone="Mars/Base")
    assert line.startswith("DEFAULT_TIMEZONE=Mars/Base: I don't know the timezone 'Mars/Base'.")
    assert Settings(_env_file=None, default_timezone="europe/paris").default_timezone == (  # type: ignore[call-arg]
        "Europe/Paris"
    )


def test_meeting_lengths_must_leave_something_to_book() -> None:
    """MEETING_MIN_MINUTES above MEETING_MAX_MINUTES used to refuse every booking."""
    assert problems(meeting_min_minutes=60, meeting_max_minutes=30) == [
        "MEETING_MIN_MINUTES (60) is above MEETING_MAX_MINUTES (30): no meeting could be booked"
    ]
    assert problems(meeting_default_minutes=5) == [
        "MEETING_DEFAULT_MINUTES (5) must lie between MEETING_MIN_MINUTES (10) and "
        "MEETING_MAX_MINUTES (240)"
    ]
    lengths = ("meeting_min_minutes", "meeting_default_minutes", "meeting_max_minutes")
    assert problems(**dict.fromkeys(lengths, 30)) == []  # one length only: fine


@pytest.mark.parametrize("value", ["hot", "0.7", "", "1e9"])
def test_an_old_temperature_of_any_value_is_ignored_with_one_warning(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(_env_file=None, anthropic_temperature=value or None)  # type: ignore[call-arg]
    with caplog.at_level(logging.WARNING):
        settings.warn_about_ignored()
    assert len(caplog.records) == (1 if value else 0)
    if value:
        assert f"ANTHROPIC_TEMPERATURE={value} is ignored" in caplog.text
