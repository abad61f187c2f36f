r"""Read the chosen option out of a model reply to a multiple-choice question (reference s.6).

Used to keep only teacher traces whose answer is right (m23K), to grade the students of the
difficulty filter, and to score models. A wrong "verified" trace poisons m23K, so the reader only
accepts an answer the reply *states*; a reply that names several options, or none, is a verdict of
its own (``multiple_answers``, ``no_answer``), never a guess.

Precedence: the first rule that reads anything decides, and each rule says why it exists.

1. ``boxed``: the last closed ``\boxed{}``/``\fbox{}`` (reference s.6.1). Both m1 prompts ask for
   it, so it is the model's own answer slot. An unclosed last box (a truncated reply) is no box:
   an earlier, closed box is an answer the model went on to revise.
2. ``statement``: the last explicit answer statement ("the answer is X", "Answer: X", "Final
   answer: X", "the correct option is X", "Option X is correct", "I would pick X"). Reasoning
   models that forget the box still say which option they choose; the last statement is their
   final word (reference: m1 uses the last match). A revision is a statement too ("No wait, it's
   C", "Actually, C.", "Correction: C"), so the answer a reply changes to is its last. Chinese statements are statements too
   ("答案是（C）", "正确答案：C", "故选C", "选C", "所以选 C。", "答案为C项", "C正确", "C是正确的"; see
   ``_CJK_STATEMENT``, ``_CJK_LETTER_IS_CORRECT``): CJK-trained teachers write them, and the last
   statement wins whatever its language, Spanish (HEAD-QA's) included ("La respuesta correcta es
   la C"). A statement asked as a question ("The answer is (A)?", "Is the answer B? No.",
   "C正确吗？") states nothing, as one that rejects its option does; "answer" as a verb ("One
   might answer B, but ...") is no statement. A statement made under a condition (replies explain
   their distractors after answering) states no answer: in an if-clause a main clause follows ("If
   you thought the answer is B, ..."), as the answer to a counterfactual ("If the murmur were
   systolic, the answer would be B"), or restricted right after its letter ("B is correct only for
   systolic murmurs"). As the reply's last statement it ends the rule with no answer, rather than
   let an earlier statement decide: that one may be an answer the reply abandoned.
3. ``answer_line``: a line that is only an answer (``G``, ``(G)``, ``**G. Aortic stenosis**``,
   ``D, F``, an option's exact text) opening or closing the reply. Teachers often answer first and
   explain after, or end with a bare letter. A line inside a list of options (the next or
   previous line also starts with an option letter), or one that comments on its option after a
   colon or a dash (``**D. Mitral regurgitation**: holosystolic``), is a walk through the
   options, not an answer.
   When the opening and the closing line name different options the reply contradicts itself:
   ``multiple_answers``.
4. ``similarity``: the stated answer text (the box, a statement, the closing line, or a short
   reply as a whole) names an option's text: it contains exactly one option's text as whole words
   (one that another contains counts as part of it; "not X", "rules out X", "X is incorrect" do
   not count; "X is contraindicated" and "avoid X" do, as they answer "which drug is
   contraindicated?"), or ends with one unless the words before it weigh it against another
   ("whether X or Y", "maybe, leaning towards yes"), or is a bare number that exactly one option
   writes with one unit ("20" for "20 mg"; an end of a range, "10-15%", names nothing), or is
   within rapidfuzz ratio 85 of exactly one option with a 10-point lead over the next, the same
   negation words ("not aortic stenosis" is not "Aortic stenosis"; "No treatment needed" keeps
   its "no"), the same numbers where both write one ("1500 mg" is not "150 mg") and no word in its
   opposite form ("Hypothyroidism" is not "Hyperthyroidism"; hyphens, spaces and British spellings
   change nothing). An option's text in a sentence that
   ends in a question mark, or a misspelt text asked, names nothing: it is asked, not stated.
   Below that, or on a tie, there is no answer: a similarity that always finds something would
   turn "I don't know" into option A.
   A short reply that lists options by letter (lines ``A. ...``, ``B. ...`` naming two or more
   options) is not an answer text: it names every option it lists and chooses none. Nor is
   "Option N" where the N-th option is not the one its text names (options "4", "3", "2", "1").

The reference's matcher also took the last lone capital letter anywhere in the reply and the
option whose text occurs last anywhere; both misread replies that discuss the options after
answering ("G ... C, B and D are not because ...") and are not used. A letter counts only in an
answer slot (box, statement, answer line), never as a word in running text; and in a slot, a bare
capital that opens a word or a name is no label (``_starts_a_word``): a genus initial (``\boxed{E.
coli}``), the article or the pronoun ("Answer: A selective serotonin reuptake inhibitor",
"Final answer: I think it's B"), a capital and a lower-case word (``\boxed{B cells}``).

The search runs on the text after the last ``</think>`` or ``<|im_start|>answer`` marker first and
on the whole reply second, so a reasoning model's final statement beats what it said while thinking
(rules 1-3 on both texts come before rule 4 on either: a statement, wherever it is, is stronger
evidence than an option's text in the answer section, which may be a distractor explained).
Letters are option letters A, B, ... in the options' order; a letter that names no option is not
an answer. Markdown, ``$``, ``\(...\)`` and font commands (``\text{C}``) around a stated letter
only change its looks: "The answer is \(\text{C}\)" states C. In a statement or box, a letter
followed by a separator and text (``C. Aortic stenosis``) must agree with that text when the text
is an option's; if it names another option the verdict is ``multiple_answers``. A letter followed
by a verdict against it (``A is incorrect``, ``A. Aortic stenosis is not the answer``) or by a
question mark ending its sentence (``(A)?``) names no option: the reply rejects it or asks. A slot
of letter labels alone names every option it labels, however they are joined (``C, D``, ``C and
D``, ``(C)(D)``, ``C D``, and capitals run together in option order, ``CD``; ``BAD`` is a word):
``multiple_answers``, which ends the search like any verdict, so no weaker rule picks one of them.
So do two labels before a text (``(C)(D) Mitral stenosis``; see ``_second_label``). The same letter
twice (``(C) C``) is one answer. Capitals run together that are a whole word of exactly one
option's text, case kept (``ACE`` with "ACE inhibitors" among the options), are that option.

Full-width forms, as CJK-trained teachers (DeepSeek-R1, Qwen) write them (``\boxed{（C）}``,
``\boxed{Ｃ}``, "Answer：Ｃ．"), are their ASCII forms in another font: they are read as ASCII, and
the lenticular and tortoise-shell brackets ``【C】``, ``〔C〕`` as ``[C]`` (see ``_fold_width``).
Their Chinese words follow the English ones: 和/或/与 join letters as "and"/"or" do, "C项错误"
rejects C as "C is incorrect" does (and "答案是C吗？", a question, states nothing), "C正确" states C
as "C is correct" does (not after 不/非 or a condition such as 如果 in its clause), and 不/非/无/错...
must agree for the fuzzy rule as "not" must.
"""

from __future__ import annotations

import operator
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz

from m1data.errors import UserError

__all__ = ["METHODS", "VERDICTS", "Extraction", "Grade", "extract_answer", "grade", "is_correct", "last_boxed"]

VERDICTS = ("answer", "multiple_answers", "no_answer")
METHODS = ("boxed", "statement", "answer_line", "similarity", "none")

SIMILARITY_MIN = 85.0  # rapidfuzz ratio a misspelt answer text must reach
SIMILARITY_LEAD = 10.0  # and its lead over the next-best option
SHORT_REPLY_CHARS = 200  # a reply this short is its own answer text

