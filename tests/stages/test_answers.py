r"""Answer extraction on replies written in the styles real models answer in (reference s.6).

Each reply is a template: ``@C`` stands for the letter of the option first listed third, so when
the options are reordered the reply is re-lettered with them. Every case runs in the written order
and reversed, and a property test reorders them at random: the verdict must never change.
"""

from __future__ import annotations

import itertools
import json
import re
import string
from dataclasses import dataclass

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from m1data.stages.answers import METHODS, VERDICTS, Extraction, extract_answer, grade, is_correct, last_boxed

HEART = ["Mitral regurgitation", "Aortic regurgitation", "Aortic stenosis", "Mitral stenosis"]
DIABETES = ["Metformin", "Insulin glargine", "Glipizide", "Pioglitazone", "Sitagliptin"]
YES_NO = ["yes", "no", "maybe"]
NUMBERS = ["3", "4", "5", "6"]
PH = ["pH = 7.1", "pH = 7.4", "pH = 7.6", "pH = 7.8"]
# Ten options (MMLU-Pro's shape), so "I" is a valid option letter.
TARGETS = [
    "Cell wall synthesis",
    "DNA gyrase",
    "30S ribosomal subunit",
    "50S ribosomal subunit",
    "Folate synthesis",
    "RNA polymerase",
    "Cell membrane integrity",
    "Mycolic acid synthesis",
    "Topoisomerase IV",
    "Ergosterol synthesis",
]
GLYCOGEN = ["glucose", "glucose-6-phosphate", "fructose-6-phosphate", "glucose-1-phosphate", "UDP-glucose"]
# Options whose text holds letter labels: naming one by its text chooses it.
BOTH = ["Ceftriaxone", "Doxycycline", "Both (A) and (B)", "Neither (A) nor (B)"]
# HEART in Chinese, as a CJK teacher writes the options back.
HEART_ZH = ["二尖瓣反流", "主动脉瓣反流", "主动脉瓣狭窄", "二尖瓣狭窄"]
# Options that are themselves negations: naming one chooses it.
DOSES = ["5 mg", "10 mg", "15 mg", "20 mg"]
VITAMINS = ["Vitamin D", "Vitamin A", "Vitamin C", "Vitamin K"]
STATEMENT_LISTS = ["2 and 3", "1 and 4", "3 only", "All of the above"]
PLACENTA = ["Crosses the placenta", "Does not cross the placenta", "No treatment needed", "None of the above"]
# Options with an abbreviation spelt in capitals that are also option letters ("ACE", "AB").
ACE = ["ACE inhibitors", "Beta blockers", "Calcium channel blockers", "Loop diuretics", "Statins"]
BLOOD = ["AB blood group", "O blood group", "A blood group", "B blood group"]
# Real MedQA options and others where a capital starts a name or a word ("E. coli", "B cells"),
# and options one spelling away from a word that means something else.
ETEC = ["Giardia intestinalis", "Shigella species", "Staphylococcus aureus", "Enteroinvasive Escherichia coli",
        "Enterotoxigenic Escherichia coli"]
MICROBES = ["Clostridioides difficile", "Escherichia coli", "Bacillus cereus", "Staphylococcus aureus"]
LYMPHOCYTES = ["B lymphocytes", "T lymphocytes", "Macrophages", "Neutrophils"]
SSRI = ["Lithium", "Valproate", "Selective serotonin reuptake inhibitor", "Olanzapine", "Lamotrigine"]
POTASSIUM = ["Hyperkalemia", "Metabolic acidosis", "Hypokalemia", "Hyperchloremia"]
PERCENT = ["5%", "10%", "15%", "20%"]
THYROID = ["Hyperthyroidism", "Thyroid cancer", "Thyroiditis", "Goiter"]
DOSES_X10 = ["150 mg", "300 mg", "600 mg", "900 mg"]
HEPATITIS = ["Hepatitis B", "Hepatitis C", "Hepatitis D", "Hepatitis A"]
# MMLU-Pro's options for a question on amino acids (ten: "G" and "I" are letters)
AMINO_ACIDS = ["leucine, methionine and threonine", "leucine, cysteine and glycine", "proline, tyrosine and serine",
               "valine, glycine and arginine", "methionine, serine and tyrosine", "isoleucine, alanine and glycine",
               "lysine, tyrosine and cysteine", "aspartate, valine and threonine", "phenylalanine, arginine and isoleucine",
               "lysine, proline and arginine"]
HCM = ["Aortic stenosis", "Mitral stenosis", "Mitral regurgitation", "Hypertrophic cardiomyopathy"]
ADH = ["increased adh secretion", "decreased renal blood flow", "hypokalemia", "metabolic alkalosis"]
ECG = ["Obtain an ECG", "Obtain a chest x-ray", "Start aspirin", "Discharge home"]
ETIOLOGY = ["Unknown aetiology", "Viral infection", "Bacterial infection", "Autoimmune"]


@dataclass(frozen=True)
class Case:
    """``expected``: the option letters the reply names, as written ("C"; "D,G" for several;
    "" for none)."""

    name: str
    reply: str
    options: list[str]
    expected: str
    method: str


R1_STYLE = (
    "<think>\nOkay, a 70-year-old with syncope and a crescendo-decrescendo murmur. Option @A, "
    "mitral regurgitation, is holosystolic. Option @D has an opening snap. Option @C fits.\n</think>\n\n"
    "The presentation is most consistent with **aortic stenosis**.\n\n**Answer:** @C. Aortic stenosis"
)
GPT_STYLE = (
    "Let's analyze each option:\n\n- @A. glucose: not the first product.\n- @B. glucose-6-phosphate: "
    "formed later.\n- @C. fructose-6-phosphate: glycolysis.\n- @D. glucose-1-phosphate: released by "
    "glycogen phosphorylase.\n- @E. UDP-glucose: used for synthesis.\n\nThe answer is (@D) glucose-1-phosphate."
)
WALK_THROUGH = (
    "Reviewing each option:\n@A. Mitral regurgitation: holosystolic, no.\n@B. Aortic regurgitation: "
    "early diastolic, no.\n@C. Aortic stenosis: systolic ejection, no.\n@D. Mitral stenosis: rumble, yes."
)

