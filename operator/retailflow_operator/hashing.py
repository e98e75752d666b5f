"""Hashes and the secret parts of a configuration: what Airbyte masks, and the digests a status keeps
instead of values."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Mapping

# Airbyte masks these in every GET/list answer; they are compared through hashes only.
SECRET_MARKERS = ("password", "secret", "token")
SECRET_KEYS = {"access_key_id", "aws_access_key_id"}


def is_secret_key(key: str) -> bool:
    low = key.lower()
    return low in SECRET_KEYS or any(marker in low for marker in SECRET_MARKERS)


def strip_secrets(value: Any) -> Any:
    """The part of a configuration Airbyte returns unmasked."""
    if isinstance(value, Mapping):
        return {k: strip_secrets(v) for k, v in value.items() if not is_secret_key(k)}
    if isinstance(value, list):
        return [strip_secrets(v) for v in value]
    return value


def secret_material(value: Any, path: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value, Mapping):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else k
            if is_secret_key(k):
                out[sub] = v
            else:
                out.update(secret_material(v, sub))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.update(secret_material(v, f"{path}[{i}]"))
    return out


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def digest(value: Any, salt: str = "") -> str:
    return hashlib.sha256((salt + canonical(value)).encode()).hexdigest()


def keyed_digest(key: bytes, value: Any, context: str) -> str:
    """HMAC-SHA256 of ``value`` under a key only the operator holds: without the key, a hash in a
    status cannot be checked against guessed passwords."""
    return hmac.new(key, f"{context}\n{canonical(value)}".encode(), hashlib.sha256).hexdigest()
