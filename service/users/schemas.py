from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, BaseModel, EmailStr, Field, field_validator

from service.fields import text_field
from service.realworld import EnvelopedInput

if TYPE_CHECKING:
    from service.users.models import User

Username = Annotated[
    str, Field(strict=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
]
# email-validator takes internationalised addresses (`a@例え.jp`): the JSON Schema format
# for those is idn-email; "email" would call them invalid.
Email = Annotated[EmailStr, Field(json_schema_extra={"format": "idn-email"})]
Password = text_field(256, min_length=8)
Bio = text_field(10_000)
# Only http and https: front ends put `image` into <img src> or a link, where a
# `javascript:` or `data:` URL would run or show whatever the user chose. "" clears it.
IMAGE_URL_PATTERN = r"^(?:[Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20\x7f]+)?$"
_IMAGE_URL = re.compile(IMAGE_URL_PATTERN)


def _http_url(value: str) -> str:
    if not _IMAGE_URL.fullmatch(value):  # fullmatch: `$` alone lets a trailing newline by
        raise ValueError("must be an http or https URL")
    return value


ImageUrl = Annotated[
    str,
    Field(strict=True, max_length=2048, json_schema_extra={"pattern": IMAGE_URL_PATTERN}),
    AfterValidator(_http_url),
]


class UserRegister(EnvelopedInput):
    envelope = "user"

    username: Username
    email: Email
    password: Password  # type: ignore[valid-type]

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class UserLogin(EnvelopedInput):
    envelope = "user"

    email: text_field(254, min_length=1)  # type: ignore[valid-type]
    password: text_field(256, min_length=1)  # type: ignore[valid-type]


class UserUpdate(EnvelopedInput):
    """Only the fields given change; bio and image may be null (an empty string clears too)."""

    envelope = "user"

    email: Email = None  # type: ignore[assignment]
    username: Username = None  # type: ignore[assignment]
    password: Password = None  # type: ignore[valid-type, assignment]
    bio: Bio | None = None  # type: ignore[valid-type]
    image: ImageUrl | None = None  # type: ignore[valid-type]

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @field_validator("bio", "image")
    @classmethod
    def _empty_is_null(cls, value: str | None) -> str | None:
        return value or None

    def changes(self) -> dict[str, object]:
        return self.model_dump(include=self.model_fields_set)


class UserOut(BaseModel):
    email: str
    token: str
    username: str
    bio: str | None
    image: str | None


class UserEnvelope(BaseModel):
    user: UserOut


class SeedUserEnvelope(UserEnvelope):
    """The articles seed's register/login answer: the RealWorld user plus the bare token."""

    token: str


class ProfileOut(BaseModel):
    username: str
    bio: str | None
    image: str | None
    following: bool


class ProfileEnvelope(BaseModel):
    profile: ProfileOut


class MessageOut(BaseModel):
    message: str


def profile_out(user: User, following: bool) -> ProfileOut:
    return ProfileOut(username=user.username, bio=user.bio, image=user.image, following=following)
