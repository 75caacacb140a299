"""Benchmark metrics: answer parsing and scoring for multiple choice, short-answer VQA and yes/no questions.

Every function takes plain Python values (predictions and ground truth), so each is testable with hand-made input.

- Multiple choice: :func:`extract_option` reads a letter from free text; :func:`multiple_choice_metrics` scores
  plain and circular evaluation (a question counts only if every rotation of its options is answered right).
- Short-answer VQA: :func:`normalize_vqa_answer` is the standard VQA answer normalisation (punctuation, number
  words, articles, contractions), applied to prediction and ground truth alike as TextVQA's evaluator does;
  :func:`vqa_accuracy` is the official VQA accuracy, averaged over the leave-one-out subsets of the human answers;
  :func:`anls` is DocVQA's average normalised Levenshtein similarity.
- Yes/no: :func:`parse_yes_no`, :func:`pope_metrics` (accuracy, precision, recall, F1, yes ratio; "yes" is the
  positive class) and :func:`mme_metrics` (acc and acc+ per category, score = acc + acc+, sums per task group).
"""
import re
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Sequence

# ----------------------------------------------------------------------------------------------- multiple choice


def extract_option(prediction: str, options: Dict[str, str]) -> Optional[str]:
    """The option letter a free-text answer names, or None when it names none or several.

    The answer names a letter when exactly one valid option letter stands alone in it (``"B"``, ``"(B)"``,
    ``"B. a dog"``, ``"The answer is B"``; ``"A or B"`` names none). Without any letter, it names the option whose
    text it contains, if exactly one (``"It is a dog"``).
    """
    text = prediction.strip()
    standalone = {m for m in re.findall(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])", text) if m in options}
    if standalone:
        return standalone.pop() if len(standalone) == 1 else None
    lowered = text.lower()
    named = [letter for letter, option in options.items() if option.strip() and option.strip().lower() in lowered]
    return named[0] if len(named) == 1 else None


def multiple_choice_metrics(records: Iterable[dict]) -> dict:
    """Accuracy (in %) over records ``{index, round, pred_option, answer, category?}``.

    With one round per index this is plain accuracy. With several rounds (circular evaluation: round r shows the
    options rotated r places), an index is correct only when every round is; ``rounds`` reports how many rounds
    each question had. ``unparsed`` counts answers that named no option (they are wrong).
    """
    by_index = defaultdict(list)
    category = {}
    for record in records:
        by_index[record["index"]].append(record)
        category[record["index"]] = record.get("category")
    if not by_index:
        raise ValueError("no predictions to score")
    correct = {index: all(r["pred_option"] == r["answer"] for r in rounds) for index, rounds in by_index.items()}
    per_category = defaultdict(list)
    for index, ok in correct.items():
        if category[index] is not None:
            per_category[category[index]].append(ok)
    rounds = sorted({len(v) for v in by_index.values()})
    return dict(
        accuracy=100.0 * sum(correct.values()) / len(correct),
        num_questions=len(correct),
        num_predictions=sum(len(v) for v in by_index.values()),
        rounds=rounds,
        circular=rounds != [1],
        unparsed=sum(r["pred_option"] is None for v in by_index.values() for r in v),
        per_category={c: 100.0 * sum(v) / len(v) for c, v in sorted(per_category.items())},
    )


# ----------------------------------------------------------------------------------------------- short-answer VQA

# Standard VQA normalisation tables (Antol et al. 2015, the VQA evaluation script's rules).
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
                "?", "!"]
# Contractions written without their apostrophe -> the canonical form.
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
_PERIOD_NOT_IN_NUMBER = re.compile(r"(?<!\d)(\.)(?!\d)")


def _strip_punctuation(text: str) -> str:
    out = text
    for mark in _PUNCTUATION:
        # A mark next to a space (or any text with a thousands comma) is removed; one inside a word splits it.
        if (mark + " " in text or " " + mark in text) or _COMMA_BETWEEN_DIGITS.search(text) is not None:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_NOT_IN_NUMBER.sub("", out)


def normalize_vqa_answer(answer: str) -> str:
    """The standard VQA answer normalisation: whitespace, punctuation, lower case, number words -> digits,
    articles dropped, contractions restored (``"Two dogs."`` -> ``"2 dogs"``, ``"dont"`` -> ``"don't"``)."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    text = _strip_punctuation(text)
    words = []
    for word in text.lower().split():
        word = _NUMBER_WORDS.get(word, word)
        if word in _ARTICLES:
            continue
        words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA accuracy of one prediction against the human answers, in [0, 1].

    The official form: for each human answer left out in turn, ``min(1, #remaining humans that gave the
    prediction / 3)``, averaged over the leave-one-out subsets (10 subsets of 9 for VQAv2/TextVQA). With a single
    reference answer (GQA, DocVQA files) it is exact match after normalisation.
    """
    if not answers:
        raise ValueError("vqa_accuracy needs at least one reference answer")
    pred = normalize_vqa_answer(prediction)
    refs = [normalize_vqa_answer(a) for a in answers]
    if len(refs) == 1:
        return float(pred == refs[0])
    matches = sum(ref == pred for ref in refs)
    # Leaving out a matching answer leaves matches - 1 matches; leaving out another leaves all of them.
    total = sum(min(1.0, (matches - (ref == pred)) / 3.0) for ref in refs)
    return total / len(refs)


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def anls(prediction: str, answers: Sequence[str], threshold: float = 0.5) -> float:
    """DocVQA's ANLS for one question: max over references of ``1 - NL`` (lower-cased, stripped), 0 when the
    normalised Levenshtein distance NL is ``>= threshold``."""
    if not answers:
        raise ValueError("anls needs at least one reference answer")
    pred = " ".join(prediction.strip().lower().split())
    best = 0.0
    for answer in answers:
        ref = " ".join(answer.strip().lower().split())
        length = max(len(pred), len(ref))
        distance = _levenshtein(pred, ref) / length if length else 0.0
        best = max(best, 1.0 - distance if distance < threshold else 0.0)
    return best


