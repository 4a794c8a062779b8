from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, field_validator

from service.fields import NO_NUL_SCHEMA, text_field
from service.realworld import EnvelopedInput, RealWorldDateTime
from service.users.schemas import ProfileOut

Title = text_field(255, min_length=1)
Description = text_field(10_000, min_length=1)
Body = text_field(200_000, min_length=1)
TagName = text_field(100, min_length=1)
TagList = Annotated[list[TagName], Field(max_length=50)]  # type: ignore[valid-type]
CommentBody = text_field(20_000, min_length=1)


def _clean_tags(tags: list[str] | None) -> list[str] | None:
    """Trimmed, without blanks or duplicates, sorted (the spec's tagList is a sorted set)."""
    if tags is None:
        return None
    return sorted({tag.strip() for tag in tags if tag.strip()})


class ArticleCreate(EnvelopedInput):
    envelope = "article"

    title: Title  # type: ignore[valid-type]
    description: Description  # type: ignore[valid-type]
    body: Body  # type: ignore[valid-type]
    tagList: TagList = []

    @field_validator("tagList")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str] | None:
        return _clean_tags(value)


class ArticleUpdate(EnvelopedInput):
    """Only the fields given change; the slug follows the title."""

    envelope = "article"

    title: Title = None  # type: ignore[valid-type, assignment]
    description: Description = None  # type: ignore[valid-type, assignment]
    body: Body = None  # type: ignore[valid-type, assignment]
    tagList: TagList = None  # type: ignore[assignment]

    @field_validator("tagList")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str] | None:
        return _clean_tags(value)

    def changes(self) -> dict[str, object]:
        return self.model_dump(include=self.model_fields_set)


class ArticleQuery(BaseModel):
    tag: str | None = Field(default=None, max_length=100, json_schema_extra=NO_NUL_SCHEMA)
    author: str | None = Field(default=None, max_length=64, json_schema_extra=NO_NUL_SCHEMA)
    favorited: str | None = Field(default=None, max_length=64, json_schema_extra=NO_NUL_SCHEMA)
    search: str | None = Field(default=None, max_length=200, json_schema_extra=NO_NUL_SCHEMA)
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=2_147_483_647)

    @field_validator("tag", "author", "favorited", "search")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class FeedQuery(BaseModel):
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=2_147_483_647)


class ArticleListItem(BaseModel):
    """An article in a list or feed: everything but the body."""

    slug: str
    title: str
    description: str
    tagList: list[str]
    createdAt: RealWorldDateTime
    updatedAt: RealWorldDateTime
    favorited: bool
    favoritesCount: int
    author: ProfileOut


class ArticleOut(ArticleListItem):
    body: str


class ArticleEnvelope(BaseModel):
    article: ArticleOut


class ArticlesEnvelope(BaseModel):
    articles: list[ArticleListItem]
    articlesCount: int


class CommentCreate(EnvelopedInput):
    envelope = "comment"

    body: CommentBody  # type: ignore[valid-type]


class CommentOut(BaseModel):
    id: int
    createdAt: RealWorldDateTime
    updatedAt: RealWorldDateTime
    body: str
    author: ProfileOut


class CommentEnvelope(BaseModel):
    comment: CommentOut


class CommentsEnvelope(BaseModel):
    comments: list[CommentOut]


class TagsEnvelope(BaseModel):
    tags: list[str]
