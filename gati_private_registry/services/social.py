"""Stars, ratings and reviews: one star and one rating (1-5) per user and package, one
review per user and package in Markdown (rendered through the sanitiser when shown),
edited or deleted by its author, hidden by admins. Each change is audited and appended
to the changes feed (webhooks and other replicas follow it)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..domain import Origin, Principal, Scope, VersionState
from ..errors import Conflict, FieldError, Forbidden, NotFound, Unauthenticated, ValidationFailed
from ..storage import changes
from ..storage.db import Database
from ..storage.models import Package, Rating, Review, Star, User, Version
from . import audit, markdown
from .publish import now

MAX_REVIEW = 10_000
MAX_REASON = 2_000


@dataclass(frozen=True)
class ReviewView:
    id: int
    author: str
    body: str
    html: str
    created_at: datetime
    updated_at: datetime
    hidden: bool
    hidden_by: str
    hidden_reason: str
    rating: int | None

    def as_dict(self) -> dict[str, Any]:
        from .packuments import iso
        return {"id": self.id, "author": self.author, "body": self.body, "html": self.html,
                "created_at": iso(self.created_at), "updated_at": iso(self.updated_at),
                "hidden": self.hidden, "rating": self.rating,
                **({"hidden_by": self.hidden_by, "hidden_reason": self.hidden_reason}
                   if self.hidden else {})}


@dataclass(frozen=True)
class Social:
    """A package's stars and ratings, and the caller's own."""

    stars: int
    rating: float
    ratings: int
    starred: bool
    my_rating: int | None
    my_review: int | None


def _acting(principal: Principal | None) -> Principal:
    if principal is None:
        raise Unauthenticated("sign in to star, rate or review")
    if not principal.can(Scope.READ):
        raise Forbidden("this token cannot read packages")
    return principal


def _body(body: Any) -> str:
    if not isinstance(body, str) or not body.strip():
        raise ValidationFailed("invalid review", details=[FieldError("body", "write something")])
    if len(body) > MAX_REVIEW:
        raise ValidationFailed("invalid review", details=[
            FieldError("body", f"at most {MAX_REVIEW} characters")])
    return body.strip()


class SocialService:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _package_id(s: Session, name: str) -> int:
        """The id of ``name`` when it has an installable version. Raises :class:`NotFound`."""
        pid = s.scalar(select(Package.id).join(Version, Version.package_id == Package.id).where(
            Package.name == name, Version.state == VersionState.APPROVED.value,
            Version.unpublished_at.is_(None)).limit(1))
        if pid is None:
            raise NotFound(f"no package {name}")
        return int(pid)

    def _event(self, s: Session, principal: Principal, kind: str, name: str,
               origin: Origin | None, **details: Any) -> None:
        changes.append(s, kind, package=name, user=principal.username, **details)
        audit.record(s, principal, kind, name, origin, **details)

    # -- stars and ratings ----------------------------------------------------------------

    def star(self, principal: Principal | None, name: str, starred: bool = True,
             origin: Origin | None = None) -> bool:
        """Star (or unstar) ``name``; returns whether anything changed. Raises
        :class:`Unauthenticated`, :class:`Forbidden`, :class:`NotFound`."""
        who = _acting(principal)
        with self.db.write() as s:
            pid = self._package_id(s, name)
            row = s.get(Star, (pid, who.user_id))
            if starred == (row is not None):
                return False
            if starred:
                s.add(Star(package_id=pid, user_id=who.user_id, created_at=now()))
            else:
                s.delete(row)
            self._event(s, who, "package.star" if starred else "package.unstar", name, origin)
        return True

    def rate(self, principal: Principal | None, name: str, score: Any,
             origin: Origin | None = None) -> None:
        """Set the caller's rating of ``name`` (1-5), or remove it with ``None``. Raises
        :class:`ValidationFailed`, :class:`Unauthenticated`, :class:`Forbidden`,
        :class:`NotFound`."""
        if score is not None and (isinstance(score, bool) or not isinstance(score, int)
                                  or not 1 <= score <= 5):
            raise ValidationFailed("invalid rating", details=[
                FieldError("score", "must be a whole number from 1 to 5")])
        who = _acting(principal)
        with self.db.write() as s:
            pid = self._package_id(s, name)
            row = s.get(Rating, (pid, who.user_id))
            if score is None:
                if row is None:
                    return
                s.delete(row)
            elif row is None:
                s.add(Rating(package_id=pid, user_id=who.user_id, score=score, updated_at=now()))
            else:
                row.score, row.updated_at = score, now()
            self._event(s, who, "package.rate", name, origin, score=score)

    def summary(self, principal: Principal | None, name: str) -> Social:
        """Raises :class:`NotFound`."""
        with self.db.read() as s:
            pid = self._package_id(s, name)
            stars = s.scalar(select(func.count()).select_from(Star).where(Star.package_id == pid))
            avg, count = s.execute(select(func.avg(Rating.score), func.count()).where(
                Rating.package_id == pid)).one()
            uid = principal.user_id if principal is not None else None
            mine = s.get(Rating, (pid, uid)) if uid is not None else None
            review = s.scalar(select(Review.id).where(Review.package_id == pid,
                                                      Review.user_id == uid)) if uid else None
            return Social(stars=int(stars or 0), rating=float(avg or 0), ratings=int(count),
                          starred=uid is not None and s.get(Star, (pid, uid)) is not None,
                          my_rating=mine.score if mine is not None else None,
                          my_review=review)

    def starred_by(self, principal: Principal) -> list[str]:
        """The names the caller starred, newest first."""
        with self.db.read() as s:
            return list(s.scalars(select(Package.name).join(Star, Star.package_id == Package.id)
                                  .where(Star.user_id == principal.user_id)
                                  .order_by(Star.created_at.desc())))

    # -- reviews --------------------------------------------------------------------------

    def add_review(self, principal: Principal | None, name: str, body: Any,
                   origin: Origin | None = None) -> int:
        """The caller's review of ``name``; returns its id. Raises
        :class:`ValidationFailed`, :class:`Conflict` (one review per user: edit it),
        :class:`Unauthenticated`, :class:`Forbidden`, :class:`NotFound`."""
        text = _body(body)
        who = _acting(principal)
        try:
            with self.db.write() as s:
                pid = self._package_id(s, name)
                if s.scalar(select(Review.id).where(Review.package_id == pid,
                                                    Review.user_id == who.user_id)) is not None:
                    raise Conflict(f"you have reviewed {name} already: edit that review")
                t = now()
                row = Review(package_id=pid, user_id=who.user_id, body=text, created_at=t,
                             updated_at=t, hidden=False, hidden_by="", hidden_reason="")
                s.add(row)
                s.flush()
                self._event(s, who, "review.create", name, origin, review=row.id)
                return int(row.id)
        except IntegrityError:  # the same user, twice at once (PostgreSQL)
            raise Conflict(f"you have reviewed {name} already: edit that review") from None

    def _review(self, s: Session, name: str, review_id: int) -> Review:
        pid = self._package_id(s, name)
        row = s.get(Review, review_id)
        if row is None or row.package_id != pid:
            raise NotFound(f"no review {review_id} of {name}")
        return row

    def edit_review(self, principal: Principal | None, name: str, review_id: int, body: Any,
                    origin: Origin | None = None) -> None:
        """Raises :class:`ValidationFailed`, :class:`Forbidden` (not the author),
        :class:`NotFound`, :class:`Unauthenticated`."""
        text = _body(body)
        who = _acting(principal)
        with self.db.write() as s:
            row = self._review(s, name, review_id)
            if row.user_id != who.user_id:
                raise Forbidden("only its author may edit a review")
            row.body, row.updated_at = text, now()
            self._event(s, who, "review.edit", name, origin, review=review_id)

    def delete_review(self, principal: Principal | None, name: str, review_id: int,
                      origin: Origin | None = None) -> None:
        """Raises :class:`Forbidden` (not the author), :class:`NotFound`,
        :class:`Unauthenticated`."""
        who = _acting(principal)
        with self.db.write() as s:
            row = self._review(s, name, review_id)
            if row.user_id != who.user_id:
                raise Forbidden("only its author may delete a review (admins may hide it)")
            s.execute(delete(Review).where(Review.id == review_id))
            self._event(s, who, "review.delete", name, origin, review=review_id)

    def hide_review(self, principal: Principal | None, name: str, review_id: int,
                    hidden: bool, reason: Any = "", origin: Origin | None = None) -> None:
        """Moderation: hide (or show again) a review. Admins only. Raises
        :class:`ValidationFailed` (hiding needs a reason), :class:`Forbidden`,
        :class:`NotFound`, :class:`Unauthenticated`."""
        reason = reason.strip() if isinstance(reason, str) else reason
        if hidden and (not isinstance(reason, str) or not reason):
            raise ValidationFailed("invalid moderation", details=[
                FieldError("reason", "say why the review is hidden")])
        if isinstance(reason, str) and len(reason) > MAX_REASON:
            raise ValidationFailed("invalid moderation", details=[
                FieldError("reason", f"at most {MAX_REASON} characters")])
        who = _acting(principal)
        if not who.is_admin:
            raise Forbidden("only admins may hide reviews")
        with self.db.write() as s:
            row = self._review(s, name, review_id)
            row.hidden = hidden
            row.hidden_by = who.username if hidden else ""
            row.hidden_reason = str(reason or "") if hidden else ""
            self._event(s, who, "review.hide" if hidden else "review.unhide", name, origin,
                        review=review_id, reason=row.hidden_reason)

    def reviews(self, principal: Principal | None, name: str) -> list[ReviewView]:
        """Newest first. Hidden reviews only for admins and their author. Raises
        :class:`NotFound`."""
        with self.db.read() as s:
            pid = self._package_id(s, name)
            rows = s.execute(select(Review, User.username, Rating.score)
                             .join(User, User.id == Review.user_id)
                             .outerjoin(Rating, (Rating.package_id == Review.package_id)
                                        & (Rating.user_id == Review.user_id))
                             .where(Review.package_id == pid)
                             .order_by(Review.created_at.desc(), Review.id.desc())).all()
        admin = principal is not None and principal.is_admin
        uid = principal.user_id if principal is not None else None
        return [ReviewView(id=r.id, author=username, body=r.body, html=markdown.render(r.body),
                           created_at=r.created_at, updated_at=r.updated_at, hidden=r.hidden,
                           hidden_by=r.hidden_by, hidden_reason=r.hidden_reason, rating=score)
                for r, username, score in rows if not r.hidden or admin or r.user_id == uid]