def vqa_metrics(records: Iterable[dict]) -> dict:
    """Mean VQA accuracy and ANLS (in %) over records ``{prediction, answers}``; records without answers are
    counted in ``num_without_answers`` and not scored."""
    scored = [r for r in records if r.get("answers")]
    records_count = len(scored)
    if not scored:
        return dict(num_scored=0)
    return dict(
        accuracy=100.0 * sum(vqa_accuracy(r["prediction"], r["answers"]) for r in scored) / records_count,
        anls=100.0 * sum(anls(r["prediction"], r["answers"]) for r in scored) / records_count,
        num_scored=records_count,
    )


# ----------------------------------------------------------------------------------------------- yes / no

MME_PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
                  "artwork", "OCR")
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def parse_yes_no(prediction: str) -> Optional[str]:
    """``'yes'``, ``'no'`` or None (neither) from a free-text answer.

    The first word decides when it is yes or no; otherwise the first sentence is "no" if it says "no"/"not"
    (LLaVA's POPE rule), "yes" if it says "yes", else None.
    """
    text = prediction.strip().lower()
    words = re.findall(r"[a-z']+", text)
    if words and words[0] in ("yes", "no"):
        return words[0]
    first_sentence = re.findall(r"[a-z']+", re.split(r"[.!?\n]", text, maxsplit=1)[0])
    if "no" in first_sentence or "not" in first_sentence:
        return "no"
    if "yes" in first_sentence:
        return "yes"
    return None


def _label(value: str, where: str) -> str:
    label = str(value).strip().lower()
    if label not in ("yes", "no"):
        raise ValueError(f"{where}: ground truth must be yes or no, got {value!r}")
    return label


def pope_metrics(records: Iterable[dict]) -> dict:
    """POPE metrics (in %) over records ``{prediction, label}``; "yes" is the positive class.

    As in LLaVA's POPE script, an answer that says neither yes nor no counts as "yes" (it is also counted in
    ``unparsed``).
    """
    tp = fp = tn = fn = unparsed = 0
    for record in records:
        label = _label(record["label"], f"record {record.get('id')!r}")
        pred = parse_yes_no(record["prediction"])
        unparsed += pred is None
        if pred is None or pred == "yes":
            tp, fp = tp + (label == "yes"), fp + (label == "no")
        else:
            fn, tn = fn + (label == "yes"), tn + (label == "no")
    total = tp + fp + tn + fn
    if total == 0:
        raise ValueError("no predictions to score")
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return dict(accuracy=100.0 * (tp + tn) / total, precision=100.0 * precision, recall=100.0 * recall,
                f1=100.0 * f1, yes_ratio=100.0 * (tp + fp) / total, tp=tp, fp=fp, tn=tn, fn=fn, unparsed=unparsed,
                num_questions=total)


def mme_metrics(records: Iterable[dict]) -> dict:
    """MME scores over records ``{prediction, label, category, image}``.

    Per category: ``acc`` = % of questions answered right, ``acc_plus`` = % of images whose questions (two per
    image in MME) are all right, ``score = acc + acc_plus`` (at most 200). ``perception``/``cognition`` sum the
    scores of MME's categories of that group present in the records; ``total`` sums every category.
    """
    by_category = defaultdict(lambda: defaultdict(list))
    for record in records:
        label = _label(record["label"], f"record {record.get('id')!r}")
        ok = parse_yes_no(record["prediction"]) == label
        by_category[record["category"]][record["image"]].append(ok)
    if not by_category:
        raise ValueError("no predictions to score")
    categories = {}
    for name, images in sorted(by_category.items()):
        answers = [ok for image in images.values() for ok in image]
        acc = 100.0 * sum(answers) / len(answers)
        acc_plus = 100.0 * sum(all(v) for v in images.values()) / len(images)
        categories[name] = dict(acc=acc, acc_plus=acc_plus, score=acc + acc_plus, num_questions=len(answers),
                                num_images=len(images))
    perception = sum(v["score"] for k, v in categories.items() if k in MME_PERCEPTION)
    cognition = sum(v["score"] for k, v in categories.items() if k in MME_COGNITION)
    return dict(categories=categories, perception=perception, cognition=cognition,
                total=sum(v["score"] for v in categories.values()))


def rotate_options(options: Dict[str, str], shift: int) -> Dict[str, str]:
    """Circular evaluation: the option texts moved ``shift`` places down the same letters (A keeps the letter A,
    its text becomes the one ``shift`` letters later)."""
    letters: List[str] = list(options)
    texts = [options[letter] for letter in letters]
    shift %= len(letters)
    return dict(zip(letters, texts[shift:] + texts[:shift]))


def rotated_answer(answer: str, letters: Sequence[str], shift: int) -> str:
    """Where the correct option's text lands after :func:`rotate_options` by ``shift``."""
    position = list(letters).index(answer)
    return letters[(position - shift) % len(letters)]
