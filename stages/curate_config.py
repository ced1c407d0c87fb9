"""The `curate` settings of a blend dataset: defaults, names and checks, with no heavy imports.

Kept apart from the Curator stages so that loading a blend (every command does) does not import
NeMo Curator or Ray. Each filter maps our short key names onto one NeMo Curator heuristic filter
class and its constructor arguments.
"""

from __future__ import annotations

from typing import Any

# filter name -> (Curator class in nemo_curator.stages.text.filters.heuristic,
#                 {our key: (Curator argument, default)})
FILTERS: dict[str, tuple[str, dict[str, tuple[str, Any]]]] = {
    "word_count": ("WordCountFilter", {"min": ("min_words", 50), "max": ("max_words", 100_000)}),
    "non_alpha_numeric": (
        "NonAlphaNumericFilter",
        {"max": ("max_non_alpha_numeric_to_text_ratio", 0.25)},
    ),
    "repeating_top_ngrams": (
        "RepeatingTopNGramsFilter",
        {"n": ("n", 2), "max": ("max_repeating_ngram_ratio", 0.2)},
    ),
    "repeating_duplicate_ngrams": (
        "RepeatingDuplicateNGramsFilter",
        {"n": ("n", 5), "max": ("max_repeating_duplicate_ngram_ratio", 0.15)},
    ),
    # Curator scores these as the fraction of *unique* lines/paragraphs and keeps a document
    # when it is at least the cutoff, hence `min_unique`.
    "repeated_lines": ("RepeatedLinesFilter", {"min_unique": ("max_repeated_line_fraction", 0.7)}),
    "repeated_paragraphs": (
        "RepeatedParagraphsFilter",
        {"min_unique": ("max_repeated_paragraphs_ratio", 0.7)},
    ),
    "urls": ("UrlsFilter", {"max": ("max_url_to_text_ratio", 0.2)}),
    "symbols_to_words": ("SymbolsToWordsFilter", {"max": ("max_symbol_to_word_ratio", 0.1)}),
    "numbers": ("NumbersFilter", {"max": ("max_number_to_text_ratio", 0.15)}),
    "mean_word_length": (
        "MeanWordLengthFilter",
        {"min": ("min_mean_word_length", 3), "max": ("max_mean_word_length", 10)},
    ),
    "long_word": ("LongWordFilter", {"max": ("max_word_length", 1000)}),
    "bullets": ("BulletsFilter", {"max": ("max_bullet_lines_ratio", 0.9)}),
    "whitespace": ("WhiteSpaceFilter", {"max": ("max_white_space_ratio", 0.25)}),
}
# Applied in this order when a blend gives `"curate": {}` or `true`: the Gopher-style basics.
DEFAULT_FILTERS = (
    "word_count",
    "non_alpha_numeric",
    "repeating_top_ngrams",
    "repeated_lines",
    "repeated_paragraphs",
    "urls",
)
FUZZY_DEFAULTS: dict[str, Any] = {"threshold": 0.8, "num_perm": 128, "ngram": 5, "seed": 42}
CURATE_KEYS = {"filters", "exact_dedup", "fuzzy_dedup"}
INT_PARAMS = {"n", "num_perm", "ngram", "seed"}


class CurateConfigError(ValueError):
    """A bad `curate` setting: `key` is the dotted path under `curate`, the message says the fix."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def normalize(raw: Any) -> dict[str, Any]:
    """The full settings (every default filled in) for a blend's `curate` value.

    The result is what keys the cache: equal settings written differently give one key.
    `filters` lists exactly the filters to run, in the order given; a filter's omitted
    parameters take their defaults.
    """
    if raw is True or raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise CurateConfigError("", "must be true or an object of curation settings")
    unknown = sorted(set(raw) - CURATE_KEYS)
    if unknown:
        raise CurateConfigError(
            unknown[0], f"unknown key; allowed keys are {', '.join(sorted(CURATE_KEYS))}"
        )
    filters_raw = raw.get("filters", {name: {} for name in DEFAULT_FILTERS})
    if not isinstance(filters_raw, dict):
        raise CurateConfigError(
            "filters", 'must be an object like {"word_count": {"min": 50}, "urls": {}}'
        )
    filters: list[dict[str, Any]] = []
    for name, params in filters_raw.items():
        if params is False:
            continue
        filters.append({"name": name} | _filter_params(name, params))
    exact = raw.get("exact_dedup", True)
    if not isinstance(exact, bool):
        raise CurateConfigError("exact_dedup", "must be true or false")
    return {
        "filters": filters,
        "exact_dedup": exact,
        "fuzzy_dedup": _fuzzy(raw.get("fuzzy_dedup", True)),
    }


def _filter_params(name: str, params: Any) -> dict[str, Any]:
    if name not in FILTERS:
        raise CurateConfigError(
            f"filters.{name}",
            f"unknown filter; known filters are {', '.join(sorted(FILTERS))}",
        )
    if params is True or params is None:
        params = {}
    if not isinstance(params, dict):
        raise CurateConfigError(f"filters.{name}", "must be an object of parameters, or false")
    allowed = FILTERS[name][1]
    out: dict[str, Any] = {}
    for key, (_, default) in allowed.items():
        out[key] = _number(params.get(key, default), f"filters.{name}.{key}", key in INT_PARAMS)
    for key in params:
        if key not in allowed:
            raise CurateConfigError(
                f"filters.{name}.{key}",
                f"unknown parameter; {name} takes {', '.join(sorted(allowed))}",
            )
    return out


def _fuzzy(raw: Any) -> dict[str, Any] | None:
    if raw is False:
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, dict):
        raise CurateConfigError("fuzzy_dedup", 'must be false, true or {"threshold": 0.8, ...}')
    for key in raw:
        if key not in FUZZY_DEFAULTS:
            raise CurateConfigError(
                f"fuzzy_dedup.{key}",
                f"unknown parameter; fuzzy_dedup takes {', '.join(sorted(FUZZY_DEFAULTS))}",
            )
    out = {
        key: _number(raw.get(key, default), f"fuzzy_dedup.{key}", key in INT_PARAMS)
        for key, default in FUZZY_DEFAULTS.items()
    }
    if not 0 < out["threshold"] <= 1:
        raise CurateConfigError("fuzzy_dedup.threshold", "must be a Jaccard similarity in (0, 1]")
    if out["num_perm"] < 16 or out["ngram"] < 1:
        raise CurateConfigError("fuzzy_dedup", "num_perm must be >= 16 and ngram >= 1")
    return out


def _number(value: Any, key: str, integer: bool) -> int | float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or (integer and not isinstance(value, int)) or value < 0:
        kind = "a non-negative integer" if integer else "a non-negative number"
        raise CurateConfigError(key, f"must be {kind}, got {value!r}")
    return value


def curator_kwargs(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(Curator class name, constructor arguments) for one normalised filter entry."""
    cls, params = FILTERS[spec["name"]]
    return cls, {arg: spec[key] for key, (arg, _) in params.items()}


def describe(config: dict[str, Any]) -> list[str]:
    """The step names in the order they run, for tables and stats."""
    steps = [f["name"] for f in config["filters"]]
    if config["exact_dedup"]:
        steps.append("exact_dedup")
    if config["fuzzy_dedup"]:
        steps.append("fuzzy_dedup")
    return steps
