"""Settings: every variable documented, and the forms people actually type accepted."""

from __future__ import annotations

import re
from pathlib import Path

from core.config import Settings

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
