"""The marketplace through /api/: module documents, versions, downloads and stats,
stars, ratings, reviews and their moderation, trust badges, recommendations, reindex."""
from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from gati_private_registry.storage.models import AuditEvent, Change
from gati_private_registry.testing import ModuleSpec

from .driver import Registry

XSS = ('<script>alert(1)</script><img src=x onerror="alert(2)">'
       '[click](javascript:alert(3)) <a href="https://ok.example/" onclick="alert(4)">ok</a>'
       '<iframe src="https://evil.example/"></iframe><svg onload=alert(5)></svg>')


def api(registry: Registry, method: str, path: str, token: str | None = None,
        body: Any = None) -> Any:
    headers = registry.headers(token) if token else {}
    return registry.client.open(path, method=method, headers=headers,
                                data=json.dumps(body) if body is not None else None,
                                content_type="application/json" if body is not None else None)


@pytest.fixture
def published(registry: Registry) -> Registry:
    registry.add_user("rita", "reader")
    registry.add_user("paul", "publisher")
    registry.publish(ModuleSpec("@gati-modules/postgres", "1.0.0", description="PostgreSQL",
                                keywords=["database", "sql"],
                                files={"CHANGELOG.md": "# Changes\n\n## 1.0.0\n\n- first\n",
                                       "index.d.ts": "export declare function connect(url: string): Pool;\n"
                                                     "export interface Pool { query(sql: string): Promise<unknown>; }\n"}))
    registry.publish(ModuleSpec("@gati-modules/postgres", "1.1.0", description="PostgreSQL, pooled",
                                keywords=["database", "sql", "pool"]))
    registry.publish(ModuleSpec("orders", "1.0.0", description="orders service",
                                dependencies={"@gati-modules/postgres": "^1.0.0", "redis-cache": "^1.0.0"}))
    registry.publish(ModuleSpec("billing", "1.0.0", description="billing service",
                                dependencies={"@gati-modules/postgres": "^1.0.0", "redis-cache": "^1.0.0"}))
    registry.publish(ModuleSpec("redis-cache", "1.0.0", description="cache", keywords=["cache"],
                                gati_module={"name": "redis-cache", "version": "1.0.0", "type": "cache"}))
    registry.services.indexer.run_once()
    return registry


def test_module_document_versions_download_and_stats(published: Registry) -> None:
    reg = published
    read = reg.token("rita", "read")
    doc = api(reg, "GET", "/api/modules/@gati-modules/postgres", read).json
    assert doc["name"] == "@gati-modules/postgres" and doc["version"] == "1.1.0"
    assert doc["category"] == "database" and doc["contracts"] == ["gati.db/v1"]
    assert [v["version"] for v in doc["versions"]] == ["1.1.0", "1.0.0"]
    assert doc["versions"][0]["dist_tags"] == ["latest"]
    assert set(doc["versions"][0]["signatures"]) == {"ecdsa-p256", "ed25519"}
    assert sorted(doc["dependents"]) == ["billing", "orders"]
    assert "<h1>" in doc["readme_html"] and doc["trust"] == "community"
    old = api(reg, "GET", "/api/modules/@gati-modules/postgres/versions", read).json
    assert [v["version"] for v in old["versions"]] == ["1.1.0", "1.0.0"]
    assert api(reg, "GET", "/api/modules/nope", read).status_code == 404
    assert api(reg, "GET", "/api/modules/@gati-modules/postgres/bogus", read).status_code == 404
    assert api(reg, "GET", "/api/modules/@gati-modules/postgres").status_code == 401

    res = api(reg, "GET", "/api/modules/@gati-modules/postgres/1.0.0/download", read)
    assert res.status_code == 200 and res.data[:2] == b"\x1f\x8b"
    assert api(reg, "GET", "/api/modules/@gati-modules/postgres/9.9.9/download", read).status_code == 404
    for _ in range(3):
        assert reg.tarball("@gati-modules/postgres", "1.1.0", read).status_code == 200
    assert reg.services.downloads.flush() == 4
    stats = api(reg, "GET", "/api/modules/@gati-modules/postgres/stats", read).json
    assert stats["downloads"] == {"week": 4, "month": 4, "total": 4}
    assert stats["by_version"] == {"1.0.0": 1, "1.1.0": 3}
    assert len(stats["daily"]) == 90 and stats["daily"][-1]["downloads"] == 4
    # the 1.0.0 tarball's changelog and type definitions
    page = reg.services.modules.page(None, "@gati-modules/postgres")
    assert page.changelog_html == ""  # 1.1.0 has none; 1.0.0 did
    from gati_private_registry.services.modules import _tarball_members, api_reference
    with reg.services.db.read() as s:
        from gati_private_registry.storage.models import Version
        digest = s.scalar(select(Version.blob_digest).where(Version.version == "1.0.0",
                                                            Version.manifest["name"].as_string() == "@gati-modules/postgres"))
    members = _tarball_members(reg.services.blobs, digest)
    assert [(a.kind, a.name) for a in api_reference(members)] == [("function", "connect"),
                                                                 ("interface", "Pool")]