_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FONT_OPEN = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{")
_ANSWER_MARKERS = ("<|im_start|>answer", "</think>")
_ALL_MARKERS = re.compile(r"<\|im_start\|>(?:think|answer)|<\|im_end\|>|</?think>")

# The same statements in Chinese, simplified or traditional, as CJK-trained teachers (DeepSeek-R1,
# Qwen) write them after the width fold: "答案是(C)", "正确答案:C", "本题答案为C", "[答案]C" (from
# "【答案】"), "正确选项是C", "故选C", "所以我选择 C.". Chinese has no spaces, so no \b: a choice
# needs a word that concludes (故, 所以, 因此, 应...) before its 选, and none after a negation
# ("不应选C"); "答案不是C" and "答案可能是C" leave no letter at the start of the slot.
_CJK_STATEMENT = (
    r"\[?(?:(?:正[确確]|最[终終]|最佳|[标標]准|参考|參考)的?)?答案\]?"
    r"(?:[应應](?:[该該])?(?:是|[为為]|[选選])|是|[为為]|[选選])?"
    r"|(?:正[确確]|最[终終]|最佳)的?[选選][项項](?:[应應][该該]?)?(?:是|[为為])"
    r"|(?<![不没沒未别別勿])(?:故|所以|因此|因而|本[题題]|我|[则則]|[应應](?:[该該]|[当當])?)+[选選][择擇]?(?![项項])"
    r"|(?<![^\s.,;:!?])[选選][择擇]?(?![项項])"  # "选C" opening a sentence ("如果选C", "if C", does not)
)
_STATEMENT = re.compile(
    r"(?i:" + _CJK_STATEMENT + "|"
    r"\b(?:(?:final|correct|best|right|most\s+likely|most\s+appropriate)\s+)?answer\b"
    r"(?:\s+(?:is|would\s+be|should\s+be|will\s+be|here\s+is|choice\s+is|option\s+is))?"
    # "Ans. C" (MedMCQA's explanations; "ANS" is the autonomic nervous system), "Final: C" opening a line
    r"|(?-i:\bAns\b)\.?(?:\s+is)?(?=[\s:*_])|(?<![^\n*#>])[ \t]*final(?=\s*:)"
    r"|\b(?:correct|right|best|most\s+likely|most\s+appropriate)\s+(?:option|choice|response)(?:\s+(?:is|would\s+be)|(?=\s*:))"
    r"|\bi(?:['’]d|['’]ll|\s+would|\s+will)?\s+(?:pick|choose|select|go\s+with|opt\s+for)"
    # Spanish, as HEAD-QA's own language: "La respuesta correcta es la C", "Respuesta: C", "opción correcta: C"
    r"|\b(?:la\s+)?respuesta(?:\s+(?:correcta|final))?(?:\s+(?:es|ser[ií]a))?(?:\s+la)?(?=[\s:*_])"
    r"|\b(?:la\s+)?opci[oó]n\s+correcta(?:\s+es)?(?:\s+la)?(?=[\s:*_])"
    # a revision, which the last statement rule then takes as the final word: "No wait, it's C",
    # "Hmm, actually C", "Correction: B" (the first answer was read, and scored, before)
    # ("actually" only before "it's" or a label that ends its line: "Actually, A patient ..." is no answer)
    r"|\b(?:no\s*,?\s*)?wait\s*,?\s*(?:it'?s|it\s+is)|\bcorrection\s*:"
    r"|\bactually\s*,?\s*(?:it'?s|it\s+is|(?=[(\[]?[A-Z][)\]]?[.!]?[ \t]*(?:\n|$)))"
    r")[\s:=*_]*(?:[-–—]\s+)?"
)
_LETTER_IS_CORRECT = re.compile(
    r"(?i:\b(?:option|choice)\s+)?(?<![(*\[])[(*\[]*(?<![\w'-])([A-Z])(?![\w'-])[)*\]]*\s+is\s+(?:the\s+)?"
    r"(?i:correct|right|best\s+answer|true\s+answer)\b"
)
# "B is the answer", "So option (B) is the answer"; read only where the word before the letter does
# not make it an option's text ("vitamin A is the answer" with "Vitamin A" among the options)
_LETTER_IS_THE_ANSWER = re.compile(
    r"(?i:\b(?:option|choice)\s+)?(?<![(*\[])[(*\[]*(?<![\w'-])([A-Z])(?![\w'-])[)*\]]*\s+is\s+(?:the\s+)?(?i:answer)\b"
)
_LETTER_PREFIX = r"(?:(?i:option|choice)\s+)?"
_LETTER_JOIN = r"(?:,|;|&|/|\+|\band\b|\bor\b|[和或与與及])"  # what joins letters in a list: "C, D", "C and D", "C和D"
# "Option C is correct" in Chinese, the labels first: "C正确", "C是正确的", "C选项正确", "C为正确答案",
# "A和C都正确". Group 1 is the labels, read as a statement's slot. Chinese has no spaces, so a
# bare capital only needs no Latin letter or digit next to it ("DNA正确" names no option).
_CJK_LABEL = r"(?:\([A-Z]\)|\[[A-Z]\]|(?<![A-Za-z0-9])[A-Z](?![A-Za-z0-9]))"
_CJK_LETTER_IS_CORRECT = re.compile(
    r"(?:[选選][项項])?(" + _CJK_LABEL + r"(?:\s*" + _LETTER_JOIN + r"\s*" + _CJK_LABEL + r")*)"
    r"\s*(?:[选選]?[项項])?(?:都|均)?(?:是|[为為])?正[确確]"
)
# What makes "C正确" no statement when it comes earlier in its clause: a negation ("并非C正确") or a
# condition ("如果C正确", if C is correct; "是否C正确", whether C is correct).
_CJK_UNSTATED = re.compile(r"[不非没沒]|如果|假如|假设|假設|若|要是|倘若|是否")
_LETTER_LIST = re.compile(
    r"^" + _LETTER_PREFIX + r"\(?([A-Za-z])\)?((?:\s*" + _LETTER_JOIN + r"\s*\(?[A-Za-z]\)?)+)$"
)
_LIST_ITEM = re.compile(r"(?<![A-Za-z])([A-Za-z])(?![A-Za-z])")
# Two or more letter labels and nothing else, with or without separators: "(C)(D)", "[C] [D]",
# "C D", "C. D", "C \& D", "(C) C". Bare labels are capitals, so "i.e." or "a b" are no labels.
_LABEL = r"(?:\([A-Za-z]\)|\[[A-Za-z]\]|[A-Z](?![A-Za-z])[).:]?)"
_LABEL_RUN = re.compile(r"^" + _LABEL + r"(?:(?:\s|\\[&,;]|" + _LETTER_JOIN + r")*" + _LABEL + r")+$")
# "CD", "ACE", and "CD)" closed as a bare label is ("D)"): read as letters only in option order.
_LETTER_RUN = re.compile(r"^([A-Z]{2,})[).:]?$")
_EXACT_LETTER = re.compile(r"^" + _LETTER_PREFIX + r"(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Za-z])[).:]?)$")
# A lower-case letter counts only with a separator and a space ("c. aortic stenosis", "(c) ..."),
# as reference s.6.2 compares case-insensitively; "a beta blocker" and "i.e. x" are no letters.
# A capital followed by 项 or 选项 ("option") is one too: "故选C项", "答案为C选项".
_LETTER_THEN_TEXT = re.compile(
    r"^" + _LETTER_PREFIX + r"(?:\(([A-Za-z])\)|\[([A-Za-z])\]|"
    r"([A-Z](?=[).:,]|\s+[-–—]|\s|[选選]?[项項])|[a-z](?=[).:]\s)))"
    r"[).:,]?\s*[-–—]?\s*(.*)$",
    re.DOTALL,
)
_LINE_LETTER = re.compile(r"^" + _LETTER_PREFIX + r"(?:\(([A-Z])\)|\[([A-Z])\]|([A-Z])(?:[).:]|\s+[-–—]|$))")
_NEGATION = re.compile(
    r"(?i:(?:\b(?:not|no|nor|neither|except|unlikely|excludes?|excluding|rules?\s+out|ruled\s+out|"
    r"rather\s+than|instead\s+of|than)|n't)\W*(?:\w+\W+)?)$"
)
# A verdict against the option just named, right after its letter or its text: "A is incorrect",
# "(A): wrong", "Aortic stenosis is not the answer", "B is unlikely". A bare "is not" is no
# verdict ("C. Hypokalaemia is not seen in ..." answers an EXCEPT question), nor is ", not B".
_COPULA = r"(?:is|are|was|seems|appears|would\s+be|can\s+be|must\s+be|has\s+been)"
_COPULA_NOT = r"(?:(?:is|are|was|seems|appears)\s+not|isn't|aren't|wasn't|would\s+not\s+be|cannot\s+be|can't\s+be)"
_REJECTED = r"(?:incorrect(?:[ao]s?)?|wrong|false|fals[ao]s?|unlikely|less\s+likely|ruled\s+out|excluded|eliminated)"
_NOT_CHOSEN = r"(?:the\s+)?(?:correct|right|best|true|answer|likely|it)"
# In Chinese, after a letter (with or without 项, "option") as after an option's text: "C项错误",
# "C是错的", "C不正确", "C可以排除", "C不是答案". A bare 不是 is no verdict, as "is not" is not.
# A question ("答案是C吗？", is the answer C?) states nothing either: thinking is full of them.
_CJK_REJECTED = (
    r"(?:[选選]?[项項])?(?:(?:是|[为為]|可以|可)?"
    r"(?:[错錯]误|[错錯]的|不正[确確]|不[对對]|被?排除|不[选選]|不是(?:正[确確]的?|答案))|[吗嗎呢])"
)
# The rest of a sentence that ends in a question mark: "The answer is (A)?", "Is the answer (B)?
# No.", "C正确吗？" (after the width fold). A question asks about the option; it does not state it.
_QUESTION_AFTER = r"[^.!?\n]*\?"
_REJECTED_AFTER = re.compile(
    r"^[\s*_`)\],]*(?i:"
    r"(?:[:(–—-][\s*_`]*|" + _COPULA + r"\s+)" + _REJECTED + r"\b"
    r"|" + _COPULA_NOT + r"\s+" + _NOT_CHOSEN + r"\b"
    r"|" + _CJK_REJECTED + r"|" + _QUESTION_AFTER + r")"
)
# Words that turn a text into its opposite or reject it; the fuzzy fallback needs them to agree
# (see _negations). Chinese ones have no word boundary to wait for: "不是主动脉瓣狭窄" (not aortic
# stenosis) is within ratio 85 of "主动脉瓣狭窄", as "not aortic stenosis" is of its option.
_NEGATION_WORD = re.compile(
    r"(?i:\b(?:not|no|nor|neither|none|non|never|without|except|unlikely|excludes?|excluded|excluding|"
    r"rules?\s+out|ruled\s+out|rather\s+than|instead\s+of|incorrect|wrong|false|eliminated)\b|n't\b"
    r"|不|[没沒]有|[无無]|未|非|否|[错錯]|排除|除外)"
)
_DECORATION = "*_`$ \t\n"
# Full-width ASCII (U+FF01-U+FF5E) to ASCII, but not the backslash and braces, which would make
# LaTeX commands and boxes the reply does not have; the ideographic space, comma and full stop;
# and the CJK brackets that frame a label as "[C]" does.
_WIDTH_FOLD = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F) if chr(code - 0xFEE0) not in "\\{}"} | {
    ord("\u3000"): " ",
    ord("、"): ",",
    ord("。"): ".",
    ord("【"): "[",
    ord("】"): "]",
    ord("〔"): "[",
    ord("〕"): "]",
}
# Words that follow a stated letter in running text ("The answer is C because ...", "C is ..."):
# after them a bare capital is still a label (see _starts_a_word).
_AFTER_A_LABEL = frozenset(
    "because since as given due which is seems appears fits best in for with here this that it "
    "and or but so then however though although on from per based over rather not vs versus also only "
    "remains makes explains describes matches accounts according considering when where after before "
    "even owing without by at again too definitely now despite while whereas hence thus overall clearly "
    "indeed still once under until unless if to of first instead regardless anyway ultimately finally alone "
    "among namely i e viz all therefore accordingly above option actually either via plus the its these those "
    "both none each any considered upon below listed shown stated being choice".split()
)
_OPTION_WORD = re.compile(r"^(?i:options?|choices?)\s+")
_BULLET = re.compile(r"^\s*(?:[-*•+]|\d+[.)])\s+")


