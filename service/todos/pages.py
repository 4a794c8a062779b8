"""The HTML todo page (todo seed): server-rendered, works without JavaScript."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, current_app, redirect, render_template, request
from quart_schema import DataSource, document_response, hide, validate_request

from service.csrf import csrf_protect, csrf_token, set_csrf_cookie
from service.db import get_session
from service.exports import queries as export_queries
from service.exports.clients import client_key
from service.exports.life import stale_after_seconds, start_export
from service.exports.schemas import export_out
from service.exports.status import no_worker_notice
from service.fields import text_field
from service.openapi import SeeOther
from service.todos import queries
from service.todos.lookups import find_todo
from service.todos.page_errors import error_as_html

blueprint = Blueprint("pages", __name__)
PAGE_SIZE = 50  # todos per page of the list
# The page loads its script and stylesheet from /static and has no inline script or style
# (a nonce would be needed for one), fetches only its own origin, posts its forms only to
# itself, and may not be framed (clickjacking).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP level 2
    "Referrer-Policy": "same-origin",
}


class PageForm(BaseModel):
    """The fields every form of the page carries."""

    model_config = ConfigDict(extra="ignore")

    csrf_token: str | None = Field(default=None, max_length=128)
    # The list page the form was on, to return to it (toggle and delete).
    page: int = Field(default=1, ge=1, le=10**9)


class AddForm(PageForm):
    task: text_field(500, min_length=1)  # type: ignore[valid-type]


class ExportForm(PageForm):
    format: str = Field(default="csv", pattern="^(csv|json)$")


@blueprint.after_request
async def add_security_headers(response: Response) -> Response:
    """On the page, its redirects and its errors alike (an HTML error page for browsers)."""
    response = await error_as_html(response)
    response.headers.update(PAGE_SECURITY_HEADERS)
    return response


def back_to_page(query: str = "") -> Response:
    return redirect(f"/{query}", code=303)  # type: ignore[return-value]


def back_to_list_page(page: int) -> Response:
    return back_to_page(f"?page={page}" if page > 1 else "")


def clamp_page(requested: int | None, total: int) -> tuple[int, int]:
    """(the page to show, the number of pages): a page number that is not one, or is out of
    range, shows the nearest page rather than an error (a todo deleted from the last page
    can leave it empty)."""
    pages = max(1, -(-total // PAGE_SIZE))
    return min(max(requested or 1, 1), pages), pages


@blueprint.get("/")
@hide
async def index() -> Response:
    session = get_session()
    total = await queries.count_todos(session)
    page, pages = clamp_page(request.args.get("page", type=int), total)
    todos = await queries.list_todos_newest_first(
        session, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    export = None
    export_id = request.args.get("export")
    if export_id:
        found = await export_queries.get_export(session, export_id)
    else:  # this client's pending export, if any: the page follows it, Export disabled
        pending = await export_queries.list_pending_exports(
            session,
            await client_key(),
            newer_than_seconds=stale_after_seconds(current_app.extensions["settings"]),
        )
        found = pending[-1] if pending else None
    if found is not None:
        export = export_out(found, notice=await no_worker_notice(found))
    html = await render_template(
        "index.html",
        todos=todos,
        total=total,
        page=page,
        pages=pages,
        export=export,
        csrf_token=csrf_token(),
    )
    return set_csrf_cookie(Response(html, content_type="text/html; charset=utf-8"))


@blueprint.post("/add")
@document_response(SeeOther, 303)
@csrf_protect
@validate_request(AddForm, source=DataSource.FORM)
async def add(data: AddForm) -> Response:
    session = get_session()
    await queries.create_todo(session, data.task)
    await session.commit()
    return back_to_page()


@blueprint.post("/todos/<id:todo_id>/toggle")
@document_response(SeeOther, 303)
@csrf_protect
@validate_request(PageForm, source=DataSource.FORM)
async def toggle(todo_id: int, data: PageForm) -> Response:
    session = get_session()
    todo = await find_todo(todo_id)
    await queries.update_todo(session, todo, done=not todo.done)
    await session.commit()
    return back_to_list_page(data.page)


@blueprint.post("/todos/<id:todo_id>/delete")
@document_response(SeeOther, 303)
@csrf_protect
@validate_request(PageForm, source=DataSource.FORM)
async def delete(todo_id: int, data: PageForm) -> Response:
    session = get_session()
    await queries.delete_todo(session, await find_todo(todo_id))
    await session.commit()
    return back_to_list_page(data.page)


@blueprint.post("/export/start")
@document_response(SeeOther, 303)
@csrf_protect
@validate_request(ExportForm, source=DataSource.FORM)
async def export(data: ExportForm) -> Response:
    settings = current_app.extensions["settings"]
    started = await start_export(
        get_session(), data.format, client_key=await client_key(), settings=settings
    )
    return back_to_page(f"?export={started.id}")
