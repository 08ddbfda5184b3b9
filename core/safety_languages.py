"""Crisis language, per language: what it sounds like, what only sounds like it, and the reply.

Data only; `core/safety.py` folds the text and runs it. To add a language, add one entry to
`LANGUAGES` (and its true and false cases to tests/data/safety_corpus.json).

Patterns are regular expressions over *folded* text: lower case, accents removed ("é" -> "e",
"ü" -> "u", "ß" -> "ss"), zero-width characters gone, curly apostrophes straight, every run of
whitespace one space. So write them without accents and with single spaces; where people also
spell a letter out ("möchte" as "moechte"), allow both (`mo(e)?chte`).
- `crisis`: any match means the safety reply. High recall is the design: a false positive
  costs one caring message, a miss far more.
- `everyday`: idioms that borrow the words ("me muero de risa", "farla finita con questo
  progetto"). They are cut out of the text before `crisis` runs, so a real cry in the same
  message still matches.
- `hints`: common short words of the language, counted only when several languages' `crisis`
  match (a bare "suicidio" is Spanish and Italian) to pick whose reply to give. They are
  compared with the words as typed and as folded, so a hint with its accents ("suicídio")
  counts only when the accent was typed.
- `reply`: resources that fit speakers of the language. Only numbers we are sure of;
  findahelpline.com covers every other country.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CrisisLanguage:
    crisis: tuple[str, ...]
    everyday: tuple[str, ...]
    hints: frozenset[str]
    reply: str


ENGLISH = CrisisLanguage(
    crisis=(
        r"\bkill(ing)? my ?self\b",
        r"\bend(ing)? (it all|my (own )?life)\b",
        r"\btake my (own )?life\b",
        r"\bsuicid(e|al)\b",
        r"\b(want(ed|s)? to|wanna) die\b",
        r"\bwish i (was|were) dead\b",
        r"\bbetter off dead\b",
        r"\bno reason (to|for) (live|living)\b",
        r"\bdon'?t want to (live|be alive|wake up)\b",
        r"\b(self ?-?harm|hurt(ing)? myself|cut(ting)? myself)\b",
        r"\boverdos(e|ing)\b",
    ),
    everyday=(
        r"\blive (in|near|with) (?!(\w+ ){0,2}(world|pain|fear|guilt|myself)\b)\w+",
        r"\bdie (of (embarrassment|boredom|shame)|laughing)\b",
        r"\bwake up (early|at|before|so)\b",
    ),
    hints=frozenset("i me my the and to a is am it of about want really".split()),
    reply=(
        "I'm really glad you told me, and I'm taking it seriously. I'm an AI coach, so I can't "
        "give you the support you deserve right now, but people can, right away:\n"
        "• If you might act on these thoughts or are in danger, call your local emergency "
        "number now (112 in Europe, 911 in the US and Canada, 999 in the UK).\n"
        "• US and Canada: call or text 988, the suicide and crisis line. UK & Ireland: "
        "Samaritans, 116 123. Elsewhere: findahelpline.com lists free, confidential lines in "
        "your country.\n"
        "• If you can, reach out to someone you trust and tell them how you're feeling.\n"
        "You don't have to go through this alone."
    ),
)

SPANISH = CrisisLanguage(
    crisis=(
        r"\bsuicid(io|ios|a|as|arme|arte|arse|ar)\b",
        r"\b(quiero|quisiera|queria|deseo|ganas de) morir(me)?\b",
        r"\bme (quiero|quisiera) morir\b",
        r"\bme (quiero|quisiera|voy a) (matar|suicidar)\b",
        r"\b(quiero|quisiera|voy a|pienso en|pensando en|ganas de) (matarme|suicidarme)\b",
        r"\b(quiero|quisiera) estar muert[oa]\b",
        r"\bquitarme la vida\b|\b(acabar|terminar) con mi (propia )?vida\b",
        r"\bponer fin a mi (propia )?vida\b",
        r"\b(tirarme|lanzarme|aventarme) (de|por|desde|a|al) (un |una |la |el |las )?"
        r"(puente|ventana|balcon|edificio|azotea|tren|metro|vias)\b",
        r"\bno quiero (seguir )?(vivir|viviendo|estar viv[oa]|despertar)\b",
        r"\bno (tengo|hay|le veo) (razon|razones|motivo|motivos|sentido|ganas) (para|de) "
        r"(vivir|seguir viviendo)\b",
        r"\b(estaria|estaria yo|seria) mejor muert[oa]\b|\bmejor (estaria|estar) muert[oa]\b",
        r"\bojala (estuviera|estuviese) muert[oa]\b",
        r"\b(hacerme dano|autolesion\w*|cortarme (las )?(venas|munecas|brazos))\b",
        r"\bsobredosis\b",
    ),
    everyday=(
        r"\bmori(r|rme) de (risa|hambre|sueno|ganas|calor|frio|verguenza|aburrimiento|envidia)\b",
        r"\bvivir (en|cerca de|lejos de) (?!(\w+ ){0,2}(mundo|dolor|miedo)\b)\w+",
        r"\bdespertar(me)? (temprano|a las|tan)\b",
    ),
    hints=frozenset("yo el la los que y de en mi me no es estoy quiero tengo pensando muy".split()),
    reply=(
        "Gracias por contármelo; me lo tomo muy en serio. Soy un coach de IA, así que ahora "
        "no puedo darte el apoyo que mereces, pero hay personas que sí pueden, ahora mismo:\n"
        "• Si crees que podrías actuar según estos pensamientos o estás en peligro, llama ya "
        "al número de emergencias (112 en Europa, 911 en México, EE. UU. y Canadá).\n"
        "• España: 024, línea de atención a la conducta suicida (gratuita, confidencial, las "
        "24 horas). EE. UU.: llama o escribe al 988 (atención en español). En otros países: "
        "findahelpline.com reúne líneas gratuitas y confidenciales de cada país.\n"
        "• Si puedes, habla con alguien de confianza y cuéntale cómo te sientes.\n"
        "Nadie tiene que pasar por esto sin ayuda."
    ),
)

FRENCH = CrisisLanguage(
    crisis=(
        r"\bsuicid(e|es|er|aire|aires)\b",
        r"\b(veux|voudrais|envie de|prefererais) mourir\b",
        r"\b(veux|voudrais|vais|envie de|pense a|penser a) me tuer\b",
        r"\b(veux|voudrais|prefererais) etre mort(e)?\b",
        r"\ben finir\b",
        r"\bmettre fin a (mes jours|ma vie)\b",
        r"\bme foutre en l' ?air\b",
        r"\b(veux|voudrais) plus vivre\b|\bne veux plus vivre\b",
        r"\b(plus|aucune|pas de) (envie|raison) de vivre\b",
        r"\b(me faire du mal|me scarifier|scarification\w*|automutil\w*)\b",
        r"\bme (couper|taillader) les veines\b",
        r"\b(overdose|surdose)\b",
    ),
    everyday=(
        r"\bmourir de (rire|faim|soif|froid|chaud|ennui|honte|envie|peur)\b",
        # "en finir avec ce dossier" is about work; "en finir avec la vie" is not cut out.
        r"\ben finir avec (ce|cet|cette|ces|le|la|les|mon|ton|son|un|une|ca|l') ?(?!vie\b)\w+",
        r"\bvivre (a|en|au|aux|dans|pres de|loin de) (?!(\w+ ){0,2}(monde|douleur|peur)\b)\w+",
    ),
    hints=frozenset("je j le la les et que de veux suis ne pas mon ma au avec moi c est".split()),
    reply=(
        "Merci de m'en avoir parlé ; je le prends très au sérieux. Je suis un coach IA : je ne "
        "peux pas t'apporter maintenant le soutien que tu mérites, mais des personnes le "
        "peuvent, tout de suite :\n"
        "• Si tu risques de passer à l'acte ou si tu es en danger, appelle maintenant les "
        "urgences (112 en Europe, 911 au Canada).\n"
        "• France : 3114, numéro national de prévention du suicide (gratuit, 24 h/24). "
        "Suisse : La Main Tendue, 143. Canada : 988. Ailleurs : findahelpline.com recense les "
        "lignes gratuites et confidentielles de ton pays.\n"
        "• Si tu peux, parle à une personne de confiance et dis-lui ce que tu ressens.\n"
        "Personne ne devrait traverser ça sans aide."
    ),
)

GERMAN = CrisisLanguage(
    crisis=(
        r"\b(selbstmord|suizid|freitod|selbstto(e)?tung)\w*",
        r"\b(will|mo(e)?chte|wurde|wuerde|ware|waere) (lieber )?(sterben|tot sein)\b",
        r"\b(ware|waere|bin) (lieber|besser) tot\b",
        r"\b(will|mag|mo(e)?chte|kann) nicht mehr leben\b",
        r"\bnicht mehr leben (will|mag|mo(e)?chte|wollen)\b",
        r"\b(kein(en)?|ohne) (sinn|grund) mehr (zu leben|im leben)\b",
        r"\blebensmu(e)?de\b",
        r"\bich bring(e)? mich (\w+ )?um\b",
        r"\b(will|werde|mo(e)?chte|wurde|wuerde) mich (\w+ )?(umbringen|to(e)?ten)\b",
        r"\bmich (umzubringen|zu to(e)?ten)\b",
        r"\bmir das leben (zu )?nehmen\b",
        r"\b(mich selbst verletzen|selbstverletzung|ich ritze mich|mich ritzen)\b",
        r"\bu(e)?berdosis\b",
    ),
    everyday=(
        r"\bsterben? vor (hunger|durst|lachen|langeweile|neugier|hitze|kalte|kaelte)\b",
        r"\bvor (hunger|durst|lachen|langeweile|neugier|hitze|kalte|kaelte) sterben\b",
    ),
    hints=frozenset("ich und die der das nicht mich mir mehr will bin ist ein es zu".split()),
    reply=(
        "Danke, dass du mir das sagst – ich nehme das ernst. Ich bin ein KI-Coach und kann dir "
        "gerade nicht die Unterstützung geben, die du verdienst, aber Menschen können das, "
        "sofort:\n"
        "• Wenn du fürchtest, nach diesen Gedanken zu handeln, oder in Gefahr bist, ruf jetzt "
        "den Notruf an: 112.\n"
        "• Deutschland: TelefonSeelsorge, 0800 111 0 111 oder 0800 111 0 222 (kostenlos, rund "
        "um die Uhr). Österreich: Telefonseelsorge, 142. Schweiz: Die Dargebotene Hand, 143. "
        "Anderswo: findahelpline.com nennt kostenlose, vertrauliche Hotlines in deinem Land.\n"
        "• Wenn du kannst, wende dich an einen Menschen, dem du vertraust, und erzähl, wie es "
        "dir geht.\n"
        "Du musst da nicht allein durch."
    ),
)

PORTUGUESE = CrisisLanguage(
    crisis=(
        r"\bsuicid(io|ios|a|as|ar|ar-me)\b",
        r"\b(quero|queria|vontade de) morrer\b",
        r"\b(quero|queria|vou|penso em|pensando em|vontade de)[ -](me[ -]matar|matar-me|"
        r"me[ -]suicidar|suicidar-me)\b",
        r"\bme (mato|matarei)\b",
        r"\b(quero|queria) estar mort[oa]\b",
        r"\b(tirar|acabar com|por fim a|por fim na) (a )?(minha |propria |minha propria )vida\b",
        r"\bnao (quero|aguento) mais viver\b|\bnao quero (mais )?(viver|estar viv[oa])\b",
        r"\b(sem|nenhum|nenhuma|nao tenho) (razao|razoes|motivo|motivos|sentido) (para|pra|de) "
        r"viver\b",
        r"\b(estaria|seria) melhor mort[oa]\b|\bmelhor (estaria|estar|seria estar) mort[oa]\b",
        r"\b(automutila\w*|autolesa\w*|me machucar de proposito|me ferir de proposito)\b",
        r"\boverdose\b",
    ),
    everyday=(
        r"\bmor(rer|rendo|ro) de (rir|fome|sono|saudade(s)?|calor|frio|vontade|medo|tedio|"
        r"vergonha|inveja)\b",
        r"\bme mato de (trabalhar|rir|estudar|tanto)\b",
        r"\bviver (em|no|na|nos|nas|perto de|longe de) (?!(\w+ ){0,2}(mundo|dor|medo)\b)\w+",
    ),
    hints=frozenset("eu o a que e de em nao não você minha meu estou quero tenho suicídio".split()),
    reply=(
        "Obrigado por me contar isso; levo muito a sério. Sou um coach de IA, por isso agora "
        "não consigo dar o apoio que você merece, mas há pessoas que podem, já:\n"
        "• Se acha que pode agir de acordo com esses pensamentos ou está em perigo, ligue "
        "agora para a emergência: 112 em Portugal e na Europa, 192 (SAMU) no Brasil.\n"
        "• Brasil: CVV, 188 (gratuito, 24 horas) ou cvv.org.br. Portugal: SNS 24, "
        "808 24 24 24. Noutros países: findahelpline.com lista linhas gratuitas e "
        "confidenciais em cada país.\n"
        "• Se puder, fale com alguém de confiança e conte como se está sentindo.\n"
        "Ninguém precisa passar por isso sem ajuda."
    ),
)

ITALIAN = CrisisLanguage(
    crisis=(
        r"\bsuicid(io|i|a|armi|arsi|ario)\b",
        r"\b(voglio|vorrei|voglia di) morire\b",
        r"\b(voglio|vorrei|penso di|pensando di|sto per|voglia di) "
        r"(uccidermi|ammazzarmi|suicidarmi)\b",
        r"\bmi (voglio|vorrei) (uccidere|ammazzare|suicidare)\b",
        r"\bmi ammazzo\b(?! di\b)",
        r"\b(voglio|vorrei) essere mort[oa]\b",
        r"\b(togliermi|togliere) la (mia )?vita\b",
        r"\bfarla finita\b",
        r"\bnon (voglio|ce la faccio a) (piu )?vivere\b|\bnon ce la faccio (piu )?a vivere\b",
        r"\b(nessun |nessuna |non ho (piu )?(un |una )?)(motivo|ragione) (per|di) vivere\b",
        r"\bmeglio (se fossi )?mort[oa]\b",
        r"\b(farmi del male|autolesion\w*|tagliarmi (le vene|i polsi))\b",
        r"\boverdose\b",
    ),
    everyday=(
        r"\b(muoio|morire|morendo|morto) (dal|dalle|di|da) (ridere|risate|fame|sonno|caldo|"
        r"freddo|noia|voglia|invidia|vergogna)\b",
        r"\bfarla finita con (questo|questa|questi|queste|il|lo|la|le|gli|i|l') ?(?!vita\b)\w+",
        r"\bvivere (a|in|da|vicino a|lontano da) (?!(\w+ ){0,2}(mondo|dolore|paura)\b)\w+",
    ),
    hints=frozenset("io il la che e di non mi mio mia sono sto ho voglio al con piu".split()),
    reply=(
        "Grazie di avermelo detto: lo prendo sul serio. Sono un coach IA, quindi ora non "
        "posso darti il sostegno che meriti, ma ci sono persone che possono, subito:\n"
        "• Se temi di mettere in atto questi pensieri o sei in pericolo, chiama subito il "
        "numero di emergenza: 112.\n"
        "• Italia: Telefono Amico, 02 2327 2327. Svizzera: Telefono Amico, 143. Altrove: "
        "findahelpline.com elenca linee gratuite e riservate nel tuo paese.\n"
        "• Se puoi, parla con una persona di cui ti fidi e dille come ti senti.\n"
        "Nessuno deve affrontare tutto questo senza aiuto."
    ),
)

# In order of preference when a message matches several languages equally (ties are rare).
LANGUAGES: dict[str, CrisisLanguage] = {
    "en": ENGLISH,
    "es": SPANISH,
    "fr": FRENCH,
    "de": GERMAN,
    "pt": PORTUGUESE,
    "it": ITALIAN,
}