@dataclass(frozen=True)
class Extraction:
    """What was read from a reply.

    ``verdict`` is "answer" (``letter`` holds the option), "multiple_answers" (``letters`` holds
    every option named) or "no_answer". ``method`` names the rule that decided (see the module
    notes; "none" for no_answer). ``text`` is the content of the last closed box (None without
    one), kept so an audit can see what the model wrote even when it maps to no option.
    """

    letter: str | None
    text: str | None
    method: str
    verdict: str = "answer"
    letters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Grade:
    """A reply graded against the right option: ``correct`` and the extraction it rests on."""

    correct: bool
    extraction: Extraction


# --- boxes --------------------------------------------------------------------------------------


def _closing_brace(text: str, open_at: int) -> int | None:
    """Index of the brace closing the one at ``open_at``; None when the reply ends first.
    Backslash-escaped braces do not count."""
    depth = 0
    i = open_at
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _unwrap_fonts(content: str) -> str:
    """``\\text{C. Aortic stenosis}`` -> ``C. Aortic stenosis``: font commands only change looks."""
    while True:
        match = _FONT_OPEN.search(content)
        if match is None:
            return content
        close = _closing_brace(content, match.end() - 1)
        if close is None:
            return content
        content = content[: match.start()] + content[match.end() : close] + content[close + 1 :]


def _last_boxed_raw(text: str) -> str | None:
    """Unwrapped content of the last box, before the ``=`` rule; None if absent or unclosed."""
    opens = list(_BOX_OPEN.finditer(text))
    if not opens:
        return None
    start = opens[-1].end() - 1
    close = _closing_brace(text, start)
    if close is None:
        return None
    return _ungrouped(_unwrap_fonts(text[start + 1 : close]).strip())


_FONT_SWITCH = re.compile(r"\A\\(?:rm|bf|it|sf|tt)\b\s*")


def _ungrouped(content: str) -> str:
    r"""``{C}`` -> ``C``, ``{\rm C}`` -> ``C``: a group around the whole content, and an old font
    switch at its start, only change looks (``\boxed{{C}}`` was read as no answer; audit)."""
    while True:
        content = _FONT_SWITCH.sub("", content)
        if not (content.startswith("{") and _closing_brace(content, 0) == len(content) - 1):
            return content
        content = content[1:-1].strip()


