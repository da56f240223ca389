"""Answer agreement: the official VQA accuracy of a training target against its reference answers.

VQAv2 and OK-VQA collect 10 answers per question; the assistant turn says one answer (VQAv2's
`multiple_choice_answer`, OK-VQA's most frequent one). Its score is what the official evaluation code
(GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py, `VQAEval.evaluate`, at a013f00
"Fixed processing answers bug") gives that answer as the prediction, quirks included (DESIGN.md,
"Example schema"). That code is Python 2; this is a rewrite of its rules, with each quirk named where
it is applied:

1. references and prediction have "\\n" and "\\t" turned into spaces and are stripped;
2. only when the (so cleaned) references are not all identical do references and prediction go
   through `processPunctuation` then `processDigitArticle` (so "Yes" scores 0 against ten "yes");
3. the score is the mean, over the leave-one-out sets of all references but one, of
   min(1, matches / 3): 0.0, 0.3, 0.6, 0.9 or 1.0 for 0, 1, 2, 3 or >= 4 matches among 10.

Python 2 semantics are kept where Python 3 differs on them: `\\d` in the official (non-UNICODE)
patterns matches only ASCII digits, and `unicode.lower()` maps each character to one character
("İ" -> "i"). Characters whose Unicode properties changed after Python 2.7's tables (Unicode 5.2:
Cherokee and Georgian capitals, U+180E as a space) follow Python 3's; the sources' answers are English.
"""

import functools
import re
from dataclasses import dataclass
from typing import Optional, Sequence

# processPunctuation's characters (the 2015 beta's list differed): not "'", ":" or "." (the period has
# a rule of its own), and "," only as punctuation (the digit-comma rule below decides how it goes).
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_PUNCTUATION_SET = frozenset(PUNCTUATION)
# commaStrip, `(\d)(\,)(\d)`: anywhere in the answer, it makes every punctuation character vanish
# instead of becoming a space ("1,000" -> "1000", and "a-b 1,2" -> "ab 12").
_DIGIT_COMMA_DIGIT = re.compile(r"[0-9],[0-9]")
# periodStrip, `(?!<=\d)(\.)(?!\d)`: its first group is a negative *lookahead* for the text "<=" and a
# digit, which a position holding "." never starts with, so it always passes: what is left is "a period
# not followed by a digit", whatever precedes it ("2.5" and ".5" keep their period, "2." and "a.b" lose it).
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?![0-9])")
# The official call is `periodStrip.sub("", text, re.UNICODE)`: the flag lands in `count`, so at most
# re.UNICODE == 32 periods are removed.
_PERIODS_REMOVED_AT_MOST = 32

NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES = frozenset({"a", "an", "the"})
# processDigitArticle's contractions, applied word by word after lower-casing. Left out of the official
# table because they can never change a word: "Im", "Ive", "Id've" and "I'dve" (words are lower-cased
# before the look-up) and "let's" and "she's" (mapped to themselves). "somebody'd" -> "somebodyd" is
# the official table's (reversed) entry, kept as it is.
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
    "it'dve": "it'd've", "itll": "it'll", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip

# The sources whose questions have REFERENCE_ANSWERS answers each, and whose turns carry their agreement.
AGREEMENT_SOURCES = ("vqav2", "okvqa")
REFERENCE_ANSWERS = 10
# The build report's skip reason of a turn whose score is below `min_answer_score`.
LOW_AGREEMENT = "low_agreement"

# A training target and its references repeat across questions (VQAv2 has a few thousand distinct
# answers): normalise each distinct string once per process.
_CACHE_SIZE = 1 << 16


@dataclass(frozen=True, slots=True)
class Agreement:
    count: int  # references equal to the target, both as the official evaluation compares them
    score: float  # the official VQA accuracy of the target


def answer_agreement(target: str, references: Sequence[str]) -> Agreement:
    """How many of `references` agree with `target`, and the official accuracy that gives it."""
    cleaned, normalised_references = _reference_forms(tuple(references))  # the readers' answers are tuples already
    target = _cleaned(target)
    if normalised_references is None:  # identical references: neither they nor the target are normalised
        count = cleaned.count(target)
    else:
        count = normalised_references.count(_normalised_cleaned(target))
    return _agreement(count, len(cleaned))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _reference_forms(references: tuple[str, ...]) -> tuple[tuple[str, ...], Optional[tuple[str, ...]]]:
    """(the references cleaned, normalised or None when the cleaned ones are all identical). Cached by the
    tuple: the readers give equal answer lists one tuple, and ten "yes" or "no" come again and again."""
    if not references:
        raise ValueError("the VQA accuracy needs at least one reference answer")
    cleaned = tuple(map(_cleaned, references))
    if len(set(cleaned)) == 1:
        return cleaned, None
    return cleaned, tuple(map(_normalised_cleaned, cleaned))


@functools.lru_cache(maxsize=None)  # one per (count, references): a few dozen
def _agreement(count: int, references: int) -> Agreement:
    return Agreement(count, accuracy(count, references))


def accuracy(count: int, references: int = REFERENCE_ANSWERS) -> float:
    """The mean over the `references` leave-one-out sets of min(1, matches / 3), rounded once.

    Leaving out one of the `count` matching references leaves count - 1 matches, leaving out any other
    leaves `count`. Summed exactly (in thirds) and divided once, so 3 of 10 gives 0.9, the table value
    DESIGN.md fixes, where the official float sum can give 0.8999999999999998 (the order it adds 2/3
    and 1 in).
    """
    if not 0 <= count <= references:
        raise ValueError(f"{count} matching references of {references}")
    thirds = count * min(3, max(count - 1, 0)) + (references - count) * min(3, count)
    return thirds / (3 * references)


def normalised(answer: str) -> str:
    """`processDigitArticle(processPunctuation(answer))` of the official code."""
    return _digits_and_articles(_punctuation(answer))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cleaned(answer: str) -> str:
    """Newlines and tabs as spaces, the ends stripped: what evaluate compares, normalised or not."""
    return answer.replace("\n", " ").replace("\t", " ").strip()


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _normalised_cleaned(cleaned: str) -> str:
    return normalised(cleaned)


def _punctuation(text: str) -> str:
    present = _PUNCTUATION_SET.intersection(text)
    if present:
        # Each character is decided on the text as it came in, not as earlier replacements left it.
        vanish_all = _DIGIT_COMMA_DIGIT.search(text) is not None
        table = {}
        for mark in present:
            vanishes = vanish_all or mark + " " in text or " " + mark in text
            table[ord(mark)] = "" if vanishes else " "
        text = text.translate(table)
    if "." in text:
        text = _PERIOD_NOT_BEFORE_DIGIT.sub("", text, count=_PERIODS_REMOVED_AT_MOST)
    return text


def _digits_and_articles(text: str) -> str:
    words = []
    for word in _python2_lower(text).split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def _python2_lower(text: str) -> str:
    """Python 2's `unicode.lower()`: character by character, one for one. Python 3 lowers a word's
    final "Σ" to "ς" (a single "Σ" lowers to "σ", as in Python 2) and "İ" to "i" plus a combining dot."""
    if text.isascii():
        return text.lower()
    return "".join(_ONE_CHARACTER_LOWER.get(character) or character.lower() for character in text)


_ONE_CHARACTER_LOWER = {"\u0130": "i"}
