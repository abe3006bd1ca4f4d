"""User tokens for the example gateway: HMAC-SHA256-signed, so the gateway
learns who the user is from a signature it can check, never from the text
of an ID the client sends.

    token = base64url(json {"t": tenant, "u": user_id, "exp": unix_seconds})
            + "." + base64url(HMAC-SHA256(secret, first part))

    python3 tokens.py --secret-file SECRET mint --tenant acme --user alice
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import time
from typing import Optional, Tuple

MAX_TOKEN_BYTES = 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint(secret: bytes, tenant: str, user_id: str,
         ttl_seconds: int = 3600) -> str:
    payload = _b64(json.dumps(
        {"t": tenant, "u": user_id, "exp": int(time.time()) + ttl_seconds},
        separators=(",", ":")).encode())
    signature = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return payload + "." + _b64(signature)


def verify(secret: bytes, token: str) -> Optional[Tuple[str, str]]:
    """(tenant, user_id) of a genuine, unexpired token; None otherwise."""
    if not token or len(token) > MAX_TOKEN_BYTES or token.count(".") != 1:
        return None
    payload, signature = token.split(".")
    expected = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(_unb64(signature), expected):
            return None
        claims = json.loads(_unb64(payload))
    except (ValueError, TypeError):
        return None
    if not isinstance(claims, dict):
        return None
    tenant, user_id, expiry = claims.get("t"), claims.get("u"), claims.get(
        "exp")
    if not (isinstance(tenant, str) and isinstance(user_id, str) and tenant
            and user_id and isinstance(expiry, int)):
        return None
    if expiry < time.time():
        return None
    return tenant, user_id


def read_secret(path: str) -> bytes:
    with open(path, "rb") as f:
        secret = f.read().strip()
    if len(secret) < 16:
        raise SystemExit(f"{path}: the token secret needs at least 16 bytes")
    return secret


def main() -> None:
    parser = argparse.ArgumentParser(description="Mint a gateway token")
    parser.add_argument("--secret-file", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    minting = sub.add_parser("mint")
    minting.add_argument("--tenant", required=True)
    minting.add_argument("--user", required=True)
    minting.add_argument("--ttl", type=int, default=3600)
    args = parser.parse_args()
    print(mint(read_secret(args.secret_file), args.tenant, args.user,
               args.ttl))


if __name__ == "__main__":
    main()