def _after_last_equals(content: str) -> str:
    """``x = 5`` -> ``5``: a boxed equation's answer is its right-hand side (reference s.6.1)."""
    if "=" not in content:
        return content
    return content.rsplit("=", 1)[1].strip()


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{}``/``\fbox{}`` (balanced braces, fonts unwrapped, the part
    after the last ``=`` if any), stripped; None when there is no closed box."""
    raw = _last_boxed_raw(text)
    if raw is None:
        return None
    return _after_last_equals(raw)


def _box_candidates(raw: str | None) -> list[str]:
    """Whole box content first, then its ``=`` tail, so an option like ``pH = 7.4`` still maps."""
    if raw is None:
        return []
    tail = _after_last_equals(raw)
    return [raw] if tail == raw else [raw, tail]


# --- reading one answer slot --------------------------------------------------------------------


def _normalise(text: str) -> str:
    """Fold away what does not change an answer: case, spacing, markdown, ``$``, end punctuation."""
    folded = " ".join(text.casefold().split())
    return folded.strip(_DECORATION).rstrip(".!;, ").strip(_DECORATION)


_MATH_DELIMITER = re.compile(r"\\[()\[\]]")


def _clean(fragment: str) -> str:
    """A slot's text without markdown emphasis, LaTeX math delimiters (``\\(C\\)``, ``$C$``), font
    commands (``\\text{C}``), and end punctuation, case kept: all of them only change looks."""
    fragment = _MATH_DELIMITER.sub("", _unwrap_fonts(fragment))
    text = " ".join(fragment.replace("**", "").replace("__", "").split())
    return text.strip(_DECORATION).rstrip(".!;, ").strip(_DECORATION)


def _letters(options: Sequence[str]) -> str:
    """Option letters in order; more than 26 options has no letter scheme to follow."""
    if len(options) > len(string.ascii_uppercase):
        raise UserError(f"at most 26 options are supported, got {len(options)}")
    return string.ascii_uppercase[: len(options)]


def _index(letter: str, options: Sequence[str]) -> int | None:
    index = string.ascii_uppercase.find(letter.upper())
    return index if 0 <= index < len(options) else None


def _text_index(text: str, options: Sequence[str]) -> int | None:
    """The first option whose text equals ``text`` (normalised)."""
    normal = _normalise(text)
    for index, option in enumerate(options):
        if normal and normal == _normalise(option):
            return index
    return None


def _first_group(match: re.Match[str]) -> str:
    return next(group for group in match.groups() if group)


# an option's label inside a line ("(B) ", "B. ", "B) "), at its start or after a space
_INLINE_LABEL = re.compile(r"(?:^|(?<=\s))(?:\(([A-Z])\)|([A-Z])[.)])\s+")


def _inline_list(text: str, options: Sequence[str]) -> tuple[int, ...] | None:
    """The options a one-line list names ("(A) Metformin (B) Insulin", "A. x B. y"), each label
    followed by its own option's text; None for any other text. Why: read from its first label,
    a model echoing the options on one line answered A, and "Options: (A) x (B) y" answered the
    last by similarity (audit). After "Answer:" it names every option in it; as a line of its own
    it states none (`_read_line`), as a list a line each does not."""
    labels = list(_INLINE_LABEL.finditer(text))
    if len(labels) < 2 or labels[0].start():  # "Not (A) x. (B) y." is no list
        return None
    named = []
    for label, after in zip(labels, [*labels[1:], None]):
        index = _index(label.group(1) or label.group(2), options)
        if index is None or _text_index(text[label.end(): after.start() if after else len(text)], options) != index:
            return None
        named.append(index)
    return tuple(sorted(set(named))) if len(set(named)) >= 2 else None


def _read_slot(fragment: str, options: Sequence[str]) -> tuple[int, ...] | None:
    """Options a box or statement names: one index, several (a list, or a letter that disagrees
    with its text), or None when it names no option by letter or exact text."""
    text = _clean(fragment)
    if not text:
        return None
    own = _label_and_own_text(text, options)
    if own is not None:
        return (own,)
    if _LETTER_LIST.match(text):
        found = {_index(letter, options) for letter in _LIST_ITEM.findall(_OPTION_WORD.sub("", text))}
        return None if None in found else tuple(sorted(found))  # type: ignore[type-var]
    exact = _EXACT_LETTER.match(text)
    if exact:
        index = _index(_first_group(exact), options)
        return None if index is None else (index,)
    by_text = _text_index(text, options)
    if by_text is not None:
        return (by_text,)
    abbreviation = _option_word(text, options)
    if abbreviation is not None:
        return (abbreviation,)
    run = _letter_run(text)
    if run is not None:
        found = {_index(letter, options) for letter in run}
        return None if None in found else tuple(sorted(found))  # type: ignore[type-var]
    listed = _inline_list(text, options)
    if listed is not None:
        return listed
    prefixed = _LETTER_THEN_TEXT.match(text)
    if prefixed:
        letter_end = max(prefixed.end(group) for group in (1, 2, 3) if prefixed.group(group))
        index = _index(prefixed.group(1) or prefixed.group(2) or prefixed.group(3), options)
        if index is None:
            return None
        named = _text_index(prefixed.group(4), options)
        if named is None and prefixed.group(3) and _starts_a_word(text[letter_end:], options):
            return None
        if named is None and _rejects_letter(text, letter_end, prefixed.group(4), options[index]):
            return None
        if named is None:
            return tuple(sorted({index, *(_second_label(prefixed.group(4), options) or ())}))
        return (index,) if named == index else tuple(sorted({index, named}))
    return None


def _label_and_own_text(text: str, options: Sequence[str]) -> int | None:
    """The option a label and that option's own text name together, as the prompt lists it ("C. B",
    "(C) B", "C) B" where option C is "B"); None for anything else. Why first: with options that are
    letters (blood groups A, B, AB, O, shuffled), "C. B" was read as the letters C and B, and a right
    answer in the prompt's own words was graded as two answers (36 of 96 orders and keys)."""
    prefixed = _LETTER_THEN_TEXT.match(text)
    if prefixed is None:
        return None
    letter_end = max(prefixed.end(group) for group in (1, 2, 3) if prefixed.group(group))
    if prefixed.group(3) and text[letter_end:letter_end + 1] not in (".", ")", ":"):
        return None  # "C B" is no label and its text
    index = _index(prefixed.group(1) or prefixed.group(2) or prefixed.group(3), options)
    return index if index is not None and _text_index(prefixed.group(4), options) == index else None


def _starts_a_word(after: str, options: Sequence[str]) -> bool:
    """Whether a bare capital opens a word or a name rather than labelling an option: a genus
    initial (``E. coli``, ``H. pylori-associated``: a full stop, then a word of lower-case letters
    that starts no option's text), or a capital and a lower-case word that is not one of those a
    stated letter is followed by: the article or the pronoun (``A selective serotonin reuptake
    inhibitor``, ``I think it's B``), a name (``\boxed{B cells}``, ``D dimer testing``). Each was
    read as that option's letter, and a wrong trace was kept. Labels still: "C because ...", "A
    probably", mixed-case words after a full stop (``B. cGMP``, ``B. mRNA``), and an option's text
    in lower case after its letter (``A. increased ADH release``, MedMCQA's options)."""
    if after.startswith("."):
        genus = re.match(r"\.\s*([a-z]{3,})(?!\w)", after)
        return genus is not None and genus.group(1) not in _AFTER_A_LABEL | _first_words(options)
    word = re.match(r"\s+([a-z][\w'-]*)", after)
    if word is None or word.group(1) in _AFTER_A_LABEL or word.group(1).endswith("ly"):
        return False
    return word.group(1) not in _first_words(options)


def _first_words(options: Sequence[str]) -> set[str]:
    return {words[0].strip(string.punctuation) for words in (_normalise(option).split() for option in options) if words}


def _second_label(rest: str, options: Sequence[str]) -> tuple[int, ...] | None:
    """Options named by a second letter label that opens the text after a slot's letter:
    ``(C)(D) Mitral stenosis`` hedges between C and D as ``(C)(D)`` does (it was read as C, the
    text "(D) Mitral stenosis" naming no option). The label counts when it is bracketed, or when
    the text after it is an option's (``C. D. Mitral stenosis``): a capital that starts the text's
    first word ("B cells are lacking", "E. coli infection") is no label."""
    label = _LETTER_THEN_TEXT.match(rest)
    if label is None:
        return None
    if not (label.group(1) or label.group(2)) and _text_index(label.group(4), options) is None:
        return None
    return _read_slot(rest, options)


