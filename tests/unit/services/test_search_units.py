"""Units of the search and marketplace services that need no database: the feed's gap
rule, the index directory's writer lock and generations, trending, the sanitiser."""
from __future__ import annotations

import multiprocessing
from datetime import datetime, timedelta, timezone
from pathlib import Path

from gati_private_registry.services.indexer import GAP_GRACE, ready_prefix
from gati_private_registry.services.markdown import render
from gati_private_registry.services.popularity import trending_score
from gati_private_registry.storage.search_index import SearchIndex

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def test_the_cursor_stops_before_a_recent_gap_and_passes_an_old_one() -> None:
    fresh = NOW - timedelta(seconds=1)
    assert ready_prefix(10, [(11, fresh), (12, fresh)], NOW) == 12
    assert ready_prefix(10, [(11, fresh), (13, fresh), (14, fresh)], NOW) == 11
    assert ready_prefix(10, [(12, fresh)], NOW) == 10
    old = NOW - GAP_GRACE - timedelta(seconds=1)
    assert ready_prefix(10, [(11, old), (13, old), (14, fresh)], NOW) == 14
    assert ready_prefix(10, [], NOW) == 10


def doc(name: str, **extra: str) -> dict[str, object]:
    return {"name": name, "bare": name, "name_parts": name, "visible": "1",
            "summary": "{}", "modified": 1, **extra}


def test_one_writer_per_index_directory_and_rebuilds_switch_atomically(tmp_path: Path) -> None:
    a, b = SearchIndex(tmp_path), SearchIndex(tmp_path)
    with a.writer_lock(blocking=False) as held_a:
        assert held_a
        with b.writer_lock(blocking=False) as held_b:
            assert not held_b          # another process (here: open file) holds it
        a.apply([doc("one"), doc("two")], [], cursor=5)
    assert b.cursor() == 5 and b.doc_count() == 2
    with b.writer_lock():
        b.apply([], ["one"], cursor=6)
    assert a.doc_count() == 1         # a's searcher reopened after b's commit
    with a.writer_lock():
        assert a.rebuild([doc("x"), doc("y"), doc("z")], cursor=9) == 3
    assert b.cursor() == 9 and b.doc_count() == 3
    with a.writer_lock():
        a.rebuild([doc("q")], cursor=10)
    generations = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert len(generations) == 2      # the live one and the previous one


def _commit_in_a_loop(root: str, commits: int) -> None:
    index = SearchIndex(Path(root))
    with index.writer_lock():
        for i in range(commits):
            # replacing documents leaves small segments that the next commit merges
            # away, deleting files a reader in another process may be about to open
            index.apply([doc(f"pkg-{i % 7}"), doc(f"other-{i}")], [f"other-{i - 1}"], cursor=i)


def test_searchers_open_while_another_process_commits(tmp_path: Path) -> None:
    """The follower commits in another process while workers open searchers: each
    commit deletes the table of contents (and merged segments) a reader may have just
    listed. Opening must look again, never fail."""
    index = SearchIndex(tmp_path)
    with index.writer_lock():
        index.apply([doc("seed")], [], cursor=0)
    writer = multiprocessing.get_context("fork").Process(target=_commit_in_a_loop,
                                                         args=(str(tmp_path), 300))
    writer.start()
    opened = 0
    try:
        while writer.is_alive() or opened == 0:
            index.generation.bump()          # force a fresh open every time
            with index.searcher() as s:
                assert s.doc_count() >= 1
            opened += 1
    finally:
        writer.join(60)
    assert writer.exitcode == 0
    assert opened > 50
    assert index.cursor() == 299 and index.doc_count() == 1 + 7 + 1


def test_trending_is_damped_for_small_numbers() -> None:
    assert trending_score(5, 0) == 0.25
    assert trending_score(400, 100) == 2.5
    assert trending_score(50, 100) < 0
    assert trending_score(5, 0) < trending_score(200, 50)


def test_markdown_is_rendered_and_sanitised() -> None:
    html = render("# T\n\n*x* <script>alert(1)</script><a href='javascript:x()'>j</a>"
                  "<img src=y onerror=z()> [ok](https://e.example/) | a |\n")
    assert "<h1>T</h1>" in html and "<em>x</em>" in html
    assert "script" not in html and "onerror" not in html and "javascript" not in html
    assert '<a href="https://e.example/" rel="noopener noreferrer nofollow">ok</a>' in html
    table = render("| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert "<table>" in table and "<td>1</td>" in table


def test_one_edit_means_one_edit() -> None:
    from gati_private_registry.services.search import _within_one
    for a, b in (("postgres", "postgrs"), ("postgres", "postgress"), ("postgres", "postgris"),
                 ("postgres", "psotgres")):
        assert _within_one(a, b) and _within_one(b, a), (a, b)
    for a, b in (("postgres", "pstgrs"), ("postgres", "pgstores"), ("redis", "radix"),
                 ("abc", "abcde")):
        assert not _within_one(a, b), (a, b)