CASES = [
    # --- 1. boxed --------------------------------------------------------------------------
    Case("box after reasoning", "The murmur radiates to the carotids.\n\n\\boxed{@C}", HEART, "C", "boxed"),
    Case("text box with letter", r"So \boxed{\text{@C. Aortic stenosis}}", HEART, "C", "boxed"),
    Case("lowercase letter box", r"\boxed{@c}", HEART, "C", "boxed"),
    Case("paren letter box", r"\boxed{(@B)}", HEART, "B", "boxed"),
    Case("bold box under heading", "**Final Answer**\n\n\\boxed{\\textbf{@D}}", HEART, "D", "boxed"),
    Case("math-mode box", r"The answer is $\boxed{@C}$.", HEART, "C", "boxed"),
    Case("text-only box, other case", r"\boxed{AORTIC STENOSIS}", HEART, "C", "boxed"),
    Case("paren-prefixed text box", r"\boxed{(@C) Aortic stenosis}", HEART, "C", "boxed"),
    Case("option-word box", r"\boxed{\text{Option @D}}", HEART, "D", "boxed"),
    Case("equation box", r"Solving, \boxed{x = 5}", NUMBERS, "C", "boxed"),
    Case("option holding '='", r"\boxed{pH = 7.4}", PH, "B", "boxed"),
    Case("last of two boxes", "\\boxed{@A} Hmm, wait. The murmur is diastolic.\n\\boxed{@D}", HEART, "D", "boxed"),
    Case("fbox", r"\fbox{@B}", HEART, "B", "boxed"),
    Case("box of a group", r"Final answer: \boxed{{@C}}", HEART, "C", "boxed"),
    Case("box of a group with a font switch", r"\boxed{{\rm @C}}", HEART, "C", "boxed"),
    Case("box beats an earlier statement", r"The answer is @A. No, on reflection: \boxed{@B}", HEART, "B", "boxed"),
    Case("pubmedqa yes box", r"Therefore \boxed{yes}", YES_NO, "A", "boxed"),
    Case("letter and text disagree", r"\boxed{@B. Aortic stenosis}", HEART, "B,C", "boxed"),
    Case("two letters boxed", r"\boxed{@A, @C}", HEART, "A,C", "boxed"),
    Case("two letters boxed with and", r"\boxed{@B \text{ and } @D}", HEART, "B,D", "boxed"),
    Case("two paren letters boxed", r"\boxed{(@C)(@D)}", HEART, "C,D", "boxed"),
    Case("two letters boxed with a space", r"\boxed{@C @D}", HEART, "C,D", "boxed"),
    Case("two letters boxed with an ampersand", r"\boxed{@C \& @D}", HEART, "C,D", "boxed"),
    Case("two boxed letters after a statement", "The answer is @C.\n\n\\boxed{(@C)(@D)}", HEART, "C,D", "boxed"),
    Case("one letter boxed twice", r"\boxed{(@C) @C}", HEART, "C", "boxed"),
    Case("two paren letters then text", r"\boxed{(@C)(@D) Aortic stenosis}", HEART, "C,D", "boxed"),
    Case("two letters then the second's text", r"\boxed{@C. @D. Mitral stenosis}", HEART, "C,D", "boxed"),
    Case("one letter twice then text", r"\boxed{(@C)(@C) Aortic stenosis}", HEART, "C", "boxed"),
    Case("capitals that are an option's word", r"\boxed{ACE}", ACE, "A", "boxed"),
    Case("two capitals that are an option's word", r"\boxed{AB}", BLOOD, "A", "boxed"),
    Case("option text holding letters boxed", r"\boxed{Both (A) and (B)}", BOTH, "C", "boxed"),
    Case("letter and text holding letters", r"\boxed{(@D) Neither (A) nor (B)}", BOTH, "D", "boxed"),
    Case("box with extra words", r"\boxed{calcific aortic stenosis}", HEART, "C", "similarity"),
    Case("misspelt box", r"\boxed{aortc stenosys}", HEART, "C", "similarity"),
    Case("empty box falls through", r"\boxed{} The answer is @B", HEART, "B", "statement"),
    Case("box naming no option", r"\boxed{Z}", HEART, "", "none"),
    Case("box negating the text", r"\boxed{\text{not Aortic stenosis}}", HEART, "", "none"),
    Case("box with 'no' before the text", r"\boxed{No metformin}", DIABETES, "", "none"),
    Case("box calling its letter incorrect", r"\boxed{@C \text{ is incorrect}}", HEART, "", "none"),
    Case("box holding a negation option", r"\boxed{@B. Does not cross the placenta}", PLACENTA, "B", "boxed"),
    Case("truncated last box", r"\boxed{@A} but actually \boxed{@D", HEART, "", "none"),
    # --- 2. statements ---------------------------------------------------------------------
    Case("answer is (X)", "Given the murmur, the answer is (@B).", HEART, "B", "statement"),
    Case("answer is: (X)", "The answer is: (@B)", HEART, "B", "statement"),
    Case("answer is **X**", "So the correct answer is **@B**.", HEART, "B", "statement"),
    Case("shouted with option word", "THE ANSWER IS option @C", HEART, "C", "statement"),
    Case("last statement wins", "The answer is @A... no wait, the answer is @C.", HEART, "C", "statement"),
    Case("'answer is a' is a word", "The answer is a matter of timing; I pick @D.", HEART, "D", "statement"),
    Case("bold final answer", "**Final answer: @C**", HEART, "C", "statement"),
    Case("'A' opens a vignette", "A 45-year-old man with an ejection murmur. Answer: @A", HEART, "A", "statement"),
    Case("option X is correct", "Option @A is correct because of the timing.", HEART, "A", "statement"),
    Case(
        "answer first, others discussed after",
        "@G\n\nOption @G is right; @C, @B and @D are not, because they act on the ribosome or DNA.",
        TARGETS, "G", "statement",
    ),
    Case("pronoun I, then a pick", "Overall I would pick @D, though I am unsure.", TARGETS, "D", "statement"),
    Case("best choice is I", "The best choice is @I.", TARGETS, "I", "statement"),
    Case("I think the answer", "I think the answer is @C.", HEART, "C", "statement"),
    Case("bold label, paren letter", "**Answer:** (@C) Aortic stenosis", HEART, "C", "statement"),
    Case("final answer as text", "Final Answer: Aortic stenosis", HEART, "C", "statement"),
    Case(
        "letter, text, then reasons",
        "The correct answer is @C. Aortic stenosis, because the murmur radiates to the carotids.",
        HEART, "C", "statement",
    ),
    Case("correct option is", "The correct option is @E. Sitagliptin", DIABETES, "E", "statement"),
    Case("go with", "I'd go with @B (insulin glargine) given an HbA1c of 11%.", DIABETES, "B", "statement"),
    Case(
        "answer then explanation naming others",
        "Answer: (@A) Metformin\n\nExplanation: metformin is first line; glipizide (@C) causes hypoglycemia "
        "and pioglitazone (@D) fluid retention.",
        DIABETES, "A", "statement",
    ),
    Case("R1 layout", R1_STYLE, HEART, "C", "statement"),
    Case("GPT-4o layout", GPT_STYLE, GLYCOGEN, "D", "statement"),
    Case("statement only inside think", "<think>The answer is @B.</think>", HEART, "B", "statement"),
    Case("think tags and a box", "<think>Maybe @A? Or @B?</think>\nAnswer: \\boxed{@D}", HEART, "D", "boxed"),
    Case(
        "answer section beats thinking",
        "<|im_start|>think\nThe answer is @A.\n<|im_start|>answer\nFinal Answer: @C",
        HEART, "C", "statement",
    ),
    Case("two letters stated", "The answer is @B, @D.", HEART, "B,D", "statement"),
    Case("two letters in parens", "The answer is (@D) and (@G).", TARGETS, "D,G", "statement"),
    Case("four letters stated", "Answer: @D,@F,@G,@I", TARGETS, "D,F,G,I", "statement"),
    Case("statement naming no option", "The answer is none of the provided options.", HEART, "", "none"),
    Case("letter called incorrect", "Answer: @C is incorrect", HEART, "", "none"),
    Case("paren letter called wrong", "Answer: (@C): wrong", HEART, "", "none"),
    Case("letter and text called incorrect", "Answer: @C. Aortic stenosis is incorrect", HEART, "", "none"),
    Case("letter is not the answer", "The best answer: @C is not the answer here.", HEART, "", "none"),
    Case("statement asked as a question", "The answer is (@A)?", HEART, "", "none"),
    Case("question, then the answer", "Is the answer (@B)? No. The answer is (@C).", HEART, "C", "statement"),
    Case("answer, then a question", "The answer is (@C). Or is the answer (@B)?", HEART, "C", "statement"),
    Case("letter is correct, asked", "So option @A is correct? Let me check the murmur.", HEART, "", "none"),
    Case("one letter rejected, another correct", "Answer: @A is incorrect; @C is correct.", HEART, "C", "statement"),
    Case("neither of two is correct", "Neither @A nor @B is correct.", HEART, "", "none"),
    Case(
        "letter, text, then a fact about it",
        "Answer: @C. Aortic stenosis is not rare in the elderly.", HEART, "C", "statement",
    ),
    Case("letter, then not another", "I'd pick @C, not @B.", HEART, "C", "statement"),
    Case("invalid letter stated", "The answer is E, I mean option @B.", HEART, "", "none"),
    Case("chinese answer is (X)", "答案是（@C）", HEART, "C", "statement"),
    Case("chinese therefore choose", "根据杂音的特点，故选@C", HEART, "C", "statement"),
    Case("chinese choice, then reasons", "所以选 @C。因为杂音向颈部放射。", HEART, "C", "statement"),
    Case("chinese last statement wins", "答案是@A。不对，再想想：正确答案为@C", HEART, "C", "statement"),
    Case("chinese after english", "The answer is @A.\n\n综上所述，本题答案为@D项。", HEART, "D", "statement"),
    Case("english after chinese", "答案：@D\n\nOn reflection, the answer is @B.", HEART, "B", "statement"),
    Case("chinese two letters", "答案是@A和@C", HEART, "A,C", "statement"),
    Case("chinese option text", "答案是主动脉瓣狭窄。", HEART_ZH, "C", "statement"),
    Case("chinese answer is not X", "答案不是@C", HEART, "", "none"),
    Case("chinese should not choose X", "不应选@C", HEART, "", "none"),
    Case("chinese letter called wrong", "答案解析：@C项错误。", HEART, "", "none"),
    Case("chinese text negated", "答案：不是主动脉瓣狭窄", HEART_ZH, "", "none"),
    Case("chinese letter is correct", "@C正确", HEART, "C", "statement"),
    Case("chinese answer: letter is correct", "答案：@C正确", HEART, "C", "statement"),
    Case("chinese letter is the correct one", "@C是正确的。", HEART, "C", "statement"),
    Case("chinese option letter is correct", "分析后，@C选项正确，因为杂音向颈部放射。", HEART, "C", "statement"),
    Case("chinese choose, alone", "选@C", HEART, "C", "statement"),
    Case("chinese one wrong, another correct", "@A错误，@C正确。", HEART, "C", "statement"),
    Case("chinese two letters correct", "@A和@C正确", HEART, "A,C", "statement"),
    Case("chinese letter is not correct", "@C不正确", HEART, "", "none"),
    Case("chinese letter is wrong", "@C错误", HEART, "", "none"),
    Case("chinese letter is correct, asked", "@C正确吗？", HEART, "", "none"),
    Case("chinese if a letter is correct", "如果@C正确，杂音应向颈部放射。", HEART, "", "none"),
    Case("chinese choose, in a condition", "如果选@C，杂音应向颈部放射。", HEART, "", "none"),
    # --- 3. answer lines -------------------------------------------------------------------
    Case(
        "bare letter first, others named after",
        "@C\n\nThe ejection murmur points to aortic stenosis; @A and @D are regurgitant or diastolic.",
        HEART, "C", "answer_line",
    ),
    Case("bare I first", "@I\n\nI chose it because quinolones target it in Gram-positives.", TARGETS, "I", "answer_line"),
    Case("paren letter first", "(@B)\n\nAortic regurgitation gives an early diastolic murmur.", HEART, "B", "answer_line"),
    Case(
        "bold letter and text first",
        "**@D. Mitral stenosis**\n\nThe opening snap after rheumatic fever points to it.",
        HEART, "D", "answer_line",
    ),
    Case("bare letter last", "Diastolic rumble with an opening snap.\n\n@D", HEART, "D", "answer_line"),
    Case("paren letter with reason", "(@A) because the murmur radiates to the axilla.", HEART, "A", "answer_line"),
    Case("letter list line", "@D,@F,@G,@I", TARGETS, "D,F,G,I", "answer_line"),
    Case("first and last lines disagree", "@B\n\nOn reflection the rumble matters more.\n\n@D", HEART, "B,D", "answer_line"),
    Case("option text line", "maybe", YES_NO, "C", "answer_line"),
    Case("capitalised text line", "Yes.", YES_NO, "A", "answer_line"),
    Case(
        "think text, then text answer",
        "<|im_start|>think\n@B is tempting, but @B fails the timing.\n<|im_start|>answer\nAortic stenosis",
        HEART, "C", "answer_line",
    ),
    Case("a walk through the options", WALK_THROUGH, HEART, "", "none"),
    Case("letter then a bare word", "@A because the murmur radiates to the axilla.", HEART, "", "none"),
    # --- 4. similarity ---------------------------------------------------------------------
    Case(
        "article A, text at the end",
        "A 45-year-old with a diastolic rumble most likely has mitral stenosis.", HEART, "D", "similarity",
    ),
    Case("capitals inside words", "After CABG and with DIC excluded, this is aortic stenosis.", HEART, "C", "similarity"),
    Case(
        "B-cell and vitamin B12",
        "B-cell disease and vitamin B12 lack are excluded; aortic stenosis fits.", HEART, "C", "similarity",
    ),
    Case("negated option ignored", "Not mitral regurgitation; it is aortic regurgitation.", HEART, "B", "similarity"),
    Case(
        "contained option is part of the longer",
        "The lesion is aortic stenosis", ["Stenosis", "Aortic stenosis", "Sclerosis"], "B", "similarity",
    ),
    Case("'no' inside 'diagnosis'", "The diagnosis held up, so yes.", YES_NO, "A", "similarity"),
    Case("statement negating the text", "The answer is not Aortic stenosis", HEART, "", "none"),
    Case("statement negating a misspelt text", "The answer is not insulin glargin.", DIABETES, "", "none"),
    Case("text rejected after it", "Aortic stenosis is not the answer.", HEART, "", "none"),
    Case("text asked", "Is it aortic stenosis?", HEART, "", "none"),
    Case("misspelt text asked", "Aortc stenosys?", HEART, "", "none"),
    Case("text called unlikely", "Aortic stenosis is unlikely.", HEART, "", "none"),
    Case("contracted negation", "The answer isn't aortic stenosis", HEART, "", "none"),
    Case(
        "not one text but another",
        "The answer is not aortic stenosis but mitral stenosis.", HEART, "D", "similarity",
    ),
    Case("negation option stated", "The drug does not cross the placenta.", PLACENTA, "B", "similarity"),
    Case("misspelt negation option", r"\boxed{Does not cros the placenta}", PLACENTA, "B", "similarity"),
    Case("misspelt 'no' option", r"\boxed{No treatmnt needed}", PLACENTA, "C", "similarity"),
    Case("an option's 'no' left out", r"\boxed{Treatment needed}", PLACENTA, "", "none"),
    Case("pubmedqa maybe at the end", "There is no clear evidence either way, so maybe.", YES_NO, "C", "similarity"),
    Case(
        "closing sentence names the option",
        "Glycogen phosphorylase cleaves alpha-1,4 bonds with phosphate.\n\nSo the initial product of "
        "glycogen breakdown in muscle is glucose-1-phosphate.",
        GLYCOGEN, "D", "similarity",
    ),
    # --- no answer ---------------------------------------------------------------------------
    Case("empty reply", "", HEART, "", "none"),
    Case("whitespace reply", "  \n ", HEART, "", "none"),
    # --- audit: rejections, revisions, and answers the rules did not read --------------------
    # "X is contraindicated" answers "which drug is contraindicated?": not a rejection (review)
    Case("contraindicated answers", "Final answer: @A. Metformin is contraindicated in renal failure.", DIABETES, "A",
         "statement"),
    Case("contraindicated text", "Final answer: Glipizide is contraindicated here.", DIABETES, "C", "similarity"),
    Case("a name ending in a capital", "So vitamin A is the answer.", VITAMINS, "B", "similarity"),
    Case("a number is no list of statements", "The answer is 1", STATEMENT_LISTS, "", "none"),
    Case("a percentage", "The answer is 20", ["5%", "10%", "15%", "20%"], "D", "similarity"),
    Case("a unit of two words", "The answer is 20", ["5 mm Hg", "10 mm Hg", "15 mm Hg", "20 mm Hg"], "D", "similarity"),
    Case("a number is no 'only'", "The answer is 3", ["1 only", "2 only", "1 and 2", "3 only"], "", "none"),
    Case("so B is the answer", "So @B is the answer.", HEART, "B", "statement"),
    Case("B is the answer asked", "The answer is @C. Hmm, what if @B is the answer?", HEART, "C", "statement"),
    Case("a word in the sentence before", "This is viral hepatitis. @B is the answer.",
         ["Hepatitis A", "Hepatitis B", "Hepatitis C", "Hepatitis E"], "B", "statement"),
    Case("I think B is the answer", "I think @B is the answer.", HEART, "B", "statement"),
    Case("hepatitis B is the answer", "Hepatitis B is the answer.", ["Hepatitis A", "Hepatitis B", "Hepatitis C"],
         "B", "similarity"),
    Case("a revision: no wait", "The answer is @B. No wait, it's @C.", HEART, "C", "statement"),
    Case("a revision: actually", "@B\n\nHmm, actually @C.", HEART, "C", "statement"),
    Case("a revision: correction", "Answer: @A\nCorrection: @B", HEART, "B", "statement"),
    Case("'actually' before a sentence", "The answer is @C. Actually, A patient with this murmur may faint.", HEART,
         "C", "statement"),
    Case("letter is the answer", "Therefore, @B is the answer.", HEART, "B", "statement"),
    Case("correct option colon", "Correct option: @B", HEART, "B", "statement"),
    Case("a dose without its unit", "The answer is 20", DOSES, "D", "similarity"),
    Case("a bare dose", "20", DOSES, "D", "similarity"),
    Case("refusal", "I don't know.", HEART, "", "none"),
    Case("a letter that names no option", "Z", HEART, "", "none"),
    Case("cannot answer", "I cannot answer this without the ECG.", HEART, "", "none"),
    Case("none of the above", "None of the above.", HEART, "", "none"),
    Case("ruled out only", "The findings rule out aortic stenosis.", HEART, "", "none"),
    Case(
        "every option discussed, none chosen",
        "Mitral regurgitation is holosystolic, aortic regurgitation diastolic, aortic stenosis an ejection "
        "murmur and mitral stenosis a rumble; the description fits more than one.",
        HEART, "", "none",
    ),
    # --- found by an audit with real options: each was read as an answer, most as a wrong one --
    Case("a genus initial in a box", r"\boxed{E. coli}", ETEC, "", "none"),
    Case("a genus initial stated", "Final answer: C. difficile", MICROBES, "", "none"),
    Case("a genus initial without a space", r"\boxed{B.cereus}", MICROBES, "", "none"),
    Case("a capital and a word boxed", r"\boxed{B cells}", LYMPHOCYTES, "", "none"),
    Case("the article after a heading", "**Final Answer**\n\nA trial of a selective serotonin reuptake inhibitor.",
         SSRI, "C", "similarity"),
    Case("the pronoun with ten options", "Final answer: I think it's @B.", TARGETS, "", "none"),
    Case("a lower-case option's text after its letter", "The answer is @C. hypokalemia, due to renal losses.",
         POTASSIUM, "C", "statement"),
    Case("the last line comments on an option",
         "The opening snap and diastolic rumble indicate **mitral stenosis**.\n\nWhy the others do not fit:\n"
         "- **@C. Aortic stenosis**: systolic ejection murmur.\n  - Radiates to the carotids.\n"
         "- **@A. Mitral regurgitation**: holosystolic murmur radiating to the axilla.", HEART, "D", "similarity"),
    Case("a conditional statement after the answer",
         "**Answer: @D. Mitral stenosis**\n\nWhy not the others:\n- If the murmur were systolic and radiated to "
         "the carotids, the answer would be @C.", HEART, "D", "similarity"),  # the text stated decides
    Case("a letter correct only under a restriction",
         "The correct answer is @D.\n\n@C is correct only for systolic ejection murmurs.", HEART, "", "none"),
    Case("answer as a verb", "The answer is @D.\n\nOne might answer @C, but that is wrong.", HEART, "D", "statement"),
    Case("a statement in an if-clause", "If you thought the answer is @C, recall the opening snap. The answer is @D.",
         HEART, "D", "statement"),
    Case("a conclusion with would", "Therefore, the answer would be @C.", HEART, "C", "statement"),
    Case("two texts weighed", "I don't know whether it's mitral stenosis or aortic stenosis", HEART, "", "none"),
    Case("two texts boxed with or", r"\boxed{\text{Mitral stenosis or aortic stenosis}}", HEART, "", "none"),
    Case("pubmedqa leaning towards another", "The answer is maybe, though the evidence leans towards yes.",
         YES_NO, "", "none"),
    Case("a range names neither end", "The answer is approximately 10-15%.", PERCENT, "", "none"),
    Case("an opposite prefix is no misspelling", r"\boxed{Hypothyroidism}", THYROID, "", "none"),
    Case("another number is no misspelling", r"\boxed{1500 mg}", DOSES_X10, "", "none"),
    Case("a letter that ends an option called correct", "Given the serology, Hepatitis D is correct.",
         HEPATITIS, "C", "similarity"),
    Case("a Spanish statement", "La respuesta correcta es la @C.", HEART, "C", "statement"),
    Case("i'll go with", "I'll go with @B.", HEART, "B", "statement"),
    Case("an abbreviated statement", "Ans. @C", HEART, "C", "statement"),
    # --- and what a review of those rules found they must still read ---------------------------
    Case("a conditional last word drops the earlier statements",
         "<think>Hmm, I initially thought the answer is @B. If that is the case, the answer would be @A.</think>\n\n"
         "The most likely diagnosis is aortic stenosis given the murmur.", HCM, "A", "similarity"),
    Case("an if-clause the sentence ends in", "If we put all of this together the answer is @A.", HCM, "A", "statement"),
    Case("if so", "If so, the answer would be @A.", HCM, "A", "statement"),
    Case("a counterfactual without if", "The answer is @A.\n\nHad the murmur been diastolic, the answer would be @B.",
         HCM, "", "none"),
    Case("students answer", "The answer is @A. Students often answer @B here.", HCM, "A", "statement"),
    Case("the final as a word", "The final: @B", HCM, "", "none"),
    Case("a conclusion after a walk", "- @A. Aortic stenosis: no\n- @C. Mitral regurgitation: no\n\nConclusion:\n\n"
         "**@B. Mitral stenosis** - diastolic rumble.", HCM, "B", "answer_line"),
    Case("A and an adverb", "Answer: @A probably", HCM, "A", "statement"),
    Case("a letter then another option's text in lower case",
         "The answer is @G. aspartate, valine and threonine is incorrect because it does not fit.", AMINO_ACIDS, "G",
         "statement"),
    Case("a capital and words", r"\boxed{D dimer testing}", ["Troponin", "CT angiography", "Echocardiogram", "D-dimer assay"],
         "", "none"),
    Case("a genus initial and a clause", "Final answer: E. coli, the most common cause of UTI",
         ["Giardia", "Shigella", "S. aureus", "ETEC", "EPEC"], "", "none"),
    Case("an opposite prefix hyphenated", r"\boxed{Hypo-thyroidism}", THYROID, "", "none"),
    Case("a decimal holds no option's number", r"\boxed{1.5 mg/kg}", ["5 mg/kg", "10 mg/kg", "15 mg/kg", "20 mg/kg"],
         "", "none"),
    Case("two texts weighed, then concluded", "Mitral stenosis vs aortic stenosis: aortic stenosis", HCM, "A",
         "similarity"),
    Case("a revised answer explained with only", "My first thought: the answer is @A. But the murmur increases with "
         "Valsalva.\nThe answer is @D, as this dynamic behaviour is seen only in HOCM.", HCM, "D", "statement"),
    Case("would after a finding that had been", "Since the patient had these findings, the best answer would be @D.",
         HCM, "D", "statement"),
    Case("a forced choice", "If I had to choose, I would pick @C.", HCM, "C", "statement"),
    Case("a forced choice stated", "The question is ambiguous, but if I had to pick one answer, the answer is @D.",
         HCM, "D", "statement"),
    Case("an if before a colon", "Let me check if this fits: the answer is @D.", HCM, "D", "statement"),
    Case("even if", "Even if the echo is normal the answer is @B", HCM, "B", "statement"),
    Case("a letter and an adverb", "The answer is @C according to current guidelines.", HCM, "C", "statement"),
    Case("a letter and a capitalised text", "**Answer: @A** Aortic valve stenosis", HCM, "A", "statement"),
    Case("a letter then a sentence in lower case", "The answer is @B. maybe is incorrect because it does not fit.",
         YES_NO, "B", "statement"),
    Case("a letter then a paraphrase in lower case", "Answer: @A. increased ADH release", ADH, "A", "statement"),
    Case("a mixed-case word after a letter", "The answer is @B. cGMP pathway is not involved.", HCM, "B", "statement"),
    Case("the answer first, then why", "**@D. Hypertrophic cardiomyopathy**: the murmur increases with Valsalva.\n\n"
         "This dynamic behaviour is typical.", HCM, "D", "answer_line"),
    Case("ANS is no Ans", "The sympathetic arm of the ANS. C fibers are involved", HEART, "", "none"),
    Case("EKG for ECG", r"\boxed{Obtain an EKG}", ECG, "A", "similarity"),
    Case("a British spelling", r"\boxed{Unknown etiology}", ETIOLOGY, "A", "similarity"),
    Case("final and a colon", "Final: @D", HEART, "D", "statement"),
]