def _option_word(text: str, options: Sequence[str]) -> int | None:
    """The one option that has ``text``, capitals run together in option order, as a whole word,
    case kept: ``ACE`` with "ACE inhibitors" among the options, ``AB`` with "AB blood group". The
    model wrote that option's abbreviation, not the letters A, C and E. None when no option has
    the word, or several do (then the run is letters, as ``_letter_run`` reads it)."""
    run = _LETTER_RUN.match(text)
    if run is None or _letter_run(text) is None:
        return None
    word = re.compile(r"(?<!\w)" + re.escape(run.group(1)) + r"(?!\w)")
    holders = [index for index, option in enumerate(options) if word.search(option)]
    return holders[0] if len(holders) == 1 else None


def _letter_run(text: str) -> str | None:
    """The letters of a slot made of letter labels only, two or more: ``(C)(D)``, ``C D``,
    ``(C) C``, or capitals run together in option order (``CD``, ``ACD``: how multi-select keys
    are written). A run names every letter in it, so a box of two different letters is two
    options, not the first (``_LETTER_THEN_TEXT`` read ``(C)(D)`` as C with the text "(D)").
    Capitals out of order (``BAD``, ``CC``) are a word, not letters. Checked after an option's
    exact text and after a word of one option's text (``_option_word``), so an option spelt like
    a run, or abbreviated like one (``ACE`` for "ACE inhibitors"), is still read as that option."""
    if _LABEL_RUN.match(text):
        return "".join(_LIST_ITEM.findall(text)).upper()
    run = _LETTER_RUN.match(text)
    if run and list(run.group(1)) == sorted(set(run.group(1))):
        return run.group(1)
    return None


def _rejects_letter(text: str, letter_end: int, rest: str, option: str) -> bool:
    """Whether a slot's letter, or its option's text, is followed by a verdict against it ("A is
    incorrect", "A: wrong", "A. Aortic stenosis is not the answer"; "B cells is incorrect" when
    option B is "B cells"): such a slot names the option to reject it, not to choose it. In an
    EXCEPT question this may be the answer, but the reply does not say so."""
    tails = [text[letter_end:]]
    for start in (rest, text) if option.split() else ():
        own_text = re.match(_option_pattern(option), start, re.IGNORECASE)
        if own_text:
            tails.append(start[own_text.end() :])
    return any(_REJECTED_AFTER.match(tail) for tail in tails)


# --- the rules ------------------------------------------------------------------------------


def _statement_slots(text: str, options: Sequence[str]) -> list[tuple[int, str, bool]]:
    """(position, slot text, made under a condition) of every explicit statement, in reply order,
    unless "answer" is a verb there ("One might answer B, but ..."). "X is correct" counts unless
    its clause negates it ("Neither A nor B is correct"), it is asked ("A is correct?") or X ends an
    option's text ("Hepatitis D is correct"); so does its Chinese form "X正确" (see
    ``_cjk_letters_called_correct``). A statement under a condition (``_conditional``) is kept,
    flagged: as the reply's last word it states no answer, and no earlier statement either."""
    slots = [
        (m.end(), text[m.end() :].split("\n", 1)[0][:300], _conditional(text, m, options))
        for m in _STATEMENT.finditer(text)
        if not _answer_as_verb(text, m)
    ]
    slots += [
        (m.start(), m.group(1), _conditional(text, m, options))
        for m in _LETTER_IS_CORRECT.finditer(text)
        if not _NEGATION.search(_same_clause(text, m.start())) and not re.match(_QUESTION_AFTER, text[m.end() :])
        and not _ends_an_option(text[: m.start(1)], m.group(1), options)
    ]
    return sorted(slots + [(at, labels, False) for at, labels in _cjk_letters_called_correct(text)])


# Before "answer", a modal or a subject other than the writer makes it a verb: "One might answer
# B", "Students often answer B here".
_BEFORE_ANSWER_AS_VERB = re.compile(r"(?i)\b(?:might|could|may|you|one|they|students?|people|some|many|others?)"
                                    r"\s+(?:(?:\w+ly|often|usually|sometimes|always|never|also|still|then)\s+)?$")
# A condition on a statement: an if-clause it sits in, an if-clause its "would be" answers (one
# with a verb: "If the murmur were systolic", not "If so"), or a restriction right after its letter.
_CONDITION_OPENS = re.compile(r"(?i)(?<!even )\b(?:if|unless|whether(?!\s+or\s+not)|suppose|supposing|assuming)\b")
_COUNTERFACTUAL = re.compile(r"(?i)\b(?:if|unless)\b[^.!?\n]*\b(?:were|was|is|are|had(?!\s+to)|has|been)\b"
                             r"|^\s*(?:had|were|should)\b")
_RESTRICTED_AFTER = re.compile(r"(?i)^[\s*_:]*(?:\(?[A-Z]\)?\s*)?(?P<word>only\s+(?:if|when|for|in)|if)\b")
_WOULD_BE = re.compile(r"(?i)\b(?:answer|option|choice)\b.*\bwould\s+be\b")


def _starts_an_option(text: str, options: Sequence[str]) -> bool:
    """Whether `text` opens with an option's text ("only in children" as an option is no restriction)."""
    start = _normalise(text[:300])
    return any(option and start.startswith(option) for option in (_normalise(o) for o in options))


def _answer_as_verb(text: str, statement: re.Match[str]) -> bool:
    return statement.group()[:6].casefold() == "answer" and \
        _BEFORE_ANSWER_AS_VERB.search(text[max(0, statement.start() - 40) : statement.start()]) is not None


def _conditional(text: str, statement: re.Match[str], options: Sequence[str]) -> bool:
    """Whether a statement is made under a condition: in an if-clause that a main clause follows
    ("If you thought the answer is B, recall ..."), as the answer to a counterfactual ("If the
    murmur were systolic, the answer would be B", "Had it been diastolic, ..."), or restricted right
    after its letter ("B is correct only for systolic murmurs", "B is correct if ...": unless an
    option's text starts so). Replies explain their distractors so after their answer. Not: "If we
    put it all together the answer is A", "Unless I'm missing something the answer is A", "If so,
    the answer would be A"."""
    start, end = statement.start(), statement.end()
    rest_of_sentence = re.match(r"[^.!?\n]*", text[end : end + 200]).group()  # type: ignore[union-attr]
    if _CONDITION_OPENS.search(_same_clause(text, start, ".;:!?\n,")) and "," in rest_of_sentence:
        return True
    restricted = _RESTRICTED_AFTER.match(text[end : end + 40])
    if restricted and not _starts_an_option(text[end + restricted.start("word") :], options):
        return True
    if not _WOULD_BE.search(statement.group()):
        return False
    sentence = text[max(0, start - 200) : start]
    return _COUNTERFACTUAL.search(sentence[max(sentence.rfind(m) for m in ".!?\n") + 1 :]) is not None


def _cjk_letters_called_correct(text: str) -> list[tuple[int, str]]:
    """(position, labels) of each "C正确" ("C is correct"), unless its clause negates it or makes
    it a condition ("如果C正确，...", if C is correct) or it is asked ("C正确吗？"). Chinese clauses
    end at a comma too: in "A错误，C正确" the "A is wrong" does not reach C. (Looked for only where
    正确 is: the label list is tried from every letter of a long list, as a looping reply writes.)"""
    if "正确" not in text and "正確" not in text:
        return []
    return [
        (m.start(1), m.group(1))
        for m in _CJK_LETTER_IS_CORRECT.finditer(text)
        if not _CJK_UNSTATED.search(_same_clause(text, m.start(), ".,;:!?\n"))
        and not _REJECTED_AFTER.match(text[m.end() :])
    ]


def _read_statement(text: str, options: Sequence[str]) -> tuple[int, ...] | None:
    """The last statement that names an option."""
    said = _statement_slots(text, options) + [
        (m.start(), m.group(1), False)
        for m in _LETTER_IS_THE_ANSWER.finditer(text)
        if not _ends_an_option(text[: m.start(1)], m.group(1), options)
        and not _NEGATION.search(_same_clause(text, m.start())) and not re.match(_QUESTION_AFTER, text[m.end():])
    ]
    for _, slot, conditional in reversed(sorted(said)):
        if conditional:  # the last word is a condition: no statement says the answer (an earlier one was dropped)
            return None
        named = _read_slot(slot, options)
        if named:
            return named
    return None


