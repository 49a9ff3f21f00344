"""Who am I (GET /api/session), and the dashboard's sign-in: GET/POST /login, POST /logout.

The sign-in page takes a token (``TOROID_API_TOKEN`` for the admin, or a user's from ``toroid users add``) and
keeps it in an HttpOnly, SameSite=Strict cookie (Secure when the page was served over https). The dashboard's
callbacks then call the API with that user's token; the server's own token is never used for a browser.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from toroid.backend.auth import SESSION_COOKIE, bearer_scheme, request_token
from toroid.store.settings import get_settings
from toroid.store.users import authenticate

router = APIRouter(tags=["session"])
pages = APIRouter(include_in_schema=False)

#: A sign-in form is a token and a few bytes of form encoding; anything larger is not one.
MAX_FORM_BYTES = 4096
COOKIE_MAX_AGE_S = 7 * 24 * 3600


@router.get("/session", summary="Who this request acts as, and whether the server needs tokens")
def session(request: Request, credentials=Depends(bearer_scheme)) -> dict:
    principal = authenticate(request_token(request, credentials))
    settings = get_settings()
    return {"auth": bool(settings.api_token), "public_reads": settings.public_reads,
            "user": principal.name, "role": principal.role}


def _page(message: str = "", status_code: int = 200) -> HTMLResponse:
    note = f'<p class="error">{html.escape(message)}</p>' if message else ""
    return HTMLResponse(status_code=status_code, headers={"Cache-Control": "no-store"}, content=f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Toroid: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; background: #f3f4f8; margin: 0; display: grid; place-items: center;
       min-height: 100vh; color: #1c2230; }}
form {{ background: #fff; padding: 32px 36px; border-radius: 10px; box-shadow: 0 1px 4px rgba(0,0,0,.08);
       width: 380px; }}
h1 {{ margin: 0 0 4px; font-size: 24px; }} p {{ color: #5b6475; font-size: 14px; }}
label {{ display: block; font-size: 13px; margin: 18px 0 6px; }}
input {{ width: 100%; box-sizing: border-box; padding: 9px 10px; border: 1px solid #c9cfdb; border-radius: 6px;
        font-size: 14px; }}
button {{ margin-top: 18px; background: #3366d6; color: #fff; border: 0; border-radius: 6px; padding: 9px 18px;
         font-size: 14px; font-weight: 600; cursor: pointer; }}
.error {{ color: #b3261e; }}
</style></head><body>
<form method="post" action="/login">
<h1>Toroid</h1><p>This server needs a token: the admin's (TOROID_API_TOKEN) or the one
<code>toroid users add NAME</code> printed for you.</p>{note}
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form></body></html>""")


@pages.get("/login")
def login_page() -> HTMLResponse:
    return _page()


@pages.post("/login")
async def login(request: Request):
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return _page("That is not a token (too long).", 413)
    token = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0].strip()
    principal = authenticate(token)
    if not get_settings().api_token:
        return RedirectResponse("/dashboard/", status_code=303)  # no tokens on this server: nothing to sign in to
    if principal.anonymous:
        return _page("That token is not valid on this server.", 401)
    response = RedirectResponse("/dashboard/", status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=COOKIE_MAX_AGE_S, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


@pages.post("/logout")
def logout() -> RedirectResponse:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
