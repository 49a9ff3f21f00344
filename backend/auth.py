"""Optional bearer-token authentication.

With ``TOROID_API_TOKEN`` unset (the default for a local ``toroid up``) every route is open. With it set, every
mutating route (POST, DELETE) needs ``Authorization: Bearer <token>`` and answers 401 otherwise; reads (GET) stay
public unless ``TOROID_PUBLIC_READS=false``. ``/api/health`` and the OpenAPI docs are always public, so process
supervisors and load balancers can probe the service.
"""

from __future__ import annotations

import hmac

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from toroid.store.settings import Settings, get_settings

_bearer = HTTPBearer(auto_error=False, description="The value of TOROID_API_TOKEN, when the server sets one.")


def _check(credentials: HTTPAuthorizationCredentials | None, token: str, what: str) -> None:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"{what} needs an API token: send the header 'Authorization: Bearer <TOROID_API_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "the API token is wrong: use the value of TOROID_API_TOKEN the server was started with",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_write(
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    settings: Settings = Depends(get_settings),
) -> None:
    """Dependency of mutating routes: the bearer token when ``TOROID_API_TOKEN`` is set."""
    if settings.api_token:
        _check(credentials, settings.api_token, "this request changes data and")


def require_read(
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    settings: Settings = Depends(get_settings),
) -> None:
    """Dependency of read routes: the bearer token when ``TOROID_API_TOKEN`` is set and public reads are off."""
    if settings.api_token and not settings.public_reads:
        _check(credentials, settings.api_token, "reads are private on this server (TOROID_PUBLIC_READS=false), so it")
