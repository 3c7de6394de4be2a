"""Pages of the run and evaluation lists: `limit` (at most MAX_LIMIT) and `offset`, newest first.

The body stays a plain JSON list; when more items follow, a `Link: <...>; rel="next"` header gives the
next page's URL (as GitHub's API does), so clients that read the first page only keep working.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response

DEFAULT_LIMIT = 100
MAX_LIMIT = 500

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"items per page (at most {MAX_LIMIT})")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="items to skip (newest first); the "
                              "`Link: rel=\"next\"` header carries the next page's")]


def link_next(request: Request, response: Response, *, limit: int, offset: int, more: bool) -> None:
    """Set the `Link` header to the next page when `more` items follow this one."""
    if more:
        url = request.url.include_query_params(limit=limit, offset=offset + limit)
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
