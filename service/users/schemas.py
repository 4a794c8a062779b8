from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, EmailStr, Field, field_validator

from service.fields import text_field
from service.realworld import EnvelopedInput

Username = Annotated[
    str, Field(strict=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
]
# email-validator takes internationalised addresses (`a@例え.jp`): the JSON Schema format
# for those is idn-email; "email" would call them invalid.
Email = Annotated[EmailStr, Field(json_schema_extra={"format": "idn-email"})]
Password = text_field(256, min_length=8)
Bio = text_field(10_000)
ImageUrl = text_field(2048)


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
