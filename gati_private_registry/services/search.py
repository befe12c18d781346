"""Search: the index answers, the caller's rights filter, popularity sorts.

Ranking for ``sort=relevance`` is Whoosh's BM25F over the fields with boosts (name parts
over keywords over description over README), plus a large boost for the exact name, so
``@gati-modules/postgres`` is first for that query. Every word must match somewhere;
a word of four or more letters also matches names and keywords one edit away (typos),
and the last word also matches as a name prefix (type-ahead). The popularity sorts read
their figures from :class:`PopularityService`, not from the index: downloads move every
few seconds and trending moves with the calendar, which no index document could follow.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from itertools import islice
from dataclasses import dataclass, field
from typing import Any, Iterable

from whoosh import query as wq
from whoosh.idsets import BitSet
from whoosh.searching import Searcher

from ..domain import Principal, Scope
from ..errors import FieldError, ValidationFailed
from ..storage.search_index import SearchIndex
from .popularity import EMPTY, Metrics, PopularityService
from .search_docs import Trust

SORTS = ("relevance", "downloads", "stars", "rating", "trending", "recent")
MAX_PER_PAGE = 250
MAX_QUERY = 500
#: words a prefix or a typo may stand for, at most (each is one more posting list to read)
PREFIX_TERMS, FUZZY_TERMS = 24, 16
_WORD = re.compile(r"[a-z0-9]+")
_QUALIFIER = re.compile(r"\b(keywords?|author|maintainer|category|contract|trust):(\S+)")
_NAME = re.compile(r"^(?:@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*$")


@dataclass(frozen=True)
class SearchQuery:
    text: str = ""
    category: str = ""
    contract: str = ""
    trust: str = ""
    sort: str = "relevance"
    page: int = 1
    per_page: int = 20


@dataclass(frozen=True)
class SearchHit:
    name: str
    version: str
    description: str
    keywords: list[str]
    category: str
    contracts: list[str]
    author: str
    maintainers: list[str]
    publisher: str
    trust: str
    modified: str
    state: str
    deprecated: bool
    score: float
    metrics: Metrics


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    total: int
    query: SearchQuery
    facets: dict[str, int] = field(default_factory=dict)


def validate(q: SearchQuery) -> None:
    """Raises :class:`ValidationFailed` listing every bad parameter."""
    errors = []
    if q.sort not in SORTS:
        errors.append(FieldError("sort", f"must be one of {', '.join(SORTS)}"))
    if q.page < 1:
        errors.append(FieldError("page", "must be 1 or more"))
    if not 1 <= q.per_page <= MAX_PER_PAGE:
        errors.append(FieldError("per_page", f"must be between 1 and {MAX_PER_PAGE}"))
    if len(q.text) > MAX_QUERY:
        errors.append(FieldError("q", f"at most {MAX_QUERY} characters"))
    if q.trust and q.trust not in {t.value for t in Trust}:
        errors.append(FieldError("trust", "must be verified, trusted or community"))
    if errors:
        raise ValidationFailed("invalid search", details=errors)


def visibility(principal: Principal | None) -> wq.Query:
    """What the caller may find: approved packages; approvers also pending ones; a
    publisher also packages where they have a version waiting. A token limited to
    package patterns finds only names they cover (the patterns hold only ``*`` and
    ``?``, which Whoosh's wildcards read the same way as fnmatch)."""
    public = wq.Term("visible", "1")
    if principal is None or not principal.can(Scope.READ):
        return public
    if principal.can(Scope.APPROVE):
        seen: wq.Query = wq.Or([public, wq.Term("pending", "1")])
    else:
        seen = wq.Or([public, wq.Term("pending_for", str(principal.user_id))])
    if principal.packages:
        seen = wq.And([seen, wq.Or([wq.Wildcard("name", p) for p in principal.packages])])
    return seen


def _allowed(s: Searcher, filters: list[wq.Query]) -> Any:
    """The documents ``filters`` allow, as a bit set kept with the searcher: the same few
    filters (who may see what, a category) come back with every query."""
    cache: dict[str, Any] | None = getattr(s, "_gati_filters", None)
    if cache is None:
        cache = {}
        s._gati_filters = cache
    key = repr(filters)
    found = cache.get(key)
    if found is None:
        if len(cache) > 256:
            cache.clear()
        found = cache[key] = BitSet(s.docs_for_query(wq.And(filters)), size=s.doc_count_all())
    return found


def _column(s: Searcher, fieldname: str) -> Any:
    """The column of a sortable field, indexed by document number. An index with no
    segment at all (never built, or everything deleted and merged away) has no columns:
    Whoosh raises NotImplementedError there, so that case is an empty mapping."""
    reader = s.reader()
    if reader.doc_count_all() == 0:
        return {}
    return reader.column_reader(fieldname)


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1:] for i in range(len(word))}


