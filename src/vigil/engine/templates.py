"""Log lines to templates: masking of variable parts, one Drain3 miner per run, log levels.

Masking works token by token (cached: most tokens recur from line to line), then on the patterns that
span tokens (bracketed lists, ``key=value`` parameters). A template is Drain3 over the first 16 tokens of
the masked line (depth 7, up to 1000 children, so the time, level and logger tokens stay tree keys);
``Class#line`` source ids stay literal."""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

logging.getLogger("drain3").setLevel(logging.WARNING)

_MASKS = [
    (re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?Z?)?"), "<TS>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), "<TS>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<UUID>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<IP>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{12,}\b"), "<HEX>"),
    (re.compile(r"(?<![#\w.])[-+]?\d+(?:\.\d+)?(?![\w.])"), "<NUM>"),   # keep '#123' (source line ids)
]
_HAS_DIGIT = re.compile(r"\d")
# tokens that are wholly one masked value (what the full pass would turn into exactly this placeholder)
_WHOLE_TOKEN = ((re.compile(r"(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{12,}"), "<HEX>"),
                (re.compile(r"\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?"), "<TS>"))
_TOKEN_CACHE: dict[str | None, dict[str, str]] = {}
_TOKEN_CACHE_MAX = 200_000
# key=value parameters (possessive: a word not followed by '=' is given up at once, the same matches)
_KV = re.compile(r"\b(\w++)=(?!<)[^\s,;&)\]}]+")
# innermost bracketed comma-list: an opening bracket, a run free of brackets holding a comma, a closing
# bracket (the lookahead finds the comma first, so a bracket with no comma is given up at once)
_LIST = re.compile(r"[\[{(](?=[^\[\]{}(),]*+,)[^\[\]{}()]*+[\]})]")
_LEVEL_RE = re.compile(r"\b(FATAL|CRITICAL|ERROR|WARN(?:ING)?|INFO|DEBUG|TRACE)\b")
PLACEHOLDER = "<*>"          # masked values are Drain wildcards: they never count as similar
MAX_BODY = 400
MAX_TOKENS = 16


def _mask_new_token(tok: str, placeholder: str | None, cache: dict[str, str]) -> str:
    if not _HAS_DIGIT.search(tok):
        out = tok
    else:
        for shape, repl in _WHOLE_TOKEN:    # unique ids and times: one test, and not worth caching
            if shape.fullmatch(tok):
                return placeholder or repl
        out = tok
        for pattern, repl in _MASKS:
            out = pattern.sub(placeholder or repl, out)
    if len(cache) > _TOKEN_CACHE_MAX:
        cache.clear()
    cache[tok] = out
    return out


def mask_tokens(tokens: list[str], placeholder: str | None = None) -> list[str]:
    """Whitespace-separated tokens with their variable parts masked (``placeholder`` replaces every
    kind of mask when given). Cached per token: most tokens recur from line to line."""
    cache = _TOKEN_CACHE.setdefault(placeholder, {})
    get = cache.get
    return [get(t) or _mask_new_token(t, placeholder, cache) for t in tokens]


def mask(line: str, placeholder: str | None = None) -> str:
    """A line with its variable parts (times, ids, addresses, numbers, lists, parameter values) masked."""
    s = " ".join(mask_tokens(line.split()[:32], placeholder))
    for _ in range(4 if "," in s else 0):   # variable-length lists -> one token, so Drain's length split is stable
        s2 = _LIST.sub(placeholder or "<LIST>", s)
        if s2 == s:
            break
        s = s2
    return _KV.sub(r"\1=" + (placeholder or "<V>"), s) if "=" in s else s


_KV_VALUE = r"\1=" + PLACEHOLDER


def drain_input(raw: str) -> str:
    """What the miner is given for a line: its first ``MAX_TOKENS`` tokens after masking, i.e.
    ``" ".join(mask(raw, PLACEHOLDER).split()[:MAX_TOKENS])``, worked out with less work: a
    ``key=value`` mask stays inside one token, so it is applied to the kept tokens only, and a line with
    no comma has no list to fold, so only its kept tokens are masked at all."""
    tokens = raw.split()[:32]
    if "," in raw:              # a list may fold several tokens into one: mask them all first
        s = " ".join(mask_tokens(tokens, PLACEHOLDER))
        for _ in range(4 if "," in s else 0):
            s2 = _LIST.sub(PLACEHOLDER, s)
            if s2 == s:
                break
            s = s2
        s = " ".join(s.split()[:MAX_TOKENS])
    else:
        s = " ".join(mask_tokens(tokens[:MAX_TOKENS], PLACEHOLDER))
    return _KV.sub(_KV_VALUE, s) if "=" in s else s


class Templater:
    """One Drain3 miner: template ids for log lines, the template text, and one sample line each."""

    def __init__(self, sim: float = 0.6, depth: int = 7, max_children: int = 1000):
        c = TemplateMinerConfig()
        c.drain_sim_th = sim
        c.drain_depth = depth
        c.drain_max_children = max_children      # the default 100 overflows into '<*>' and merges loggers
        c.parametrize_numeric_tokens = False     # numbers are masked already; "Class#46" must stay literal
        self.miner = TemplateMiner(config=c)
        self.cache: dict[str, int] = {}
        self.sample: dict[int, str] = {}         # one raw line per template, for people (and the fault kind)
        self._text: dict[int, str] | None = None

    def ids(self, bodies) -> np.ndarray:
        bodies = list(bodies)
        out = np.empty(len(bodies), dtype=np.int64)
        cache, miner = self.cache, self.miner
        for i, b in enumerate(bodies):
            raw = str(b)[:MAX_BODY]
            m = drain_input(raw)
            cid = cache.get(m)
            if cid is None:
                cid = miner.add_log_message(m)["cluster_id"]
                cache[m] = cid
                self.sample.setdefault(cid, raw)
                self._text = None
            out[i] = cid
        return out

    def text(self, cid: int) -> str:
        if self._text is None:
            self._text = {c.cluster_id: c.get_template() for c in self.miner.drain.clusters}
        return self._text.get(int(cid), str(cid))


def levels(logs: pd.DataFrame) -> np.ndarray:
    """Each line's level (ERROR, WARN, INFO, DEBUG, TRACE): the stated one, else the first level word in
    the line, else INFO."""
    if "level" in logs.columns:
        lv = logs["level"].astype(str).str.upper().str.strip()
        bad = ~lv.isin(["FATAL", "CRITICAL", "ERROR", "WARN", "WARNING", "INFO", "DEBUG", "TRACE"])
    else:
        lv = pd.Series([""] * len(logs), index=logs.index)
        bad = pd.Series(True, index=logs.index)
    if bad.any():
        lv = lv.copy()
        lv[bad] = [(_LEVEL_RE.search(str(b)[:200]) or [None, "INFO"])[1] for b in logs.loc[bad, "body"]]
    return lv.replace({"WARNING": "WARN", "CRITICAL": "ERROR", "FATAL": "ERROR"}).to_numpy()