def test_stars_ratings_and_reviews(published: Registry) -> None:
    reg = published
    rita, paul = reg.token("rita", "read"), reg.token("paul", "publish")
    base = "/api/modules/@gati-modules/postgres"
    assert api(reg, "PUT", f"{base}/star").status_code == 401
    assert api(reg, "PUT", f"{base}/star", rita).json == {"name": "@gati-modules/postgres",
                                                          "starred": True, "stars": 1}
    assert api(reg, "PUT", f"{base}/star", rita).json["stars"] == 1      # one per user
    assert api(reg, "PUT", f"{base}/star", paul).json["stars"] == 2
    assert api(reg, "DELETE", f"{base}/star", paul).json["stars"] == 1
    assert api(reg, "PUT", "/api/modules/nope/star", rita).status_code == 404

    for bad in (0, 6, "5", 2.5, True, None):
        res = api(reg, "PUT", f"{base}/rating", rita, {"score": bad})
        assert res.status_code == 400 and res.json["error"]["details"][0]["field"] == "score", bad
    assert api(reg, "PUT", f"{base}/rating", rita, {"score": 4}).json["rating"] == {"average": 4.0, "count": 1}
    assert api(reg, "PUT", f"{base}/rating", rita, {"score": 2}).json["rating"] == {"average": 2.0, "count": 1}
    assert api(reg, "PUT", f"{base}/rating", paul, {"score": 5}).json["rating"] == {"average": 3.5, "count": 2}

    assert api(reg, "POST", f"{base}/reviews", rita, {"body": "   "}).status_code == 400
    assert api(reg, "POST", f"{base}/reviews", rita, {"body": "x" * 10_001}).status_code == 400
    made = api(reg, "POST", f"{base}/reviews", rita, {"body": "**Solid**\n\n" + XSS})
    assert made.status_code == 201
    rid = made.json["id"]
    assert api(reg, "POST", f"{base}/reviews", rita, {"body": "again"}).status_code == 409
    listed = api(reg, "GET", f"{base}/reviews", paul).json
    [review] = listed["reviews"]
    assert review["author"] == "rita" and review["rating"] == 2
    html = review["html"]
    assert "<strong>Solid</strong>" in html
    for bad in ("<script", "onerror", "onclick", "href=\"javascript", "<iframe", "<svg", "onload"):
        assert bad not in html.lower(), bad
    assert 'href="https://ok.example/"' in html and 'rel="noopener noreferrer nofollow"' in html

    assert api(reg, "PATCH", f"{base}/reviews/{rid}", paul, {"body": "mine now"}).status_code == 403
    assert api(reg, "PATCH", f"{base}/reviews/{rid}", rita, {"body": "Better *now*"}).status_code == 200
    assert api(reg, "PATCH", f"{base}/reviews/999999", rita, {"body": "x"}).status_code == 404
    # moderation: admins only, with a reason; hidden from others, shown to its author
    admin = reg.token("admin", "admin")
    assert api(reg, "POST", f"{base}/reviews/{rid}/hide", paul, {"reason": "spam"}).status_code == 403
    assert api(reg, "POST", f"{base}/reviews/{rid}/hide", admin, {}).status_code == 400
    assert api(reg, "POST", f"{base}/reviews/{rid}/hide", admin, {"reason": "off topic"}).status_code == 200
    assert api(reg, "GET", f"{base}/reviews", paul).json["reviews"] == []
    [own] = api(reg, "GET", f"{base}/reviews", rita).json["reviews"]
    assert own["hidden"] and own["hidden_by"] == "admin" and own["hidden_reason"] == "off topic"
    assert api(reg, "DELETE", f"{base}/reviews/{rid}", paul).status_code == 403
    assert api(reg, "DELETE", f"{base}/reviews/{rid}", rita).json["deleted"] is True
    assert api(reg, "GET", f"{base}/reviews", admin).json["reviews"] == []

    with reg.services.db.read() as s:
        actions = [a for a, in s.execute(select(AuditEvent.action).where(
            AuditEvent.subject == "@gati-modules/postgres").order_by(AuditEvent.id))]
        kinds = [k for k, in s.execute(select(Change.kind).where(
            Change.package == "@gati-modules/postgres", Change.kind.like("review.%")))]
    assert actions == ["package.star", "package.star", "package.unstar", "package.rate",
                       "package.rate", "package.rate", "review.create", "review.edit",
                       "review.hide", "review.delete"]
    assert kinds == ["review.create", "review.edit", "review.hide", "review.delete"]

    # sorting by stars and rating
    reg.services.popularity.invalidate()
    res = api(reg, "GET", "/api/search?sort=stars", rita).json["results"]
    assert res[0]["name"] == "@gati-modules/postgres" and res[0]["stars"] == 1
    res = api(reg, "GET", "/api/search?sort=rating", rita).json["results"]
    assert res[0]["name"] == "@gati-modules/postgres" and res[0]["rating"]["average"] == 3.5