def _ends_an_option(before: str, letter: str, options: Sequence[str]) -> bool:
    """Whether the word before `letter` and the letter end an option's text ("vitamin" + "A" for
    "Vitamin A"): the letter is then part of that text, not an option's letter."""
    word = re.search(r"(\w+)[ \t]+[(*\[]*$", before[-100:])  # the word right before it: not across a full stop
    if word is None:
        return False
    named = f"{word.group(1)} {letter}".casefold()
    return any(_normalise(option) == named or _normalise(option).endswith(" " + named) for option in options)


def _lines(text: str) -> list[str]:
    """Non-empty lines, think/answer markers taken as line breaks, list bullets dropped."""
    lines = (_BULLET.sub("", line) for line in _ALL_MARKERS.sub("\n", text).splitlines())
    return [line for line in lines if line.strip(_DECORATION)]


def _starts_with_letter(line: str, options: Sequence[str]) -> bool:
    match = _LINE_LETTER.match(_clean(line))
    return match is not None and _index(_first_group(match), options) is not None


def _outer_lines(text: str, options: Sequence[str]) -> list[str]:
    """The opening and the closing line, each unless it sits in a list of options (its neighbour
    also starts with an option letter): such a line is a walk through the options. So is a closing
    line that comments on its option (``_comments_on_an_option``) in a reply that lists options by
    letter: its neighbour need not be another (a sub-bullet was), and the line was read as the
    answer. An opening line so written is the answer first, then why."""
    lines = _lines(text)
    ends = {0: 1, len(lines) - 1: len(lines) - 2} if lines else {}
    return [
        lines[position]
        for position, neighbour in sorted(ends.items())
        if not (0 <= neighbour < len(lines) and neighbour != position and _starts_with_letter(lines[neighbour], options))
        and not (position and position == len(lines) - 1 and _comments_on_an_option(lines[position], options)
                 and _ends_on_a_bullet(text) and _lists_options(text, options))
    ]


def _ends_on_a_bullet(text: str) -> bool:
    """Whether the reply's last line is a list item (``- ...``, ``1. ...``): a walk's item, where a
    closing "**B. Mitral stenosis** - ..." under "Conclusion:" is the answer with its reason."""
    last = [line for line in _ALL_MARKERS.sub("\n", text).splitlines() if line.strip(_DECORATION)][-1:]
    return bool(last) and _BULLET.match(last[0]) is not None


# After an option's letter (and text), a colon or a spaced dash and more words: a comment on it.
_COMMENT = re.compile(r"(?::|\s[-–—]|[-–—]\s)\s*[^\W_]")


def _comments_on_an_option(line: str, options: Sequence[str]) -> bool:
    """Whether a line is a label, maybe its option's text, then a colon or a dash and a comment
    ("**D. Mitral regurgitation**: holosystolic murmur", "D) Neostigmine - does not enter the CNS")."""
    text = _clean(line)
    prefixed = _LETTER_THEN_TEXT.match(text)
    if not _starts_with_letter(line, options) or prefixed is None or _text_index(prefixed.group(4), options) is not None:
        return False
    return _COMMENT.search(prefixed.group(4)) is not None


def _read_line(line: str, options: Sequence[str]) -> tuple[int, ...] | None:
    """A line that is only an answer: a letter form, a letter list, ``X. text`` or option text; not
    a list of options on one line, which chooses none (an echo, then "Insulin": that line answers)."""
    text = _clean(line)
    if _inline_list(text, options) is not None:
        return None
    if _LETTER_LIST.match(text) or _EXACT_LETTER.match(text) or _LINE_LETTER.match(text):
        return _read_slot(text, options)
    index = _text_index(text, options)
    return None if index is None else (index,)


def _read_answer_lines(text: str, options: Sequence[str]) -> tuple[int, ...] | None:
    """Every option the opening and closing answer lines name (two that differ: both)."""
    found: set[int] = set()
    for line in _outer_lines(text, options):
        found.update(_read_line(line, options) or ())
    return tuple(sorted(found)) or None


def _same_clause(text: str, end: int, marks: str = ".;!?\n") -> str:
    """Up to 60 characters before ``end``, back to the start of their clause (the last of
    ``marks``): a negation in an earlier sentence or list item ("..., no.\nB. ...") does not
    reach this one."""
    before = text[max(0, end - 60) : end]
    cut = max(before.rfind(mark) for mark in marks)
    return before[cut + 1 :]


def _option_pattern(option: str) -> str:
    """Regex for an option's text as whole words, any spacing (``option`` has a word); a number
    is whole after a decimal point or a thousands comma too ("1.5 mg/kg" holds no "5 mg/kg")."""
    words = option.split()
    body = r"\s+".join(re.escape(word) for word in words)
    head = r"(?<![\w.,])" if words[0][:1].isdigit() else r"(?<!\w)" if re.match(r"\w", words[0]) else ""
    tail = r"(?!\w)" if re.search(r"\w$", words[-1]) else ""
    return head + body + tail


def _contained(text: str, options: Sequence[str]) -> list[tuple[int, int]]:
    """(option index, end of its last occurrence) for options in ``text`` as whole words, leaving
    out occurrences negated before ("not X") or rejected after ("X is incorrect")."""
    hits = []
    for index, option in enumerate(options):
        if not option.split():
            continue
        ends = [
            m.end()
            for m in re.finditer(_option_pattern(option), text, re.IGNORECASE)
            if not _NEGATION.search(_same_clause(text, m.start())) and not _REJECTED_AFTER.match(text[m.end() :])
            and not _in_a_range(text, m)
        ]
        if ends:
            hits.append((index, ends[-1]))
    spans = {index: _normalise(options[index]) for index, _ in hits}
    return [
        (index, end)
        for index, end in hits
        if not any(other != index and spans[index] in spans[other] and spans[index] != spans[other] for other in spans)
    ]


def _in_a_range(text: str, found: re.Match[str]) -> bool:
    """Whether a number found in ``text`` is an end of a range ("10-15%", "10 to 15%"): a range
    names no one of its ends, and "approximately 10-15%" was read as the option "15%"."""
    if not re.search(r"\d", found.group()):
        return False
    return bool(re.search(r"\d\s*(?:[-–]|to)\s*$", text[: found.start()])
                or re.match(r"\s*(?:[-–]|to)\s*\d", text[found.end() :]))


# "Option 2", "choice #3": a number after the word option is a position as much as a text
_NUMBERED_OPTION = re.compile(r"(?i)\b(?:option|choice)\s*(?:no\.?\s*|number\s*|#\s*)?(\d+)\b")


def _similar(text: str, options: Sequence[str]) -> int | None:
    """The one option a stated answer text names by its text (see module notes, rule 4), unless
    that text is the N of "option N" and the N-th option is another one. Why: with options "4",
    "3", "2", "1", "Option 2" named option C by its text where the model may have meant B, the
    second; a trace graded right on that reading could be a wrong one kept. Where both readings
    agree (options "1" to "4") the answer stands, and so does a text the numbers did not name
    ("option 1 and option 2 miss atypicals, so azithromycin": the option numbers are discussed)."""
    index = _similar_text(text, options)
    if index is None:
        return None
    positions = {int(n) for n in _NUMBERED_OPTION.findall(text)}
    if _normalise(options[index]) in {str(n) for n in positions} and positions != {index + 1}:
        return None  # the number after "option" named this option by its text, but its position is another
    return index