def _one_edit(s: Searcher, fieldname: str, word: str) -> list[str]:
    """The words of ``fieldname`` one edit (insertion, deletion, substitution or
    transposition) away from ``word``, first letter kept, found through an index of
    their one-letter deletions built once per searcher (Whoosh's own ``terms_within``
    computes a distance against every word with the same first letter, in Python)."""
    cache: dict[str, dict[str, set[str]]] | None = getattr(s, "_gati_edits", None)
    if cache is None:
        cache = {}
        s._gati_edits = cache
    table = cache.get(fieldname)
    if table is None:
        table = cache[fieldname] = {}
        for term in _texts(s.reader().lexicon(fieldname)):
            if len(term) >= 3:
                table.setdefault(term, set()).add(term)
                for d in _deletions(term):
                    table.setdefault(d, set()).add(term)
    found: set[str] = set(table.get(word, ()))
    for d in _deletions(word):
        found |= table.get(d, set())
    return sorted(t for t in found if t != word and t[0] == word[0] and abs(len(t) - len(word)) <= 1
                  and _within_one(word, t))


def _within_one(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are one insertion, deletion, substitution or adjacent
    transposition apart (the deletion index also pairs words two substitutions apart)."""
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _texts(terms: Iterable[Any]) -> list[str]:
    return [t.decode() if isinstance(t, bytes) else str(t) for t in terms]


class SearchService:
    def __init__(self, index: SearchIndex, popularity: PopularityService) -> None:
        self.index = index
        self.popularity = popularity

    # -- the query ------------------------------------------------------------------------

    def _analyzed(self, searcher: Searcher, fieldname: str, word: str) -> list[str]:
        return [t.text for t in searcher.schema[fieldname].analyzer(word, mode="query")]

    def _word(self, searcher: Searcher, word: str, last: bool) -> wq.Query:
        parts: list[wq.Query] = [
            wq.Term("bare", word, boost=2.0), wq.Term("name_parts", word),
            wq.Term("keywords", word), wq.Term("author", word), wq.Term("maintainers", word),
            wq.Term("category", word, boost=2.0)]
        for stem in self._analyzed(searcher, "description", word):
            parts += [wq.Term("description", stem), wq.Term("readme", stem)]
        # Whoosh's FuzzyTerm and Prefix ignore their boost when scoring, so the words
        # they stand for are looked up here and queried as terms with their own boost:
        # a prefix of the word being typed above a typo, both below the exact word
        reader = searcher.reader()
        if last and len(word) >= 2:
            parts += [wq.Term("name_parts", t, boost=0.6) for t in
                      _texts(islice(reader.expand_prefix("name_parts", word), PREFIX_TERMS))
                      if t != word]
        if len(word) >= 4:
            for fieldname, boost in (("name_parts", 0.25), ("keywords", 0.2)):
                parts += [wq.Term(fieldname, t, boost=boost)
                          for t in _one_edit(searcher, fieldname, word)[:FUZZY_TERMS]]
        return wq.Or(parts)

    def _text_query(self, searcher: Searcher, text: str
                    ) -> tuple[wq.Query | None, list[wq.Query]]:
        """The scored query for the free text, and the filters its qualifiers
        (``keywords:x author:x maintainer:x category:x contract:x trust:x``) add."""
        text = text.lower().strip()
        filters: list[wq.Query] = []
        for key, value in _QUALIFIER.findall(text):
            key = {"keyword": "keywords", "maintainer": "maintainers", "contract": "contracts"
                   }.get(key, key)
            if key == "author":
                filters += [wq.Term("author", w) for w in _WORD.findall(value)]
            else:
                filters += [wq.Or([wq.Term(key, v) for v in value.split(",") if v])]
        free = _QUALIFIER.sub(" ", text).strip()
        words = _WORD.findall(free)
        if not words:
            return None, filters
        scored: wq.Query = wq.And([self._word(searcher, w, i == len(words) - 1)
                                   for i, w in enumerate(words)])
        if _NAME.match(free):
            bare = free.partition("/")[2] if free.startswith("@") else free
            scored = wq.Or([scored, wq.Term("name", free, boost=60.0),
                            wq.Term("bare", bare, boost=15.0)])
        return scored, filters

    # -- answering ------------------------------------------------------------------------

    def search(self, principal: Principal | None, q: SearchQuery, *,
               facets: bool = True) -> SearchPage:
        """One page of results, the total, and counts per category of everything the
        query matches (the category filter aside). Raises :class:`ValidationFailed`."""
        validate(q)
        with self.index.searcher() as s:
            textq, filters = self._text_query(s, q.text)
            filters.append(visibility(principal))
            if q.contract:
                filters.append(wq.Term("contracts", q.contract.lower()))
            if q.trust:
                filters.append(wq.Term("trust", q.trust))
            counts: dict[str, int] = {}
            if facets:
                base = wq.And(([textq] if textq else []) + filters)
                column = _column(s, "category")
                tally = Counter(column[d] for d in s.docs_for_query(base))
                counts = {str(k): v for k, v in tally.most_common() if k}
            if q.category:
                filters.append(wq.Term("category", q.category.lower()))
            start = (q.page - 1) * q.per_page
            if q.sort == "relevance" and textq is not None:
                allowed = _allowed(s, filters)
                if not allowed:
                    # Whoosh takes an empty filter for no filter at all: a category with
                    # nothing in it, or a reader who may see nothing, would get everything
                    page, total = [], 0
                else:
                    # optimize=False: no block skipping, so the collector counts every
                    # match as it goes and the total costs no second pass
                    results = s.search(textq, filter=allowed, limit=start + q.per_page,
                                       optimize=False)
                    total = len(results)
                    page = [(h.docnum, float(h.score)) for h in results[start:start + q.per_page]]
            else:
                page, total = self._sorted(s, textq, filters, q, start)
            metrics = self.popularity.all_metrics() if page else {}
            hits = [self._hit(s, docnum, score, metrics) for docnum, score in page]
        return SearchPage(hits=hits, total=total, query=q, facets=counts)

    def _sorted(self, s: Searcher, textq: wq.Query | None, filters: list[wq.Query],
                q: SearchQuery, start: int) -> tuple[list[tuple[int, float]], int]:
        docnums = list(s.docs_for_query(wq.And(([textq] if textq else []) + filters)))
        names = _column(s, "name")
        if q.sort == "recent":
            modified = _column(s, "modified")
            docnums.sort(key=lambda d: (-modified[d], names[d]))
        else:
            metrics = self.popularity.all_metrics()
            sort = "downloads" if q.sort == "relevance" else q.sort

            def key(d: int) -> tuple[float, float, str]:
                m = metrics.get(names[d], EMPTY)
                value = {"downloads": m.downloads_week, "stars": m.stars, "rating": m.rating,
                         "trending": m.trending}[sort]
                # ties: more ratings first for rating, more downloads for the others
                second = m.ratings if sort == "rating" else m.downloads_month
                return (-value, -second, names[d])
            docnums.sort(key=key)
        return [(d, 0.0) for d in docnums[start:start + q.per_page]], len(docnums)

    def _hit(self, s: Searcher, docnum: int, score: float,
             metrics: dict[str, Metrics]) -> SearchHit:
        doc = json.loads(s.stored_fields(docnum)["summary"])
        return SearchHit(name=doc["name"], version=doc["version"],
                         description=doc["description"], keywords=doc["keywords"],
                         category=doc["category"], contracts=doc["contracts"],
                         author=doc["author"], maintainers=doc["maintainers"],
                         publisher=doc["publisher"], trust=doc["trust"],
                         modified=doc["modified"], state=doc["state"],
                         deprecated=doc["deprecated"], score=score,
                         metrics=metrics.get(doc["name"], EMPTY))

    def suggest(self, principal: Principal | None, text: str, limit: int = 8) -> list[SearchHit]:
        """Type-ahead: the best few matches for what has been typed so far."""
        if not text.strip():
            return []
        return self.search(principal, SearchQuery(text=text[:MAX_QUERY], per_page=limit),
                           facets=False).hits

    # -- the dependency graph, as the index sees it ------------------------------------

    def dependents(self, principal: Principal | None, name: str) -> list[str]:
        """Packages (visible to the caller) whose shown version depends on ``name``."""
        with self.index.searcher() as s:
            found = s.docs_for_query(wq.And([wq.Term("deps", name), visibility(principal)]))
            names = _column(s, "name")
            return sorted(names[d] for d in found)

    def dependents_counts(self, names: Iterable[str]) -> dict[str, int]:
        with self.index.searcher() as s:
            return {n: int(s.doc_frequency("deps", n)) for n in names}

    def categories(self, principal: Principal | None) -> dict[str, int]:
        """Every category with the number of packages the caller may find in it."""
        return self.search(principal, SearchQuery(per_page=1)).facets

    def summaries(self, principal: Principal | None, names: Iterable[str]) -> dict[str, SearchHit]:
        """The index's view of the named packages the caller may find."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}
        with self.index.searcher() as s:
            q = wq.And([wq.Or([wq.Term("name", n) for n in wanted]), visibility(principal)])
            metrics = self.popularity.all_metrics()
            hits = [self._hit(s, d, 0.0, metrics) for d in s.docs_for_query(q)]
        return {h.name: h for h in hits}

    # -- recommendations from the index --------------------------------------------------

    def co_dependencies(self, principal: Principal | None, name: str) -> Counter[str]:
        """How often each package appears beside ``name`` in the dependencies of the
        packages the caller may find ("used together with", from the dependency graph)."""
        out: Counter[str] = Counter()
        with self.index.searcher() as s:
            q = wq.And([wq.Term("deps", name), visibility(principal)])
            for d in s.docs_for_query(q):
                deps = s.stored_fields(d)["summary"]
                out.update(n for n in json.loads(deps).get("dependencies", []) if n != name)
        return out

    def neighbours(self, principal: Principal | None, deps: Iterable[str], limit: int = 50
                   ) -> list[tuple[str, float, list[str]]]:
        """The packages whose dependencies overlap ``deps`` most (shared rare
        dependencies weigh more: BM25 over the ``deps`` field), with their score and
        their own dependencies."""
        terms = [wq.Term("deps", d) for d in dict.fromkeys(deps)]
        if not terms:
            return []
        with self.index.searcher() as s:
            results = s.search(wq.Or(terms), filter=visibility(principal), limit=limit)
            return [(h["name"], float(h.score),
                     list(json.loads(h["summary"]).get("dependencies", []))) for h in results]

    def similar(self, principal: Principal | None, name: str, limit: int = 6) -> list[SearchHit]:
        """Packages like ``name``: sharing its keywords, category, contracts and the
        words of its description."""
        with self.index.searcher() as s:
            doc = s.document(name=name)
            if doc is None:
                return []
            summary = json.loads(doc["summary"])
            terms: list[wq.Query] = [wq.Term("keywords", k) for k in summary["keywords"]]
            terms += [wq.Term("contracts", c, boost=2.0) for c in summary["contracts"]]
            if summary["category"]:
                terms.append(wq.Term("category", summary["category"], boost=2.0))
            words = self._analyzed(s, "description", summary["description"])
            terms += [wq.Term("description", w, boost=0.5) for w in dict.fromkeys(words)][:30]
            if not terms:
                return []
            results = s.search(wq.Or(terms), filter=visibility(principal),
                               mask=wq.Term("name", name), limit=limit)
            metrics = self.popularity.all_metrics()
            return [self._hit(s, h.docnum, float(h.score), metrics) for h in results]


def npm_score_detail(hit: SearchHit, top_weekly: int) -> dict[str, float]:
    """npm's three score components in [0, 1]: quality (what the package tells about
    itself), popularity (weekly downloads against the best of the page, on a log scale)
    and maintenance (not deprecated)."""
    import math

    told = [bool(hit.description), bool(hit.keywords), bool(hit.category),
            bool(hit.contracts), bool(hit.author or hit.maintainers)]
    popularity = (math.log1p(hit.metrics.downloads_week) / math.log1p(top_weekly)
                  if top_weekly > 0 else 0.0)
    return {"quality": round(sum(told) / len(told), 4), "popularity": round(popularity, 4),
            "maintenance": 0.0 if hit.deprecated else 1.0}


def npm_final(detail: dict[str, float], weights: dict[str, float]) -> float:
    """npm's ``score.final``: the components averaged with the client's weights
    (``quality``, ``popularity``, ``maintenance`` query parameters)."""
    total = sum(weights.values()) or 1.0
    return round(sum(detail[k] * w for k, w in weights.items()) / total, 4)