_MARK = re.compile(r"@([A-Za-z])")


def reorder(case: Case, order: list[int]) -> tuple[str, list[str], str]:
    """The case with options in ``order`` (new position -> old index): reply and expectation
    re-lettered to follow their options."""
    new_position = {old: new for new, old in enumerate(order)}

    def letter(old: str) -> str:
        new = string.ascii_uppercase[new_position[string.ascii_uppercase.index(old.upper())]]
        return new if old.isupper() else new.lower()

    reply = _MARK.sub(lambda m: letter(m.group(1)), case.reply)
    options = [case.options[old] for old in order]
    expected = ",".join(sorted(letter(x) for x in case.expected.split(",") if x))
    return reply, options, expected


def named(extraction: Extraction) -> str:
    return ",".join(extraction.letters)


def test_table_is_large_and_covers_every_rule() -> None:
    assert len(CASES) >= 60
    assert len({case.name for case in CASES}) == len(CASES)
    assert {case.method for case in CASES} == set(METHODS)


@pytest.mark.parametrize("direction", ["written", "reversed"])
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_reply_table(case: Case, direction: str) -> None:
    order = list(range(len(case.options)))
    reply, options, expected = reorder(case, order if direction == "written" else order[::-1])
    extraction = extract_answer(reply, options)
    assert (named(extraction), extraction.method) == (expected, case.method)
    verdict = "no_answer" if not expected else "answer" if "," not in expected else "multiple_answers"
    assert extraction.verdict == verdict
    assert (extraction.letter is not None) == (verdict == "answer")


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_grade_agrees_with_extraction(case: Case) -> None:
    """Correct for exactly the one stated option; never for several or none."""
    extraction = extract_answer(case.reply.replace("@", ""), case.options)
    for index in range(len(case.options)):
        result = grade(case.reply.replace("@", ""), case.options, index)
        assert result.extraction == extraction
        assert result.correct is (extraction.letter == string.ascii_uppercase[index])
        assert is_correct(case.reply.replace("@", ""), case.options, index) is result.correct


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_reordering_options_never_changes_the_verdict(data: st.DataObject) -> None:
    case = data.draw(st.sampled_from(CASES))
    order = data.draw(st.permutations(range(len(case.options))))
    written = extract_answer(*reorder(case, list(range(len(case.options))))[:2])
    reply, options, _ = reorder(case, list(order))
    moved = extract_answer(reply, options)
    assert (moved.verdict, moved.method) == (written.verdict, written.method)

    def texts(extraction: Extraction, opts: list[str]) -> list[str]:
        return sorted(opts[string.ascii_uppercase.index(x)] for x in extraction.letters)

    assert texts(moved, options) == texts(written, case.options)


