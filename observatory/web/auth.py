"""Probe credentials: a bearer token (stored only as its SHA-256) and a per-probe HMAC secret.

The token says who is uploading; the signature (hex HMAC-SHA256 of the raw request body with the probe's
secret) says the body is the one that probe sent. The secret has to be kept to check signatures; the token
never is, so a copy of the store cannot be used to upload as a probe without also forging signatures.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from observatory.errors import AuthError, ConfigError
from observatory.probe.upload import sign as upload_sign
from observatory.store.base import ProbeCredential, Store
from observatory.web.errors import Forbidden

SIGNATURE_HEADER = "X-Observatory-Signature"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# One definition of the signature, shared with the probe's uploader (docs/contracts.md).
sign = upload_sign


def create_probe(store: Store, name: str, *, country: str | None = None, asns: Sequence[int] = (),
                 relay: bool = False) -> dict[str, str]:
    """Registers a probe; returns its token and secret, shown once and never stored in the clear (the token).

    `country` and `asns` say where it measures from: its uploads claiming anywhere else are refused. A `relay`
    vouches for many probes (see ProbeCredential)."""
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise ConfigError(f"probe name {name!r}: use 1-100 printable characters")
    if any(p.name == name for p in store.probes()):
        raise ConfigError(f"a probe named {name!r} already exists (revoke it or choose another name)")
    if country is not None:
        country = country.strip().upper()
        if len(country) != 2 or not country.isascii() or not country.isalpha():
            raise ConfigError(f"country {country!r}: an ISO 3166-1 alpha-2 code like PK")
    if any(not 0 < a < 2**32 for a in asns):
        raise ConfigError(f"networks {list(asns)}: AS numbers between 1 and 4294967295")
    token = secrets.token_urlsafe(32)
    secret = secrets.token_urlsafe(32)
    store.add_probe(ProbeCredential(name=name, token_hash=hash_token(token), secret=secret,
                                    created=datetime.now(UTC), country=country,
                                    asns=tuple(sorted(set(asns))), relay=relay))
    return {"token": token, "secret": secret}


def authenticate(store: Store, authorization: str | None) -> ProbeCredential:
    """The probe behind an `Authorization: Bearer <token>` header; AuthError (401) otherwise."""
    if not authorization:
        raise AuthError("missing Authorization header: send 'Authorization: Bearer <probe token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization header must be 'Bearer <probe token>'")
    cred = store.probe_by_token_hash(hash_token(token.strip()))
    if cred is None:
        raise AuthError("unknown probe token")
    if cred.revoked:
        raise AuthError(f"probe token revoked (probe {cred.name!r})")
    return cred


def check_signature(cred: ProbeCredential, body: bytes, signature: str | None) -> None:
    """Raises Forbidden (403) unless `signature` is the body's HMAC with this probe's secret."""
    if not signature:
        raise Forbidden(f"missing {SIGNATURE_HEADER} header: hex HMAC-SHA256 of the body with the probe's secret")
    if not hmac.compare_digest(sign(body, cred.secret), signature.strip().lower()):
        raise Forbidden(f"bad {SIGNATURE_HEADER}: the body was not signed with this probe's secret")