def test_trust_levels(published: Registry, settings_overrides: dict[str, Any]) -> None:
    reg = published
    read, admin = reg.token("rita", "read"), reg.token("admin", "admin")
    assert api(reg, "PUT", "/api/modules/orders/trust", read, {"reason": "x"}).status_code == 403
    assert api(reg, "PUT", "/api/modules/orders/trust", admin, {"reason": 5}).status_code == 400
    assert api(reg, "PUT", "/api/modules/orders/trust", admin, {"reason": "reviewed"}).status_code == 200
    reg.services.indexer.run_once()
    res = api(reg, "GET", "/api/search?trust=trusted", read).json
    assert [r["name"] for r in res["results"]] == ["orders"] and res["results"][0]["trust"] == "trusted"
    assert api(reg, "GET", "/api/modules/orders", read).json["trust"] == "trusted"
    assert api(reg, "GET", "/api/search?trust=gold", read).status_code == 400
    assert api(reg, "DELETE", "/api/modules/orders/trust", admin).status_code == 200
    reg.services.indexer.run_once()
    assert api(reg, "GET", "/api/search?trust=trusted", read).json["total"] == 0


def test_verified_by_an_official_team_and_trusted_by_approvers(registry: Registry) -> None:
    from gati_private_registry.services.search_docs import Trust, TrustRules, trust_level
    rules = TrustRules(official_teams=("core",), trusted_approvers=2)
    assert trust_level(7, 0, False, {7}, rules) is Trust.VERIFIED
    assert trust_level(8, 2, False, {7}, rules) is Trust.TRUSTED
    assert trust_level(8, 1, True, {7}, rules) is Trust.TRUSTED
    assert trust_level(8, 1, False, {7}, rules) is Trust.COMMUNITY
    assert trust_level(None, 0, False, set(), TrustRules(trusted_approvers=0)) is Trust.COMMUNITY


def test_recommendations(published: Registry) -> None:
    reg = published
    read = reg.token("rita", "read")
    together = api(reg, "GET", "/api/modules/@gati-modules/postgres/together", read).json
    assert [t["name"] for t in together["together"]] == ["redis-cache"]
    similar = api(reg, "GET", "/api/modules/orders/similar", read).json["similar"]
    assert "orders" not in [s["name"] for s in similar] and similar
    project = {"name": "my-app", "dependencies": {"@gati-modules/postgres": "^1.1.0"}}
    recs = api(reg, "POST", "/api/recommendations", read, project).json["recommendations"]
    names = [r["name"] for r in recs]
    assert names[0] == "redis-cache" and "@gati-modules/postgres" not in names
    assert set(names) <= {"redis-cache", "orders", "billing"}
    assert api(reg, "POST", "/api/recommendations", read, {"dependencies": []}).status_code == 400
    assert api(reg, "POST", "/api/recommendations", read, [1]).status_code == 400
    assert api(reg, "POST", "/api/recommendations", None, project).status_code == 401
    # a project profile is remembered (names only) and feeds "used together with"
    api(reg, "POST", "/api/recommendations", read,
        {"dependencies": {"redis-cache": "1", "billing": "1", "left-pad": "1"}})
    together = api(reg, "GET", "/api/modules/billing/together", read).json["together"]
    assert [t["name"] for t in together] == ["redis-cache"]


