"""Authentication: who is asking (``toroid.store.users.Principal``), and whether they may.

With ``TOROID_API_TOKEN`` unset (the default for a local ``toroid up``) authentication is off: every request may do
everything. With it set, every mutating route (POST, DELETE) needs ``Authorization: Bearer <token>``, either that
admin token or a user's token (``toroid users add NAME``), and answers 401 otherwise; reads (GET) stay public
unless ``TOROID_PUBLIC_READS=false``. ``/api/health`` and the OpenAPI docs are always public, so process supervisors
and load balancers can probe the service. A user may delete or cancel only what they own; an admin may do all.
The dashboard signs in with the same tokens (``/login``) and acts with its user's token, never the server's.
"""

from __future__ import annotations

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from toroid.store.settings import get_settings
from toroid.store.users import Principal, authenticate

bearer_scheme = HTTPBearer(auto_error=False,
                           description="TOROID_API_TOKEN (admin) or a user's token, when the server sets one.")


#: The dashboard's session cookie (HttpOnly, SameSite=Strict; set by POST /login): the user's token. The API takes
#: it for reads only (GET, HEAD: a browser's download link), so a cross-site form can never mutate with it.
SESSION_COOKIE = "toroid_session"


def request_token(request: Request, credentials: HTTPAuthorizationCredentials | None = None) -> str | None:
    """The bearer token of a request, else (reads only) the session cookie's."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        return credentials.credentials
    if request.method in ("GET", "HEAD"):
        return request.cookies.get(SESSION_COOKIE) or None
    return None


def _principal(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    token = request_token(request, credentials)
    principal = authenticate(token)
    if token and principal.anonymous:
        raise _unauthorized("the API token is wrong: use TOROID_API_TOKEN (admin) or the token `toroid users add` "
                            "printed")
    return principal


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


def require_write(request: Request,
                  credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)) -> Principal:
    """Dependency of mutating routes: a valid token when the server has one; returns who asks."""
    principal = _principal(request, credentials)
    if principal.anonymous:
        raise _unauthorized("this request changes data and needs an API token: send 'Authorization: Bearer "
                            "<token>' (TOROID_API_TOKEN, or a user's token from `toroid users add`)")
    return principal


def require_read(request: Request,
                 credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)) -> Principal:
    """Dependency of read routes: a valid token when the server has one and public reads are off."""
    principal = _principal(request, credentials)
    if principal.anonymous and not get_settings().public_reads:
        raise _unauthorized("reads are private on this server (TOROID_PUBLIC_READS=false), so it needs an API "
                            "token: send 'Authorization: Bearer <token>'")
    return principal