def _similar_text(text: str, options: Sequence[str]) -> int | None:
    hits = _contained(text, options)
    if len(hits) == 1:
        return hits[0][0]
    end = len(text.rstrip(_DECORATION + ".!;,"))
    closing = [index for index, hit_end in hits if hit_end >= end]
    if len(closing) == 1 and not _hedges_to_the_last(text, hits):
        return closing[0]
    if hits:
        return None
    target = _normalise(text)
    if not target or target.endswith("?"):  # "Aortc stenosys?" asks, as "Is it aortic stenosis?" does
        return None
    by_number = _number_with_unit(target, options)
    if by_number is not None:
        return by_number
    scores = sorted(((fuzz.ratio(target, _normalise(o)), i) for i, o in enumerate(options)), reverse=True)
    best, runner_up = scores[0], scores[1] if len(scores) > 1 else (0.0, -1)
    if best[0] >= SIMILARITY_MIN and best[0] - runner_up[0] >= SIMILARITY_LEAD:
        option = _normalise(options[best[1]])
        if _negations(target) == _negations(option) and not _differ_in_meaning(target, option):
            return best[1]
    return None


# What weighs one option against another rather than choosing: "X or Y", "X vs Y", "whether X
# or Y", "maybe, leaning towards yes", "X/Y".
_HEDGE = re.compile(r"(?i)\b(?:or|vs|versus|whether|between|lean(?:s|ing)?|probably|possibly|perhaps|if)\b|/")


def _hedges_to_the_last(text: str, hits: list[tuple[int, int]]) -> bool:
    """Whether the words before the option a text ends with weigh it against another it named
    ("I can't tell whether it is mitral stenosis or aortic stenosis", "maybe, though the evidence
    leans towards yes"): the text ends with an option it does not choose. Only the words after
    the option named before the last count, so "Aortic stenosis is unlikely; mitral stenosis"
    still ends on its answer."""
    ends = sorted(hit_end for _, hit_end in hits)
    between = re.split(r"[:;]", text[ends[-2] : ends[-1]])[-1]  # "X vs Y: Y" concludes after its colon
    return _HEDGE.search(between) is not None


def _number_with_unit(target: str, options: Sequence[str]) -> int | None:
    """The one option that is the number `target` (a bare "20") and its unit, up to three words
    ("20 mg", "20 mL/h", "20%", "20 mm Hg", "20 mg daily"), nothing more. Why: a ratio counts
    characters, and "20" is 57 against "20 mg", so a stated dose was no answer at all; "2" does
    not name "20 mg", nor "1" the option "1 and 4", nor "3" the option "3 only" (statements, of
    which "3" may be the third option)."""
    number = re.fullmatch(r"(\d+(?:\.\d+)?)\.?", target)
    if number is None:
        return None
    named = []
    for i, option in enumerate(options):
        unit = re.fullmatch(re.escape(number.group(1)) + r"\s*(%|[^\W\d][\w/.·]*(?:\s+[^\W\d][\w/.·]*){0,2})",
                            _normalise(option))
        if unit and not set(unit.group(1).split()) & _LIST_WORDS:
            named.append(i)
    return named[0] if len(named) == 1 else None


# words that make "1 and 4", "3 only", "all of the above" a choice among statements, not a quantity
_LIST_WORDS = frozenset({"and", "or", "only", "both", "all", "none", "alone", "of", "the", "above", "neither", "nor"})


# Word beginnings that make a word its opposite or another thing of its kind at a spelling's
# distance: "hypothyroidism" is 90 against "hyperthyroidism", "efferent" 88 against "afferent".
# Each pair is read both ways.
_OPPOSITE_PREFIXES = [
    ("hypo", "hyper"), ("hypo", "normo"), ("hyper", "normo"), ("intra", "extra"), ("inter", "intra"),
    ("endo", "exo"), ("pre", "post"), ("ante", "post"), ("pro", "anti"), ("in", "ex"), ("a", "e"),
    ("micro", "macro"), ("brady", "tachy"), ("mono", "poly"), ("uni", "bi"), ("homo", "hetero"),
    ("ana", "cata"), ("supra", "infra"), ("sub", "supra"), ("over", "under"), ("up", "down"),
    ("in", "de"), ("ipsi", "contra"), ("sy", "dia"), ("max", "min"), ("antero", "retro"), ("ante", "retro"),
    # a prefix against none: "atypical", "anaerobic", "incompetent", "irreversible", "unstable",
    # "dysfunction", "antagonist", "female"
    ("", "a"), ("", "an"), ("", "in"), ("", "im"), ("", "ir"), ("", "il"), ("", "un"), ("", "dis"),
    ("", "de"), ("", "dys"), ("", "ant"), ("", "anti"), ("", "fe"),
]
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


# Short words that differ and still mean the same, and function words a paraphrase changes freely
_SAME_SHORT_WORDS = frozenset({frozenset({"ekg", "ecg"})})
_FUNCTION_WORDS = frozenset("of for in on at to the a an and or by with per vs from into".split())


def _opposite_words(a: str, b: str) -> bool:
    """Whether two words differ by a meaningful beginning (``_OPPOSITE_PREFIXES``, the rest spelt
    alike or nearly: "decreasd" against "increased"; "aetiology" is "etiology" spelt the British
    way), or are two different letters or two different short words (``Hepatitis B``/``C``,
    ``IgA``/``IgG``: a letter is the whole difference; "for"/"of" are no such words)."""
    if _american(a) == _american(b):
        return False
    if len(a) == len(b) == 1:
        return True
    if 2 <= len(a) <= 3 and 2 <= len(b) <= 3:
        return {a, b} not in _SAME_SHORT_WORDS and not {a, b} & _FUNCTION_WORDS
    for first, second in _OPPOSITE_PREFIXES:
        for x, y in ((a, b), (b, a)):
            rest, other = x[len(first):], y[len(second):]
            if x.startswith(first) and y.startswith(second) and len(rest) >= 3 and fuzz.ratio(rest, other) >= 85:
                return True
    return False


def _american(text: str) -> str:
    """``text`` without the extra letter of British spellings ("aetiology", "oedema")."""
    return text.replace("ae", "e").replace("oe", "e")


def _squashed(text: str) -> str:
    """A text without spaces, hyphens and British spellings' extra letters."""
    return _american(re.sub(r"[\s-]", "", text))


def _differ_in_meaning(target: str, option: str) -> bool:
    """Whether an answer text within a misspelling of an option says something else: other
    numbers ("1500 mg" is 91 against "150 mg", "0.05" 89 against "0.5"; only when both write
    numbers: "Type II" for "Type 2" is the same), or a word the other has in its opposite form
    ("Hypothyroidism" against "Hyperthyroidism", "increased" against "decreased"). The audit that
    found these mapped over two thirds of such one-word changes of real options onto the option
    they change. Hyphens inside words go first: "Anti-inflammatory" is "Antiinflammatory"."""
    if _squashed(target) == _squashed(option):  # "Iron-deficiency anaemia" is "iron deficiency anemia"
        return False
    target, option = (re.sub(r"(?<=[^\W\d_])-(?=[^\W\d_])", "", re.sub(r"(?<=\d),(?=\d{3})", "", t))
                      for t in (target, option))
    numbers_a, numbers_b = sorted(_NUMBER.findall(target)), sorted(_NUMBER.findall(option))
    if numbers_a and numbers_b and numbers_a != numbers_b:
        return True
    words_a, words_b = set(re.findall(r"[^\W\d_]+", target)), set(re.findall(r"[^\W\d_]+", option))
    return any(_opposite_words(a, b) for a in words_a - words_b for b in words_b - words_a)


def _negations(text: str) -> list[str]:
    """The negation and rejection words of ``text``, folded and sorted. A ratio counts characters,
    not meaning: "not aortic stenosis" scores 88 against "Aortic stenosis", "treatment needed" 91
    against "No treatment needed", and a long option followed by "is incorrect" still passes 85,
    so a misspelling is only forgiven when both texts say "not" (or "incorrect") alike."""
    return sorted(" ".join(word.casefold().split()) for word in _NEGATION_WORD.findall(text))


