"""Crisis language in six languages: the corpus (tests/data/safety_corpus.json), the ways
people type it (casing, accents left out, stray invisible characters), and the reply in the
user's language through the Coach."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bots.commands import run_command
from core.events import SafetyReply
from core.models import Role
from core.safety import SAFETY_REPLY, crisis_language, is_crisis, safety_reply
from core.safety_languages import LANGUAGES
from core.store.sqlite import SQLiteStore
from tests.fakes.anthropic_api import FakeAnthropic
from tests.support import coach_on, collect, person

CORPUS = json.loads((Path(__file__).parent / "data" / "safety_corpus.json").read_text())[
    "languages"
]
CRISIS = [(code, text) for code, cases in CORPUS.items() for text in cases["crisis"]]
EVERYDAY = [(code, text) for code, cases in CORPUS.items() for text in cases["everyday"]]
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad"


def test_the_corpus_covers_every_language() -> None:
    assert set(CORPUS) == set(LANGUAGES) >= {"en", "es", "fr", "de", "pt", "it"}
    for cases in CORPUS.values():
        assert len(cases["crisis"]) >= 8 and len(cases["everyday"]) >= 6


@pytest.mark.parametrize(("language", "text"), CRISIS)
def test_crisis_language_is_recognised_in_its_language(language: str, text: str) -> None:
    assert crisis_language(text) == language


@pytest.mark.parametrize(("language", "text"), EVERYDAY)
def test_everyday_phrases_do_not_trigger_the_safety_reply(language: str, text: str) -> None:
    assert crisis_language(text) is None


def test_an_idiom_does_not_hide_a_cry_in_the_same_message() -> None:
    assert crisis_language("me muero de risa con todo, pero en serio quiero morir") == "es"
    assert crisis_language("je veux en finir avec ce dossier. et en finir tout court") == "fr"


@pytest.mark.parametrize(
    ("text", "language"),
    [  # words several languages share: the reply follows the rest of the sentence
        ("estoy pensando en el suicidio", "es"),
        ("sto pensando al suicidio", "it"),
        ("penso em suicídio", "pt"),
        ("suicídio", "pt"),  # the accent as typed says Portuguese
        ("suicidio", "es"),  # without it, a tie: the first in LANGUAGES
        ("I think about suicide", "en"),
        ("je pense au suicide", "fr"),
    ],
)
def test_a_shared_word_gets_the_reply_of_the_sentence_language(text: str, language: str) -> None:
    assert crisis_language(text) == language


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


@st.composite
def typed_as_people_do(draw: st.DrawFn, text: str) -> str:
    """`text` in random casing, maybe without its accents, with invisible characters and
    extra whitespace dropped in."""
    if draw(st.booleans()):
        text = strip_accents(text)
    out = []
    for char in text:
        out.append(char.upper() if draw(st.booleans()) else char.lower())
        if char == " ":
            out.append(draw(st.sampled_from(["", " ", "  ", "\n", "\t", "\u00a0"])))
        out.append(draw(st.text(alphabet=ZERO_WIDTH, max_size=1)))
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_crisis_is_recognised_however_it_is_typed(data: st.DataObject) -> None:
    language, text = data.draw(st.sampled_from(CRISIS))
    assert crisis_language(data.draw(typed_as_people_do(text))) == language


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_everyday_phrases_stay_quiet_however_they_are_typed(data: st.DataObject) -> None:
    _, text = data.draw(st.sampled_from(EVERYDAY))
    assert crisis_language(data.draw(typed_as_people_do(text))) is None


def test_each_reply_is_in_its_language_with_resources_that_fit() -> None:
    expected = {
        "en": ["988", "116 123", "112", "findahelpline.com"],
        "es": ["024", "988", "112", "findahelpline.com"],
        "fr": ["3114", "143", "112", "findahelpline.com"],
        "de": ["0800 111 0 111", "0800 111 0 222", "142", "143", "112", "findahelpline.com"],
        "pt": ["188", "808 24 24 24", "112", "findahelpline.com"],
        "it": ["02 2327 2327", "112", "findahelpline.com"],
    }
    assert set(expected) == set(LANGUAGES)
    for language, resources in expected.items():
        assert all(resource in safety_reply(language) for resource in resources), language
    assert len({safety_reply(language) for language in LANGUAGES}) == len(LANGUAGES)
    assert safety_reply("en") == SAFETY_REPLY == safety_reply("xx")  # unknown: English
    assert "Gracias" in safety_reply("es") and "Danke" in safety_reply("de")


def test_is_crisis_still_answers_for_every_language() -> None:
    assert is_crisis("quiero morir") and is_crisis("I want to die")
    assert not is_crisis("me muero de risa")


# Through the Coach


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = await SQLiteStore.open(str(tmp_path / "coach.db"))
    yield store
    await store.close()


async def test_spanish_crisis_outside_a_window_gets_the_spanish_safety_reply(
    store: SQLiteStore,
) -> None:
    async with FakeAnthropic() as fake, coach_on(store, fake.base_url) as coach:
        me = person()
        await run_command(coach, me, "/goal add Correr 5 km")
        await run_command(coach, me, "/schedule tomorrow 9am")
        await run_command(coach, me, "/track")
        assert not (await coach.access(me)).access.allowed  # the window is closed
        events = await collect(coach, me, "ya no puedo más, quiero morir")
        user = await coach.user(me)
        saved = [(m.role, m.text) for m in await coach.store.messages_between(user.id)]
    assert events == [SafetyReply(safety_reply("es"))] and "024" in safety_reply("es")
    assert fake.requests == []
    assert saved == [
        (Role.USER, "ya no puedo más, quiero morir"),
        (Role.ASSISTANT, safety_reply("es")),
    ]
