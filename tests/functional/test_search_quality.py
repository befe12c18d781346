"""Search quality on a corpus of 500 generated modules (plus a few held ones), on SQLite
and PostgreSQL: exact names first, keywords found, one-letter typos forgiven, category
filters, facets and sorts right, and pending modules never shown to a reader."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest

from gati_private_registry.app import create_app, prepare
from gati_private_registry.domain import Principal
from gati_private_registry.services import Services
from gati_private_registry.settings import Settings
from gati_private_registry.testing import ModuleSpec, publish_body
from gati_private_registry.testing_corpus import CATEGORIES, CorpusModule, generate

CORPUS_SIZE = 500
HELD_SECRET = "quokkasecret"


class Corpus:
    def __init__(self, services: Services, modules: list[CorpusModule], held: list[str]) -> None:
        self.services = services
        self.modules = modules
        self.by_name = {m.name: m for m in modules}
        self.held = held
        self.client = create_app(services.settings, services).test_client()
        self.tokens = {who: services.tokens.create_token(None, who, scope).secret for who, scope in
                       (("admin", "admin"), ("reader", "read"), ("holder", "publish"),
                        ("approver", "approve"))}

    def principal(self, who: str) -> Principal:
        return self.services.tokens.authenticate_token(self.tokens[who])

    def api(self, who: str = "reader", **params: Any) -> dict[str, Any]:
        res = self.client.get("/api/search", query_string=params,
                              headers={"Authorization": f"Bearer {self.tokens[who]}"})
        assert res.status_code == 200, res.data
        return res.json  # type: ignore[no-any-return]

    def names(self, who: str = "reader", **params: Any) -> list[str]:
        return [r["name"] for r in self.api(who, **params)["results"]]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Corpus]:
    tmp = tmp_path_factory.mktemp(f"corpus-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'registry.db'}"
    else:
        factory = request.getfixturevalue("postgres")
        url = factory.url(factory.migrated())
    settings = Settings.for_tests(Path(tmp / "data"), database={"url": url}, approvals={
        "default_mode": "auto", "policies": [{"pattern": "@held/*", "mode": "manual"}]},
        marketplace={"stats_max_age": 0})
    services, _ = prepare(settings)
    acc = services.accounts
    for name, role in (("reader", "reader"), ("holder", "publisher"), ("approver", "approver")):
        acc.create_user(None, name, "password-123", role)
    admin = acc.principal_for_user(acc.get_user("admin"))
    holder = acc.principal_for_user(acc.get_user("holder"))
    modules = generate(CORPUS_SIZE)
    for m in modules:
        spec = ModuleSpec(**m.spec_kwargs())
        services.publish.publish(admin, spec.name, publish_body(spec))
    held = []
    for i in range(5):
        spec = ModuleSpec(f"@held/postgres-pending-{i}", description=f"postgres {HELD_SECRET} waits",
                          keywords=["database", HELD_SECRET])
        services.publish.publish(holder, spec.name, publish_body(spec))
        held.append(spec.name)
    # an approved module whose newer, pending version says something not yet public
    for version, words in (("1.0.0", "approved words"), ("2.0.0", f"{HELD_SECRET} leak")):
        spec = ModuleSpec("@held/two-states", version, description=words)
        services.publish.publish(holder, spec.name, publish_body(spec))
    services.approvals.decide(admin, "@held/two-states", "1.0.0", "approve", "")
    services.indexer.run_once(blocking=True)
    c = Corpus(services, modules, held)
    yield c
    services.close()


def test_the_exact_name_ranks_first(corpus: Corpus) -> None:
    rng = random.Random(1)
    for m in rng.sample(corpus.modules, 40):
        assert corpus.names(q=m.name)[0] == m.name, m.name
    # a bare name shared by nobody else: first even without its scope
    scoped = [m for m in corpus.modules if m.name.startswith("@")]
    for m in rng.sample(scoped, 20):
        bare = m.name.rpartition("/")[2]
        if not any(o.name.rpartition("/")[2] == bare for o in corpus.modules if o is not m):
            assert corpus.names(q=bare)[0] == m.name, m.name


def test_a_keyword_query_finds_every_module_that_has_it(corpus: Corpus) -> None:
    rng = random.Random(2)
    for m in rng.sample(corpus.modules, 25):
        keyword = rng.choice(m.keywords)
        found = set(corpus.names(q=f"keywords:{keyword}", per_page=250))
        expected = {o.name for o in corpus.modules if keyword in o.keywords}
        assert found == expected, keyword
        # as a plain word too: the module is among the matches
        res = corpus.api(q=keyword, per_page=250)
        assert m.name in [r["name"] for r in res["results"]] or res["total"] > 250


def test_a_one_letter_typo_still_finds_the_module(corpus: Corpus) -> None:
    rng = random.Random(3)
    checked = 0
    for m in rng.sample(corpus.modules, 60):
        parts = m.name.rpartition("/")[2].split("-")
        word = max(parts, key=len)
        if len(word) < 5 or not word.isalpha():
            continue
        i = rng.randrange(1, len(word))
        typo = word[:i] + ("x" if word[i] != "x" else "z") + word[i + 1:]  # one substitution
        others = [p for p in parts if p != word]
        query = " ".join([typo] + others)
        assert m.name in corpus.names(q=query, per_page=50), (m.name, query)
        checked += 1
    assert checked >= 20
    # a dropped letter and an added one as well
    target = next(m for m in corpus.modules if "postgres" in m.name)
    assert target.name in corpus.names(q="postgrs", per_page=250)
    assert target.name in corpus.names(q="postgress", per_page=250)


def test_prefixes_find_names_for_type_ahead(corpus: Corpus) -> None:
    m = next(m for m in corpus.modules if "prometheus" in m.name)
    res = corpus.client.get("/api/search/suggest?q=promet",
                            headers={"Authorization": f"Bearer {corpus.tokens['reader']}"}).json
    names = [s["name"] for s in res["suggestions"]]
    named = {o.name for o in corpus.modules if "prometheus" in o.name}
    # names with the word being typed come first (before "prompt-...", one edit away)
    assert len(names) == 8 and set(names[:min(8, len(named))]) <= named, names
    assert m.name in corpus.names(q="promet", per_page=250)


def test_category_filter_and_facet_counts(corpus: Corpus) -> None:
    expected = Counter(m.category for m in corpus.modules)
    everything = corpus.api(per_page=1)
    # the held modules are not counted for a reader; the approved "@held/two-states"
    # has no category of its own and ModuleSpec's default gati-module.json says database
    assert everything["total"] == CORPUS_SIZE + 1
    facets = everything["facets"]["category"]
    assert facets == {**expected, "database": expected["database"] + 1}
    for category in CATEGORIES:
        res = corpus.api(category=category, per_page=250)
        names = {r["name"] for r in res["results"]}
        assert all(r["category"] == category for r in res["results"])
        assert names - {"@held/two-states"} == {m.name for m in corpus.modules
                                               if m.category == category}
    # a text query's facets count only its matches
    res = corpus.api(q="redis", per_page=250)
    assert sum(res["facets"]["category"].values()) == res["total"]
    assert set(res["facets"]["category"]) <= set(CATEGORIES)
    # contract filter
    res = corpus.api(contract="gati.payments/v2", per_page=250)
    assert {r["name"] for r in res["results"]} == {
        m.name for m in corpus.modules if "gati.payments/v2" in m.contracts}


def test_sorts(corpus: Corpus) -> None:
    counter = corpus.services.downloads
    popular = corpus.modules[10:20]
    for rank, m in enumerate(popular):
        for _ in range(100 - rank * 7):
            counter.hit(m.name, "1.0.0")
    counter.flush()
    by_downloads = corpus.api(sort="downloads", per_page=10)["results"]
    assert [r["name"] for r in by_downloads] == [m.name for m in popular]
    weekly = [r["downloads"]["week"] for r in by_downloads]
    assert weekly == sorted(weekly, reverse=True) and weekly[0] == 100
    # a text query sorted by downloads keeps to its matches
    cat = popular[3].category
    res = corpus.api(category=cat, sort="downloads", per_page=250)["results"]
    assert res[0]["name"] == next(m.name for m in popular if m.category == cat)
    recent = corpus.api(sort="recent", per_page=5)["results"]
    stamps = [r["modified"] for r in recent]
    assert stamps == sorted(stamps, reverse=True)
    assert recent[0]["name"] in ("@held/two-states", corpus.modules[-1].name)
    bad = corpus.client.get("/api/search?sort=bogus&page=0&per_page=1000",
                            headers={"Authorization": f"Bearer {corpus.tokens['reader']}"})
    assert bad.status_code == 400
    assert {d["field"] for d in bad.json["error"]["details"]} == {"sort", "page", "per_page"}
    # paging: pages do not overlap and cover the results in order
    first = corpus.names(sort="downloads", per_page=5, page=1)
    second = corpus.names(sort="downloads", per_page=5, page=2)
    assert first + second == [m.name for m in popular]


def test_pending_modules_never_reach_a_reader(corpus: Corpus) -> None:
    for q in (HELD_SECRET, "postgres pending", "@held/postgres-pending-0", "keywords:" + HELD_SECRET):
        names = corpus.names("reader", q=q, per_page=250)
        assert not any(n in corpus.held for n in names), q
    assert corpus.api("reader", q=HELD_SECRET)["total"] == 0   # nor the pending 2.0.0 text
    npm = corpus.client.get(f"/npm/-/v1/search?text={HELD_SECRET}",
                            headers={"Authorization": f"Bearer {corpus.tokens['reader']}"}).json
    assert npm["total"] == 0 and npm["objects"] == []
    # their publisher sees their own pending modules, marked pending; an approver too
    mine = corpus.api("holder", q=HELD_SECRET, per_page=50)["results"]
    assert {r["name"] for r in mine} == set(corpus.held)
    assert {r["state"] for r in mine} == {"pending"}
    assert set(corpus.names("approver", q=HELD_SECRET, per_page=50)) == set(corpus.held)
    # and another publisher does not
    corpus.services.accounts.create_user(None, "other", "password-123", "publisher")
    other = corpus.services.tokens.create_token(None, "other", "publish").secret
    corpus.tokens["other"] = other
    assert corpus.names("other", q=HELD_SECRET) == []