def _answer_texts(text: str, box: str | None, options: Sequence[str]) -> list[str]:
    """Where rule 4 looks: the box, the last statement, the closing line, a short reply."""
    texts = [box] if box else []
    slots = [slot for _, slot, conditional in _statement_slots(text, options) if not conditional]
    if slots:
        texts.append(slots[-1])
    outer = _outer_lines(text, options)
    if outer:
        texts.append(outer[-1])
    if len(text.strip()) <= SHORT_REPLY_CHARS:
        texts.append(_ALL_MARKERS.sub(" ", text))
    # a list "ends with" its last option: no candidate
    return [t for t in texts if t and t.strip() and not _lists_options(t, options)]


def _lists_options(text: str, options: Sequence[str]) -> bool:
    """Whether the lines that start with an option letter name two or more options (by letter or
    text), or one line lists them (`_inline_list`, maybe after a heading such as "Options:"): a
    list of options (a model echoing the question), not an answer text. Read whole, it
    "ends with" its last option, which rule 4 would take for the answer. One option repeated
    ("A. Lithium" twice) is no list."""
    named: set[int] = set()
    for line in _lines(text):
        listed = _inline_list(_clean(line.split(":", 1)[-1]), options)  # "Options: (A) x (B) y" on one line
        if listed is not None:
            return True
        if _starts_with_letter(line, options):
            named.update(_read_slot(line, options) or ())
    return len(named) >= 2


def _answer_section(reply: str) -> str | None:
    """Text after the last think/answer marker: where a reasoning model states its answer."""
    cut = max((reply.rfind(m) + len(m) for m in _ANSWER_MARKERS if m in reply), default=-1)
    return None if cut < 0 else reply[cut:]


def _search_texts(reply: str) -> list[str]:
    """The answer section first, then the whole reply; empty and repeated texts left out."""
    texts: list[str] = []
    for text in (_answer_section(reply), reply):
        if text is not None and text.strip() and text not in texts:
            texts.append(text)
    return texts


def _verdict(named: tuple[int, ...], method: str, box: str | None, letters: str) -> Extraction:
    chosen = tuple(letters[i] for i in named)
    if len(chosen) == 1:
        return Extraction(letter=chosen[0], text=box, method=method, verdict="answer", letters=chosen)
    return Extraction(letter=None, text=box, method=method, verdict="multiple_answers", letters=chosen)


def _option_list(options: Sequence[str]) -> list[str]:
    """The options as a list of str, from any sequence a caller holds: a pandas row's options
    column is a numpy array (whose truth value is an error), a single str would otherwise be read
    as one option per character, and a generator has no length."""
    if isinstance(options, (str, bytes)):
        raise TypeError(f"options must be a sequence of option texts, not a single {type(options).__name__}")
    try:
        out = list(options)
    except TypeError:
        raise TypeError(f"options must be a sequence of option texts, got {type(options).__name__}") from None
    for option in out:
        if not isinstance(option, str):
            raise TypeError(f"every option must be a str, got {type(option).__name__}: {option!r}")
    return out


def _fold_width(text: str) -> str:
    """``（Ｃ）`` -> ``(C)``, ``【C】`` -> ``[C]``: full-width forms are ASCII in a CJK font (see
    ``_WIDTH_FOLD``). Applied to the reply and the options alike, so an option written in
    full-width forms still equals its own text; the box text kept for audit stays as written."""
    return text.translate(_WIDTH_FOLD)


def _check_reply(reply: str) -> str:
    """A reply that is not text (a failed request's None) fails here, not in a regex."""
    if not isinstance(reply, str):
        raise TypeError(f"reply must be a str, got {type(reply).__name__}")
    return reply


def extract_answer(reply: str, options: Sequence[str]) -> Extraction:
    """The option a reply states (options in order, lettered A, B, C, ...); see module notes.
    ``options`` may be any sequence of str (a list, a tuple, a numpy array)."""
    reply, options = _check_reply(reply), _option_list(options)
    letters = _letters(options)
    written_box = last_boxed(reply)
    reply, options = _fold_width(reply), [_fold_width(option) for option in options]
    raw_box = _last_boxed_raw(reply)
    box = written_box
    none = Extraction(letter=None, text=box, method="none", verdict="no_answer")
    if not options:
        return none
    for candidate in _box_candidates(raw_box):
        named = _read_slot(candidate, options)
        if named:
            return _verdict(named, "boxed", box, letters)
    texts = _search_texts(reply)
    for text in texts:
        for method, rule in (("statement", _read_statement), ("answer_line", _read_answer_lines)):
            named = rule(text, options)
            if named:
                return _verdict(named, method, box, letters)
    for text in texts:  # a weaker reading of the answer section comes after what the whole reply states
        for candidate in _answer_texts(text, raw_box, options):
            index = _similar(candidate, options)
            if index is not None:
                return _verdict((index,), "similarity", box, letters)
    return none


# --- grading ------------------------------------------------------------------------------------


def _box_names_answer(content: str, options: Sequence[str], answer_idx: int) -> bool:
    """Reference rule 2, literally: the answer text, ``X. answer text`` or the letter X."""
    normal = _normalise(content)
    answer = _normalise(options[answer_idx])
    letter = string.ascii_uppercase[answer_idx].casefold()
    if not normal:
        return False
    if normal == answer:
        return True
    exact = _EXACT_LETTER.match(normal)
    if exact:
        return _first_group(exact) == letter
    prefixed = re.match(r"^(?:\(([a-z])\)|([a-z])[).:])\s*(.+)$", normal, re.DOTALL)
    if prefixed:
        return (prefixed.group(1) or prefixed.group(2)) == letter and _normalise(prefixed.group(3)) == answer
    return False


def _check_answer_idx(answer_idx: int, options: list[str]) -> int:
    """An int (numpy's too) in range; a letter ("C") or a float is a caller's slip, said in one line."""
    try:
        index = operator.index(answer_idx) if not isinstance(answer_idx, bool) else None
    except TypeError:
        index = None
    if index is None:
        raise TypeError(f"answer_idx must be an int (0 for A), got {type(answer_idx).__name__}: {answer_idx!r}")
    if not 0 <= index < len(options):
        raise UserError(f"answer_idx {index} is out of range for {len(options)} options")
    return index


def grade(reply: str, options: Sequence[str], answer_idx: int) -> Grade:
    """Whether the reply picks ``options[answer_idx]``, with the extraction that decided.

    A box that names the answer as reference rule 2 words it (its text, ``X. text``, or the letter)
    is correct even when another option repeats that text; otherwise the reply must state exactly
    one option and it must be the answer's, or another with the answer's very text. Why the last:
    an eval set may write one text twice (14 of the 2,816 rows of MedAgentsBench's MedMCQA file
    do), and "\boxed{Aspirin}" was right while "The answer is Aspirin", read as the first copy,
    was wrong.
    """
    reply, options = _check_reply(reply), _option_list(options)
    answer_idx = _check_answer_idx(answer_idx, options)
    extraction = extract_answer(reply, options)
    reply, options = _fold_width(reply), [_fold_width(option) for option in options]
    boxed = any(_box_names_answer(c, options, answer_idx) for c in _box_candidates(_last_boxed_raw(reply)))
    letters = _letters(options)
    chosen = letters.index(extraction.letter) if extraction.letter is not None else None
    correct = boxed or chosen == answer_idx or (
        chosen is not None and _normalise(options[chosen]) == _normalise(options[answer_idx]))
    return Grade(correct=correct, extraction=extraction)


def is_correct(reply: str, options: Sequence[str], answer_idx: int) -> bool:
    """Shorthand for ``grade(...).correct``."""
    return grade(reply, options, answer_idx).correct