# --- rule details ------------------------------------------------------------------------------


def test_extraction_keeps_box_text() -> None:
    assert extract_answer(r"\boxed{\text{C. Aortic stenosis}}", HEART) == Extraction(
        letter="C", text="C. Aortic stenosis", method="boxed", verdict="answer", letters=("C",)
    )
    assert extract_answer("The answer is B", HEART).text is None
    assert extract_answer(r"\boxed{x = 5}", NUMBERS).text == "5"
    assert extract_answer(r"\boxed{Z}", HEART).text == "Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"\boxed{C}", "C"),
        (r"\boxed {C}", "C"),
        (r"\boxed{\text{C. Aortic stenosis}}", "C. Aortic stenosis"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed{x = 5}", "5"),
        (r"\boxed{a = b = 7 }", "7"),
        (r"\boxed{A} then \boxed{B}", "B"),
        (r"\fbox{ D }", "D"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed{\text{\textbf{B}}}", "B"),
        (r"\boxed{}", ""),
        (r"no box here", None),
        (r"\boxed{C", None),
        (r"\boxed{A} and \boxed{\text{B}", None),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


def test_box_holding_a_letter_that_is_another_options_text() -> None:
    """Options whose text is a letter are ambiguous; rule 2 counts either reading as correct,
    extraction prefers the letter reading."""
    options = ["C", "D", "A", "B"]
    assert extract_answer(r"\boxed{C}", options).letter == "C"
    assert is_correct(r"\boxed{C}", options, 2)
    assert is_correct(r"\boxed{C}", options, 0)
    assert not is_correct(r"\boxed{C}", options, 1)


@pytest.mark.parametrize("form", ["The answer is {L}. {T}", "Answer: ({L}) {T}", "**{L}) {T}**", r"\boxed{{{L}. {T}}}"])
def test_a_label_and_its_own_options_letter_text_name_that_option(form: str) -> None:
    """Blood groups shuffled as the training rows are (A. AB, B. O, C. B, D. A): "C. B", the prompt's
    own line for option C, was read as the letters C and B and graded as two answers, wrong."""
    for order in itertools.permutations(["A", "B", "AB", "O"]):
        for index, text in enumerate(order):
            reply = form.format(L="ABCD"[index], T=text)
            extraction = extract_answer(reply, list(order))
            assert (extraction.verdict, extraction.letter) == ("answer", "ABCD"[index]), (reply, order)
            assert is_correct(reply, list(order), index)


def test_capitals_are_an_options_word_only_when_exactly_one_option_has_it() -> None:
    """``\\boxed{ACE}`` is the option "ACE inhibitors" when one option has the word ACE (case kept,
    whole word); without one, or with two, it stays the letters A, C and E."""
    assert extract_answer(r"\boxed{ACE}", ACE).letter == "A"
    assert is_correct(r"\boxed{ACE}", ACE, 0)
    for options in (HEART + ["Tricuspid"], ["Ace bandage", "Beta", "Gamma", "Delta", "Epsilon"],
                    ["ACE inhibitors", "ACE2 blockers", "Beta", "Gamma", "ACE antibodies"]):
        extraction = extract_answer(r"\boxed{ACE}", options)
        assert (extraction.verdict, extraction.letters) == ("multiple_answers", ("A", "C", "E")), options
    extraction = extract_answer(r"\boxed{AB}", ["A blood group", "B blood group", "O blood group"])
    assert (extraction.verdict, extraction.letters) == ("multiple_answers", ("A", "B"))


def test_capitals_run_together_then_a_closing_mark_are_letters() -> None:
    """``\\boxed{CD)}``, ``\\boxed{CD:}``: the last label of a run closed as a bare label may be
    (``D)``); the run still names C and D. Found by the label property test, which wrote "C" and
    "D)" with no join; it was read as no answer."""
    for reply in (r"\boxed{CD)}", r"\boxed{CD:}", "The answer is AB)."):
        extraction = extract_answer(reply, HEART)
        assert extraction.verdict == "multiple_answers" and len(extraction.letters) == 2, reply
    assert extract_answer(r"\boxed{ACE)}", ACE).letter == "A"


def test_text_after_a_letter_that_opens_with_a_capital_is_no_second_label() -> None:
    """A second label after a slot's letter is a second answer when it is bracketed or its own
    text is an option's; a capital that starts the text ("B cells", "E. coli") is no label."""
    bugs = ["Staphylococcus aureus", "Klebsiella", "E. coli", "Proteus", "Enterococcus"]
    assert extract_answer("Answer: D. B cells are lacking", HEART).letter == "D"
    assert extract_answer("The answer is C. E. coli infection", bugs).letter == "C"
    assert extract_answer(r"\boxed{C. E. coli}", bugs).letter == "C"


def test_repeated_option_text_is_correct_for_either() -> None:
    options = ["yes", "no", "yes"]
    assert is_correct(r"\boxed{yes}", options, 2)
    assert extract_answer(r"\boxed{yes}", options).letter == "A"
    # in any form: a statement or the bare text was wrong for the second copy while the box was right
    for reply in ("The answer is yes", "yes", r"\boxed{yes}"):
        assert is_correct(reply, options, 2) and is_correct(reply, options, 0) and not is_correct(reply, options, 1)


def test_answer_idx_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        grade(r"\boxed{A}", HEART, 4)
    with pytest.raises(ValueError, match="out of range"):
        is_correct(r"\boxed{A}", HEART, -1)


def test_no_options() -> None:
    assert extract_answer(r"\boxed{A}", []) == Extraction(letter=None, text="A", method="none", verdict="no_answer")


OPTION_TEXT = st.text(alphabet=st.characters(categories=("L", "N", "Zs")), min_size=1, max_size=20).filter(
    lambda s: s.strip()
)


@settings(max_examples=200, deadline=None)
@given(options=st.lists(OPTION_TEXT, min_size=2, max_size=8, unique_by=lambda s: " ".join(s.casefold().split())), data=st.data())
def test_boxed_letter_and_prefixed_text_always_map(options: list[str], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(options) - 1))
    letter = "ABCDEFGH"[index]
    assert extract_answer(rf"\boxed{{{letter}}}", options).letter == letter
    assert is_correct(rf"\boxed{{{letter}}}", options, index)
    assert is_correct(rf"\boxed{{\text{{{letter}. {options[index]}}}}}", options, index)


WORDS = st.text(alphabet=string.ascii_letters, min_size=1, max_size=12)
OPTION_PHRASE = st.one_of(OPTION_TEXT, st.lists(WORDS, min_size=1, max_size=4).map(" ".join))
NEGATED = [
    r"\boxed{{not {text}}}",
    r"\boxed{{\text{{No {text}}}}}",
    "The answer is not {text}.",
    "Final answer: not {text}",
    "{text} is not the answer.",
    "Answer: {text} is incorrect",
    "Answer: {letter} is incorrect",
    r"\boxed{{\text{{{letter} is incorrect}}}}",
    r"\boxed{{{letter}. {text} is incorrect}}",
    "The answer: {letter}. {text} is unlikely.",
]
TEMPLATE_WORDS = set(re.findall(r"[a-z]+", " ".join(NEGATED).casefold())) - {"letter"}


@settings(max_examples=300, deadline=None)
@given(
    options=st.lists(OPTION_PHRASE, min_size=2, max_size=6, unique_by=lambda s: " ".join(s.casefold().split())),
    data=st.data(),
)
def test_negating_an_option_never_chooses_it(options: list[str], data: st.DataObject) -> None:
    """A reply that negates or rejects an option does not choose it, whatever its text: not by
    its letter, its text, or the fuzzy fallback ("not X" is within ratio 85 of a long X)."""
    # An option spelt like the template's own words ("boxed", "answer") is found in them, and
    # one spelt like a letter is read as a letter too (see the letter-text box test above).
    assume(not any(set(o.casefold().split()) & TEMPLATE_WORDS for o in options))
    assume(not any(re.fullmatch(r"\s*[A-Za-z]\s*", o) for o in options))
    index = data.draw(st.integers(0, len(options) - 1))
    template = data.draw(st.sampled_from(NEGATED))
    reply = template.format(text=options[index], letter="ABCDEF"[index])
    assert extract_answer(reply, options).letter != "ABCDEF"[index], reply
    assert not is_correct(reply, options, index), reply


NEGATION_HEADS = ["No", "Not", "None of", "Does not", "Never"]


@settings(max_examples=200, deadline=None)
@given(
    heads=st.lists(st.sampled_from(NEGATION_HEADS), min_size=2, max_size=5),
    tails=st.lists(st.lists(WORDS, min_size=1, max_size=3).map(" ".join), min_size=5, max_size=5),
    data=st.data(),
)
def test_an_option_that_is_a_negation_is_chosen_by_its_text(
    heads: list[str], tails: list[str], data: st.DataObject
) -> None:
    """Options that begin with a negation ("No treatment needed") are chosen by naming them: their
    own "no" is not a reply negating them."""
    options = [f"{head} {tail}" for head, tail in zip(heads, tails, strict=False)]
    assume(len({" ".join(o.casefold().split()) for o in options}) == len(options))
    index = data.draw(st.integers(0, len(options) - 1))
    letter, text = "ABCDE"[index], options[index]
    for reply in (rf"\boxed{{{text}}}", f"The answer is {text}.", f"Answer: {letter}. {text}", f"I would pick {text} here."):
        assert extract_answer(reply, options).letter == letter, reply
        assert is_correct(reply, options, index), reply


REPLY_PIECES = list("AbCI {}\\=()*:.,-\n") + ["\\boxed{", "\\fbox{", "\\text{", "answer is ", "</think>", " and "]


@settings(max_examples=300, deadline=None)
@given(
    reply=st.lists(st.sampled_from(REPLY_PIECES), max_size=30).map("".join),
    options=st.lists(OPTION_TEXT, min_size=1, max_size=5),
)
def test_never_raises_and_verdict_is_consistent(reply: str, options: list[str]) -> None:
    extraction = extract_answer(reply, options)
    assert extraction.verdict in VERDICTS and extraction.method in METHODS
    assert all(letter in "ABCDE"[: len(options)] for letter in extraction.letters)
    assert (extraction.letter is None) == (extraction.verdict != "answer")
    assert (extraction.method == "none") == (extraction.verdict == "no_answer")
    assert len(extraction.letters) == {"answer": 1, "no_answer": 0}.get(extraction.verdict, len(extraction.letters))
    assert extraction.verdict != "multiple_answers" or len(extraction.letters) >= 2
    grade(reply, options, 0)


# --- real replies --------------------------------------------------------------------------------


@pytest.fixture
def gpt4o_replies(shared_data) -> list[dict]:
    """818 real GPT-4o replies to MMLU-Pro health questions (ten options, so "I" is a letter),
    with the letter MMLU-Pro's own extractor read (``pred``, None where it read nothing)."""
    return json.loads((shared_data / "eval" / "mmlu_pro" / "health_result_gpt4o.json").read_text(encoding="utf-8"))


def test_real_replies_agree_with_mmlu_pro_where_it_read_one_answer(gpt4o_replies: list[dict]) -> None:
    """Where MMLU-Pro read a letter we read the same one, except replies that state two options,
    where MMLU-Pro kept the first and we refuse both."""
    several = 0
    for row in gpt4o_replies:
        if row["pred"] is None:
            continue
        extraction = extract_answer(row["response"], row["options"])
        if extraction.verdict == "multiple_answers":
            several += 1
            assert row["pred"] in extraction.letters
            assert re.search(r"\([A-J]\),? and \([A-J]\)|[A-J],? and [A-J]", row["response"].splitlines()[-1])
        else:
            assert extraction.letter == row["pred"], row["response"][-300:]
    assert several < 10


def test_real_replies_mmlu_pro_missed_are_read_or_truly_unanswered(gpt4o_replies: list[dict]) -> None:
    """MMLU-Pro's extractor misses bold answers ("The answer is **A. ...**"); we read them, and
    say no_answer only where the model chose none of the options."""
    missed = [row for row in gpt4o_replies if row["pred"] is None]
    assert missed
    for row in missed:
        extraction = extract_answer(row["response"], row["options"])
        last_line = row["response"].strip().splitlines()[-1]
        if extraction.verdict == "no_answer":
            assert re.search(r"(?i)\bnone of\b", last_line), last_line
        elif extraction.verdict == "multiple_answers":  # "The answer is **G, H, and J**."
            assert all(re.search(rf"(?<![A-Za-z]){x}(?![A-Za-z])", last_line) for x in extraction.letters), last_line
        else:
            assert extraction.verdict == "answer"
            assert re.search(rf"(?<![A-Za-z]){extraction.letter}(?![A-Za-z])", last_line), last_line


def test_real_replies_answering_first_are_read_by_their_first_line(gpt4o_replies: list[dict]) -> None:
    """The same real replies reshaped as answer-first: the letter on the first line, then the
    walk through the options, without the closing statement. Reading the last lone capital (the
    old rule) gets such replies wrong; the first line is the answer."""
    reshaped = 0
    for row in gpt4o_replies:
        lines = row["response"].rstrip().splitlines()
        if row["pred"] is None or not lines[-1].startswith("The answer is"):
            continue
        reply = row["pred"] + "\n\n" + "\n".join(lines[:-1])
        extraction = extract_answer(reply, row["options"])
        reshaped += 1
        if extraction.method == "answer_line":
            assert extraction.letter == row["pred"]
        else:  # the body itself ends on a statement of its own: that one decides
            assert extraction.method == "statement"
    assert reshaped > 700


def test_options_from_a_dataframe_row_are_read_like_a_list() -> None:
    # pandas/parquet hand a row's options back as a numpy array, whose truth value is an error
    import numpy as np
    import pandas as pd

    options = ["Mitral regurgitation", "Aortic regurgitation", "Aortic stenosis", "Mitral stenosis"]
    for held in (np.array(options), pd.Series(options), tuple(options), (o for o in options)):
        assert extract_answer("The answer is C", held).letter == "C"
    assert grade("The answer is C", np.array(options), np.int64(2)).correct


@pytest.mark.parametrize(("reply", "options", "answer_idx", "says"), [
    ("The answer is C", "ABCD", 2, "not a single str"),       # would be read as four one-letter options
    (None, ["x", "y"], 0, "reply must be a str"),              # a failed request's reply
    ("The answer is B", ["x", "y"], "B", "answer_idx must be an int"),
    ("The answer is B", ["x", "y"], True, "answer_idx must be an int"),
    ("The answer is B", ["x", "y"], 1.0, "answer_idx must be an int"),
    ("The answer is B", ["x", 2], 1, "every option must be a str"),
])
def test_wrong_argument_types_are_said_in_one_line(reply, options, answer_idx, says) -> None:
    with pytest.raises(TypeError, match=says):
        grade(reply, options, answer_idx)


# --- reference s.6, rule by rule, on generated replies ---------------------------------------------
#
# Each property builds the reply from the rule's own words and checks the one answer the rule gives,
# so it cannot pass on a reply the rule does not read: every example asserts a specific letter.

ANSWER_WORD = st.text(alphabet=string.ascii_lowercase, min_size=2, max_size=10)
ANSWER_OPTION = st.lists(ANSWER_WORD, min_size=1, max_size=3).map(" ".join)
ANSWER_OPTIONS = st.lists(ANSWER_OPTION, min_size=2, max_size=6, unique=True)
CASINGS = st.sampled_from([str.lower, str.upper, str.title, str.swapcase, lambda s: s])
# Brace-balanced box content: plain words and nested groups, no backslash, no "=".
BALANCED = st.recursive(
    st.text(alphabet=string.ascii_letters + string.digits + " .,()-", max_size=8),
    lambda inner: st.lists(inner, min_size=1, max_size=3).map(lambda parts: "{" + "".join(parts) + "}"),
    max_leaves=6,
)
BALANCED_CONTENT = st.lists(BALANCED, min_size=1, max_size=4).map("".join)
# Running text around boxes: may hold stray braces, never a box command of its own.
FILLER = st.text(alphabet=string.ascii_letters + " .,:\n{}", max_size=30)


def _letters_of(text: str) -> str:
    """The Latin letters of ``text``, case folded: what a slot of labels and an option share when
    the option's text could be read as those labels."""
    return re.sub(r"[^a-z]", "", text.casefold())


def _no_answer_words(options: list[str]) -> bool:
    """Options spelt like a single letter or like the templates' own words are read as those."""
    return not any(set(o.split()) & {"answer", "is", "the", "final", "correct", "option", "boxed"} for o in options)


@settings(max_examples=300, deadline=None)
@given(boxes=st.lists(BALANCED_CONTENT, min_size=1, max_size=4), fillers=st.lists(FILLER, min_size=5, max_size=5),
       commands=st.lists(st.sampled_from(["\\boxed", "\\fbox", "\\boxed "]), min_size=4, max_size=4))
def test_rule_1_the_last_box_with_balanced_braces_is_read(boxes: list[str], fillers: list[str], commands: list[str]):
    """s.6.1: the content of the LAST ``\\boxed{}``/``\\fbox{}``, nested braces kept whole (inside
    the content: a group around all of it is only looks, below)."""
    boxes = [f"v{box}" for box in boxes]
    reply = fillers[0] + "".join(f"{cmd}{{{box}}}{fill}" for cmd, box, fill in zip(commands, boxes, fillers[1:]))
    assert last_boxed(reply) == boxes[-1].strip()


@settings(max_examples=100, deadline=None)
@given(content=BALANCED_CONTENT, depth=st.integers(1, 3), switch=st.sampled_from(["", "\\rm ", "\\bf  "]))
def test_rule_1_a_group_around_the_whole_box_is_looks(content: str, depth: int, switch: str):
    r"""``\boxed{{C}}``, ``\boxed{{\rm C}}``: braces around the whole content (and an old font switch
    at their start) change nothing; they were read as no answer."""
    content = f"v{content}"
    assert last_boxed("\\boxed{" + "{" * depth + switch + content + "}" * depth + "}") == content.strip()


@settings(max_examples=200, deadline=None)
@given(words=st.lists(BALANCED_CONTENT, min_size=1, max_size=3), before=FILLER,
       font=st.sampled_from(["text", "textbf", "mathrm"]))
def test_rule_1_text_is_unwrapped(words: list[str], before: str, font: str):
    r"""s.6.1: ``\text{...}`` (and font commands like it) is unwrapped, however many, nested braces kept."""
    words = [f"v{word}" for word in words]  # a group around the whole content is looks too (above)
    content = " ".join(f"\\{font}{{{word}}}" for word in words)
    assert last_boxed(f"{before}\\boxed{{{content}}}") == " ".join(words).strip()


@settings(max_examples=200, deadline=None)
@given(sides=st.lists(st.text(alphabet=string.ascii_letters + string.digits + " .", max_size=8), min_size=2, max_size=4),
       wrapped=st.booleans())
def test_rule_1_keeps_what_follows_the_last_equals(sides: list[str], wrapped: bool):
    content = " = ".join(sides)
    box = f"\\boxed{{\\text{{{content}}}}}" if wrapped else f"\\boxed{{{content}}}"
    assert last_boxed(box) == sides[-1].strip()


@settings(max_examples=300, deadline=None)
@given(options=ANSWER_OPTIONS, data=st.data())
def test_rule_2_box_equal_to_the_answer_text_prefixed_text_or_letter_in_any_case(options: list[str], data):
    """s.6.2: correct when the box equals, case-insensitively, the answer text, ``X. text`` or X;
    and then for that option only."""
    index = data.draw(st.integers(0, len(options) - 1))
    letter, text = string.ascii_uppercase[index], options[index]
    case = data.draw(CASINGS)
    sep = data.draw(st.sampled_from([". ", ") ", ": "]))
    for content in (case(text), case(letter), case(f"{letter}{sep}{text}")):
        reply = data.draw(FILLER) + f"\\boxed{{{content}}}"
        assert [is_correct(reply, options, i) for i in range(len(options))] == [
            i == index for i in range(len(options))
        ], reply
        assert extract_answer(reply, options).letter == letter, reply


@settings(max_examples=300, deadline=None)
@given(options=ANSWER_OPTIONS, data=st.data())
def test_rule_2_a_letter_naming_another_options_text_is_not_an_answer_in_any_case(options: list[str], data):
    """``X. text`` whose text is another option's states two options, whatever the letter's case:
    it is correct for neither (a lowercase ``a. aortic stenosis`` once counted as the text's option)."""
    assume(len(options) >= 2)
    i, j = data.draw(st.permutations(range(len(options))))[:2]
    case = data.draw(CASINGS)
    sep = data.draw(st.sampled_from([". ", ") ", ": "]))
    letter = data.draw(st.sampled_from([str.lower, str.upper]))(string.ascii_uppercase[i])
    for template in (r"\boxed{{{}}}", "The answer is {}", "Final answer: {}"):
        reply = template.format(f"{letter}{sep}{case(options[j])}")
        extraction = extract_answer(reply, options)
        assert extraction.verdict == "multiple_answers", reply
        assert sorted(extraction.letters) == sorted(string.ascii_uppercase[k] for k in (i, j)), reply
        assert not any(is_correct(reply, options, k) for k in range(len(options))), reply


STATEMENTS = ["The answer is {}.", "Answer: {}", "Final answer: {}", "So the correct option is {}.", "the answer is ({})"]
MUSINGS = ["Let me reconsider.", "Hmm, wait.", "On reflection,", "Checking the murmur again."]


@settings(max_examples=300, deadline=None)
@given(options=ANSWER_OPTIONS, data=st.data())
def test_rule_3_the_last_answer_statement_decides(options: list[str], data):
    """s.6.3 first matcher, LAST match only: with no box, the last "answer is X" is the answer,
    whatever the earlier statements said."""
    assume(_no_answer_words(options))
    picks = data.draw(st.lists(st.integers(0, len(options) - 1), min_size=2, max_size=5))
    parts = []
    for pick in picks:
        parts.append(data.draw(st.sampled_from(MUSINGS)))
        parts.append(data.draw(st.sampled_from(STATEMENTS)).format(string.ascii_uppercase[pick]))
    reply = " ".join(parts)
    extraction = extract_answer(reply, options)
    assert (extraction.letter, extraction.method) == (string.ascii_uppercase[picks[-1]], "statement"), reply
    assert is_correct(reply, options, picks[-1]), reply
    assert not any(is_correct(reply, options, k) for k in range(len(options)) if k != picks[-1]), reply


LIST_ITEMS = ["{}. {}", "({}) {}", "{}) {}", "**{}.** {}", "- {}. {}"]
LIST_PREFACES = ["", "Rickettsia rickettsii is the causative agent of:\n", "Options:\n\n"]
ONE_LINE_ITEMS = ["{}. {}", "({}) {}", "{}) {}"]


@settings(max_examples=300, deadline=None)
@given(options=ANSWER_OPTIONS, data=st.data())
def test_a_reply_that_lists_options_by_letter_states_none_of_them(options: list[str], data):
    """A reply that only lists two or more options, one per line with their letters (a small model
    echoing the question, seen from the embedded teacher), chooses none: it is never an answer,
    so never verified. Rule 4 once read it as the option it ends with, a 1-in-4 chance of a kept
    row whose reply states nothing."""
    assume(_no_answer_words(options))
    listed = data.draw(st.lists(st.integers(0, len(options) - 1), min_size=2, max_size=len(options), unique=True))
    assume(len({options[i] for i in listed}) == len(listed))
    item = data.draw(st.sampled_from(LIST_ITEMS))
    # one line too: "(A) x (B) y" was read as A, and "Options: (A) x (B) y" as the last (audit)
    joiner = data.draw(st.sampled_from(["\n", " "])) if item in ONE_LINE_ITEMS else "\n"
    reply = data.draw(st.sampled_from(LIST_PREFACES + ["Options: "] * (joiner == " "))) + joiner.join(
        item.format(string.ascii_uppercase[i], options[i]) for i in listed)
    extraction = extract_answer(reply, options)
    assert extraction.verdict != "answer", (reply, extraction)
    assert not any(is_correct(reply, options, k) for k in range(len(options))), reply


def test_a_one_line_list_is_one_from_its_first_label_and_an_answer_after_it_still_counts() -> None:
    """Labels after other words are no list ("Not (A) x. (B) y." answers B), and a list in a
    statement names every option in it (review of the one-line list rule)."""
    assert extract_answer("Not (A) Metformin. (B) Insulin glargine.", DIABETES).letter == "B"
    assert extract_answer("(A) Metformin (B) Insulin glargine", DIABETES).verdict == "no_answer"
    assert extract_answer("Answer: (A) Metformin (B) Insulin glargine", DIABETES).letters == ("A", "B")


def test_the_embedded_teachers_option_echoes_are_not_answers() -> None:
    """The replies SmolLM2 gave as the embedded teacher (`run traces --base-url embedded`)."""
    drugs = ["Amlodipine", "Sildenafil", "Omeprazole", "Propranolol"]
    germs = ["Bordetella pertussis", "Corynebacterium diphtheriae", "Plasmodium falciparum", "Clostridium tetani"]
    for reply, options in [
        ("A. Amlodipine\nB. Sildenafil\nC. Omeprazole\nD. Propranolol", drugs),
        ("A. Corynebacterium diphtheriae\nC. Plasmodium falciparum\nD. Plasmodium falciparum", germs),
    ]:
        assert extract_answer(reply, options).letter is None, reply
        assert not any(is_correct(reply, options, k) for k in range(len(options))), reply
    # one lettered line is still an answer line, and so is one option said twice
    assert extract_answer("D. Propranolol", drugs).letter == "D"
    ebv = ["Clostridium tetani", "Bordetella pertussis", "Mycobacterium leprae", "Epstein-Barr virus"]
    assert extract_answer("D. Epstein-Barr virus\n\nD. Epstein-Barr virus is a herpesvirus.", ebv).letter == "D"


LATEX_LETTERS = [r"\({}\)", r"\( {} \)", r"\(\text{{{}}}\)", r"$\text{{{}}}$", r"$\mathbf{{{}}}$", r"\textbf{{{}}}",
                 r"\[{}\]", r"$\mathrm{{({})}}$"]


@settings(max_examples=300, deadline=None)
@given(options=ANSWER_OPTIONS, data=st.data())
def test_a_stated_letter_in_latex_math_or_a_font_is_read(options: list[str], data):
    """Reasoning models trained on maths write their letter as maths ("The answer is \\(\\text{C}\\)",
    "Answer: $\\mathbf{C}$"). The delimiters and font commands only change looks, as in a box: the
    statement names C. They were read as no option, so a right answer was dropped (or paid again)."""
    assume(_no_answer_words(options))
    index = data.draw(st.integers(0, len(options) - 1))
    letter = string.ascii_uppercase[index]
    wrapped = data.draw(st.sampled_from(LATEX_LETTERS)).format(letter)
    statement = data.draw(st.sampled_from([s for s in STATEMENTS if "({})" not in s]))  # no "(\\(C\\))"
    reply = data.draw(st.sampled_from(MUSINGS)) + " " + statement.format(wrapped)
    extraction = extract_answer(reply, options)
    assert (extraction.letter, extraction.method) == (letter, "statement"), reply
    assert [is_correct(reply, options, k) for k in range(len(options))] == [k == index for k in range(len(options))]


# Bracket styles a letter is written in: ASCII, and the full-width and CJK ones Chinese-trained
# teachers (DeepSeek-R1, Qwen) write; "{}" is the letter.
BRACKETS = ["{}", "({})", "[{}]", "（{}）", "［{}］", "【{}】", "〔{}〕"]
FULL_WIDTH_LETTER = {letter: chr(ord(letter) + 0xFEE0) for letter in string.ascii_uppercase}
CJK_SLOTS = [r"\boxed{{{}}}", r"\fbox{{{}}}", "The answer is {}", "Answer：{}", "Final answer： {}", "{}"]


@settings(max_examples=300, deadline=None)
@given(options=ANSWER_OPTIONS, data=st.data())
def test_a_letter_in_full_width_or_cjk_brackets_is_read(options: list[str], data):
    """``\\boxed{（C）}``, ``\\boxed{Ｃ}``, ``\\boxed{【C】}``, "Answer：Ｃ．": full-width forms are the
    ASCII ones in a CJK font, so each states C in a box, a statement or an answer line. They were
    read as no answer, so a CJK teacher's right trace was dropped and its student graded wrong."""
    assume(_no_answer_words(options))
    index = data.draw(st.integers(0, len(options) - 1))
    letter = string.ascii_uppercase[index]
    written = data.draw(st.sampled_from([letter, FULL_WIDTH_LETTER[letter]]))
    label = data.draw(st.sampled_from(BRACKETS)).format(written) + data.draw(st.sampled_from(["", ".", "．", "。", "、"]))
    slot = data.draw(st.sampled_from(CJK_SLOTS))
    reply = slot.format(label)
    extraction = extract_answer(reply, options)
    assert (extraction.verdict, extraction.letter) == ("answer", letter), reply
    assert [is_correct(reply, options, k) for k in range(len(options))] == [k == index for k in range(len(options))]
    if slot.startswith("\\"):
        assert (extraction.method, extraction.text) == ("boxed", label.strip()), reply


@settings(max_examples=200, deadline=None)
@given(options=ANSWER_OPTIONS, data=st.data())
def test_a_full_width_letter_naming_another_options_text_is_not_an_answer(options: list[str], data):
    """``\\boxed{（A）text of B}`` states two options, as ``(A) text of B`` does: read as ASCII, the
    full-width letter is checked against its text like any other (it was read as B by similarity)."""
    i, j = data.draw(st.permutations(range(len(options))))[:2]
    letter = data.draw(st.sampled_from(["（{}）", "{}．", "【{}】"])).format(FULL_WIDTH_LETTER[string.ascii_uppercase[i]])
    reply = f"\\boxed{{{letter}{options[j]}}}"
    extraction = extract_answer(reply, options)
    assert extraction.verdict == "multiple_answers", reply
    assert sorted(extraction.letters) == sorted(string.ascii_uppercase[k] for k in (i, j)), reply
    assert not any(is_correct(reply, options, k) for k in range(len(options))), reply


def test_options_in_full_width_forms_still_equal_their_own_text() -> None:
    """Options are folded like the reply: a box that repeats an option written with full-width
    brackets names that option, and the box text kept for audit is the one the model wrote."""
    options = ["肺栓塞（PE）", "哮喘", "主动脉瓣狭窄（AS）"]
    for reply in (r"\boxed{主动脉瓣狭窄（AS）}", r"\boxed{主动脉瓣狭窄(AS)}"):
        extraction = extract_answer(reply, options)
        assert (extraction.letter, extraction.method) == ("C", "boxed"), reply
        assert extraction.text == last_boxed(reply)
        assert [is_correct(reply, options, k) for k in range(3)] == [False, False, True]


# Letter labels as models write them when they hedge between options; "{}" is the letter.
LABEL_STYLES = ["({})", "[{}]", "{}", "{}.", "{})", "（{}）", "【{}】"]
LABEL_JOINS = ["", " ", ", ", " and ", ", and ", " & ", r" \& ", "/", " or "]
LABEL_SLOTS = [r"\boxed{{{}}}", r"\fbox{{{}}}", r"\boxed{{\text{{{}}}}}", "The answer is {}.", "Answer: {}",
               "Final answer：{}"]


def _label(letter: str, data: st.DataObject) -> str:
    written = data.draw(st.sampled_from([letter, FULL_WIDTH_LETTER[letter]]))
    return data.draw(st.sampled_from(LABEL_STYLES)).format(written)


@settings(max_examples=300, deadline=None)
@given(options=ANSWER_OPTIONS, data=st.data())
def test_letter_labels_of_two_options_name_both_and_choose_neither(options: list[str], data: st.DataObject):
    """``\\boxed{(C)(D)}``, ``\\boxed{C D}``, ``\\boxed{C. D}``, ``\\boxed{CD}``: a slot of letter labels
    alone names every option it labels, however they are joined, as ``\\boxed{C, D}`` always did.
    It was read as its first letter, so a teacher hedging between C and D was verified as C. No
    weaker rule picks one of the two either: a statement before the box naming one of them does
    not decide."""
    assume(_no_answer_words(options))
    i, j = data.draw(st.permutations(range(len(options))))[:2]
    letters = sorted(string.ascii_uppercase[k] for k in (i, j))
    if data.draw(st.booleans()):
        labels = "".join(letters)  # run together, in option order, as multi-select keys are written
    else:
        join = data.draw(st.sampled_from(LABEL_JOINS))
        first, second = letters if not join else data.draw(st.permutations(letters))  # "D" "C" is "DC", a word
        labels = _label(first, data) + join + _label(second, data)
    # an option spelt as the labels (blood group "AB" among A, B, AB, O) is what \boxed{AB} names
    assume(not any(_letters_of(option) == _letters_of(labels) for option in options))
    before = data.draw(st.sampled_from(["", "Hmm.\n", "The answer is {}.\n\n", "Answer: ({})\n"]))
    reply = before.format(data.draw(st.sampled_from(letters))) + data.draw(st.sampled_from(LABEL_SLOTS)).format(labels)
    extraction = extract_answer(reply, options)
    assert (extraction.verdict, list(extraction.letters)) == ("multiple_answers", letters), (reply, extraction)
    assert not any(is_correct(reply, options, k) for k in range(len(options))), reply


@settings(max_examples=200, deadline=None)
@given(options=ANSWER_OPTIONS, data=st.data())
def test_one_letter_labelled_twice_is_that_answer(options: list[str], data: st.DataObject):
    """``\\boxed{(C) C}``, ``\\boxed{C, (C)}``: the same option twice is still one answer."""
    assume(_no_answer_words(options))
    index = data.draw(st.integers(0, len(options) - 1))
    letter = string.ascii_uppercase[index]
    labels = _label(letter, data) + data.draw(st.sampled_from([" ", ", ", " and "])) + _label(letter, data)
    reply = data.draw(st.sampled_from(LABEL_SLOTS)).format(labels)
    extraction = extract_answer(reply, options)
    assert (extraction.verdict, extraction.letter) == ("answer", letter), reply
    assert [is_correct(reply, options, k) for k in range(len(options))] == [k == index for k in range(len(options))]


# Chinese answer statements, as CJK-trained teachers (DeepSeek-R1, Qwen) write them; "{}" is the label.
CJK_STATEMENTS = ["答案是{}", "答案：{}", "答案为 {}", "正确答案是 {}", "正確答案為{}", "最终答案：{}", "【答案】{}", "本题答案为{}",
                  "正确选项是{}", "故选{}", "故選{}", "所以选 {}", "因此应选{}", "所以我选择 {}", "选{}", "選 {}"]
CJK_BEFORE = ["", "根据杂音的特点，", "嗯，再检查一下。\n", "<think>让我想想。</think>\n\n", "Checking the murmur again. "]
CJK_AFTER = ["", "。", "．", "，因为杂音向颈部放射。", "\n\n以上。", "项", "选项。"]
CJK_NEGATED = ["答案不是{}", "答案可能不是{}", "不应选{}", "我不选{}", "答案：{}项错误", "答案：{}是错的", "答案是{}吗？",
               "{}不正确", "{}错误", "{}项不正确", "{}是错误的", "{}正确吗？", "如果{}正确，", "如果选{}，", "{}不是正确的"]
MUSINGS_ZH = ["让我再想想。", "等等，", "再检查一下杂音。", "Hmm, wait."]


def _cjk_label(letter: str, data: st.DataObject) -> str:
    written = data.draw(st.sampled_from([letter, FULL_WIDTH_LETTER[letter]]))
    return data.draw(st.sampled_from(BRACKETS)).format(written)


@settings(max_examples=300, deadline=None)
@given(options=ANSWER_OPTIONS, data=st.data())
def test_a_chinese_answer_statement_is_read(options: list[str], data: st.DataObject):
    """"答案是（C）", "答案：C", "正确答案是 C", "故选C", "所以选 C。", "答案为C": a statement, read
    like "the answer is C" in any bracket or width, before any text. They were read as no answer,
    so a CJK teacher's right trace was dropped and its student graded wrong."""
    assume(_no_answer_words(options))
    index = data.draw(st.integers(0, len(options) - 1))
    letter = string.ascii_uppercase[index]
    statement = data.draw(st.sampled_from(CJK_STATEMENTS)).format(_cjk_label(letter, data))
    reply = data.draw(st.sampled_from(CJK_BEFORE)) + statement + data.draw(st.sampled_from(CJK_AFTER))
    extraction = extract_answer(reply, options)
    assert (extraction.verdict, extraction.letter, extraction.method) == ("answer", letter, "statement"), reply
    assert [is_correct(reply, options, k) for k in range(len(options))] == [k == index for k in range(len(options))]


@settings(max_examples=300, deadline=None)
@given(options=ANSWER_OPTIONS, data=st.data())
def test_the_last_statement_decides_in_either_language(options: list[str], data: st.DataObject):
    """The precedence of English statements holds for Chinese ones and across the two: the last
    statement, whatever its language, is the answer."""
    assume(_no_answer_words(options))
    picks = data.draw(st.lists(st.integers(0, len(options) - 1), min_size=2, max_size=5))
    parts = []
    for pick in picks:
        letter = string.ascii_uppercase[pick]
        parts.append(data.draw(st.sampled_from(MUSINGS_ZH + MUSINGS)))
        if data.draw(st.booleans()):
            parts.append(data.draw(st.sampled_from(CJK_STATEMENTS)).format(_cjk_label(letter, data)) + "。")
        else:
            parts.append(data.draw(st.sampled_from(STATEMENTS)).format(letter))
    reply = data.draw(st.sampled_from(["", " ", "\n"])).join(parts)
    extraction = extract_answer(reply, options)
    assert (extraction.letter, extraction.method) == (string.ascii_uppercase[picks[-1]], "statement"), reply
    assert [is_correct(reply, options, k) for k in range(len(options))] == [k == picks[-1] for k in range(len(options))]


@settings(max_examples=200, deadline=None)
@given(options=ANSWER_OPTIONS, data=st.data())
def test_a_chinese_statement_negating_a_letter_never_chooses_it(options: list[str], data: st.DataObject):
    """"答案不是C", "不应选C", "C项错误", "答案是C吗？": the reply names C to reject it or asks, as
    "the answer is not C" or "C is incorrect" do; it is no answer C."""
    assume(_no_answer_words(options))
    index = data.draw(st.integers(0, len(options) - 1))
    letter = string.ascii_uppercase[index]
    reply = data.draw(st.sampled_from(CJK_NEGATED)).format(_cjk_label(letter, data))
    assert extract_answer(reply, options).letter != letter, reply
    assert not is_correct(reply, options, index), reply


# "C is correct" in Chinese, the letter (or letters) first; "{}" is the label.
CJK_LETTER_CORRECT = ["{}正确", "{}正確", "{}是正确的", "{}项正确", "{}选项正确", "{}选项是正确的", "{}为正确答案", "答案：{}正确"]


@settings(max_examples=300, deadline=None)
@given(options=ANSWER_OPTIONS, data=st.data())
def test_a_chinese_letter_called_correct_is_read(options: list[str], data: st.DataObject):
    """"C正确", "C是正确的", "C选项正确" ("C is correct"): the Chinese "Option C is correct", a
    statement like "答案是C". They were read as no answer, so a CJK teacher's right trace was
    dropped. One option called wrong before it ("A错误，C正确") does not count."""
    assume(_no_answer_words(options))
    i, j = data.draw(st.permutations(range(len(options))))[:2]
    letter = string.ascii_uppercase[i]
    statement = data.draw(st.sampled_from(CJK_LETTER_CORRECT)).format(_cjk_label(letter, data))
    before = data.draw(st.sampled_from(CJK_BEFORE + [f"{string.ascii_uppercase[j]}错误，", f"{string.ascii_uppercase[j]}不正确。"]))
    reply = before + statement + data.draw(st.sampled_from(CJK_AFTER[:5]))
    extraction = extract_answer(reply, options)
    assert (extraction.verdict, extraction.letter, extraction.method) == ("answer", letter, "statement"), reply
    assert [is_correct(reply, options, k) for k in range(len(options))] == [k == i for k in range(len(options))]


QUESTIONS = ["The answer is {}?", "Is the answer {}?", "Or is the answer ({})?", "Final answer: {}?", "答案是{}吗？",
             "答案是{}？", "{}正确吗？", "So option {} is correct?", "I would pick {}, or would I?"]


@settings(max_examples=300, deadline=None)
@given(options=ANSWER_OPTIONS, data=st.data())
def test_a_statement_asked_as_a_question_states_nothing(options: list[str], data: st.DataObject):
    """"The answer is (A)?" asks; it does not answer, as "the answer is not A" does not. A question
    after a statement leaves that statement the answer, and a question alone is no answer."""
    assume(_no_answer_words(options))
    i, j = data.draw(st.permutations(range(len(options))))[:2]
    question = data.draw(st.sampled_from(QUESTIONS)).format(string.ascii_uppercase[j])
    after = data.draw(st.sampled_from(["", " Let me check the murmur.", "\n\nHmm."]))
    # an option spelt like the trailing filler ("murmur", "hamm" for "Hmm") is rightly read from it
    assume(extract_answer(after.strip(), options).verdict == "no_answer")
    if data.draw(st.booleans()):
        statement = data.draw(st.sampled_from(STATEMENTS)).format(string.ascii_uppercase[i]).rstrip(".")
        reply = statement + data.draw(st.sampled_from([". ", ".\n", "\n"])) + question + after
        assert extract_answer(reply, options).letter == string.ascii_uppercase[i], reply
    else:
        reply = question + after
        assert extract_answer(reply, options).verdict == "no_answer", reply
    assert not is_correct(reply, options, j), reply


# Word pairs one beginning apart that mean something else (m1data.stages.answers._OPPOSITE_PREFIXES).
OPPOSITES = [("hypo", "hyper"), ("intra", "extra"), ("in", "de"), ("af", "ef"), ("", "a"), ("", "in"), ("pre", "post")]
STEMS = ["thyroidism", "kalemia", "cellular fluid", "creased reflexes", "ferent arteriole", "typical pneumonia",
         "synaptic inhibition", "competent cervix"]


@settings(max_examples=200, deadline=None)
@given(pair=st.sampled_from(OPPOSITES), stem=st.sampled_from(STEMS), others=ANSWER_OPTIONS,
       flip=st.booleans(), case=CASINGS, data=st.data())
def test_a_text_an_opposite_beginning_or_another_number_away_is_not_the_option(pair, stem, others, flip, case, data):
    """The fuzzy rule forgives misspellings, not meaning: an answer one word-beginning
    ("hyper"/"hypo", "increased"/"decreased") or one number ("1500 mg"/"150 mg") away from an
    option is not that option, however close the characters."""
    written, option = (pair[1] + stem, pair[0] + stem) if flip else (pair[0] + stem, pair[1] + stem)
    dose = data.draw(st.integers(1, 999))
    for said, target in ((written, option), (f"{dose * 10} mg", f"{dose} mg")):
        options = [target, *(o for o in others if o.casefold() != said.casefold())]
        assume(not any(said.casefold() in o.casefold() for o in options))
        extraction = extract_answer(r"\boxed{" + case(said) + "}", options)
        assert extraction.letter != "A", (said, options)


@pytest.mark.parametrize("reply", ["Option 2", "The answer is option 2.", "\\boxed{Option 2}", "option 2 is correct",
                                   "Choice #2"])
def test_option_n_with_numeric_options_is_no_answer_when_its_text_and_position_differ(reply):
    """With options "4", "3", "2", "1", "Option 2" named C by its text, where the model may have
    meant B, the second option: the reading is ambiguous, so it names none. Where the N-th option's
    text is N, both readings agree and it stands."""
    assert extract_answer(reply, ["4", "3", "2", "1"]).verdict == "no_answer"
    assert extract_answer(reply, ["10", "20", "2", "40"]).verdict == "no_answer"
    assert extract_answer(reply, ["1", "2", "3", "4"]).letter == "B"
    assert extract_answer("The answer is 2", ["4", "3", "2", "1"]).letter == "C"  # no "option": its text


@pytest.mark.parametrize("reply", [
    "Let me weigh them.\n\nOption 1 and option 2 do not cover atypicals, so azithromycin.",
    "Thinking...\n\nAzithromycin (option 3) rather than option 1.",
    "After review.\n\nFinal: azithromycin, not option 2.",
])
def test_option_numbers_discussed_beside_a_text_answer_leave_the_text_answer(reply):
    """The "Option N" rule vetoes only a text that the N itself named: a reply that discusses
    options by number and names its answer by a text that is no number still names that option."""
    assert extract_answer(reply, ["Ceftriaxone", "Doxycycline", "Azithromycin", "Penicillin"]).letter == "C"