def test_reindex_rebuilds_the_index(published: Registry) -> None:
    reg = published
    before = reg.services.index.doc_count()
    result = reg.services.indexer.rebuild()
    assert result.indexed == before == 4
    assert reg.services.index.cursor() == result.cursor
    read = reg.token("rita", "read")
    assert api(reg, "GET", "/api/search?q=postgres", read).json["total"] >= 1
    # the follower then has nothing to do
    assert reg.services.indexer.run_once().indexed == 0


@pytest.mark.parametrize("approval_mode", ["manual"])
def test_an_empty_filter_finds_nothing_not_everything(registry: Registry) -> None:
    """Whoosh treats an empty filter as none: a category nobody uses, or a reader who may
    see nothing yet, must get no results rather than every document."""
    registry.add_user("rita", "reader")
    rita = registry.token("rita", "read")
    registry.publish(ModuleSpec("secret-plan", "1.0.0", description="held back"))
    registry.services.indexer.run_once()
    held = api(registry, "GET", "/api/search?q=secret", rita).json
    assert held["results"] == [] and held["total"] == 0
    approver = registry.token("admin", "approve")
    assert api(registry, "POST", "/api/modules/secret-plan/1.0.0/approve", approver,
               {"reason": "ok"}).status_code == 200
    registry.services.indexer.run_once()
    assert [r["name"] for r in api(registry, "GET", "/api/search?q=secret", rita).json["results"]] \
        == ["secret-plan"]
    empty = api(registry, "GET", "/api/search?q=secret&category=queue", rita).json
    assert empty["results"] == [] and empty["total"] == 0


def test_lockfiles_feed_install_co_occurrence(published: Registry) -> None:
    """A package-lock.json (v3 ``packages`` or v1 ``dependencies``) tells what a project
    installs together, transitive dependencies included."""
    reg = published
    read = reg.token("rita", "read")
    for name in ("alpha-mod", "beta-mod"):   # unrelated in the dependency graph
        reg.publish(ModuleSpec(name, "1.0.0", description=name))
    reg.services.indexer.run_once()
    assert api(reg, "GET", "/api/modules/alpha-mod/together", read).json["together"] == []
    v3 = {"name": "app", "lockfileVersion": 3, "packages": {
        "": {"name": "app", "dependencies": {"alpha-mod": "^1.0.0"}},
        "node_modules/alpha-mod": {"version": "1.0.0"},
        "node_modules/alpha-mod/node_modules/beta-mod": {"version": "1.0.0"}}}
    recs = api(reg, "POST", "/api/recommendations", read, v3).json["recommendations"]
    assert not {"alpha-mod", "beta-mod"} & {r["name"] for r in recs}
    # remembered as a profile: installed together, so used together
    together = api(reg, "GET", "/api/modules/alpha-mod/together", read).json["together"]
    assert [t["name"] for t in together] == ["beta-mod"]
    v1 = {"lockfileVersion": 1, "dependencies": {"billing": {"version": "1.0.0", "dependencies": {
        "redis-cache": {"version": "1.0.0"}}}}}
    assert api(reg, "POST", "/api/recommendations", read, v1).status_code == 200
    too_many = {"lockfileVersion": 3, "packages": {f"node_modules/p{i}": {} for i in range(2001)}}
    assert api(reg, "POST", "/api/recommendations", read, too_many).status_code == 400


def test_an_index_with_no_segment_answers_empty_not_500(registry: Registry) -> None:
    """Before the index follower has run (or after everything was deleted and merged
    away) the index has no segment, and Whoosh has no columns to sort or count by."""
    registry.publish(ModuleSpec("early-bird", "1.0.0", description="published first"))
    assert registry.services.index.doc_count() == 0
    reader = registry.token("admin", "read")
    module = api(registry, "GET", "/api/modules/early-bird", reader)
    assert module.status_code == 200, module.data
    assert module.json["name"] == "early-bird"
    for sort in ("relevance", "recent", "downloads", "stars"):
        found = api(registry, "GET", f"/api/search?sort={sort}", reader)
        assert found.status_code == 200, (sort, found.data)
        assert found.json["results"] == [] and found.json["total"] == 0
    assert api(registry, "GET", "/npm/-/v1/search?text=early", reader).json["objects"] == []
