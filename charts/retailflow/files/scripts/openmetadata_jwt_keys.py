"""Turn the release's RSA key (PKCS#1 PEM, as Helm's genPrivateKey writes it) into the two DER files
OpenMetadata's server reads to sign and check its JWTs.

The server loads `rsaprivateKeyFilePath` with Java's PKCS8EncodedKeySpec and `rsapublicKeyFilePath`
with X509EncodedKeySpec (OpenMetadata's JWTTokenGenerator), so the files are a PKCS#8 private key and
an X.509 SubjectPublicKeyInfo, both DER. Helm templates can generate the key but not re-encode it, so
this runs in an init container of the server pod: standard library only, any Python 3 image.

Usage: openmetadata_jwt_keys.py PRIVATE_KEY_PEM OUT_DIR
"""

from __future__ import annotations

import base64
import pathlib
import sys

# AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }
RSA_ALGORITHM = bytes.fromhex("300d06092a864886f70d0101010500")


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _length(len(body)) + body


def _read(der: bytes, offset: int) -> tuple[int, bytes, int]:
    """(tag, body, offset after it) of the DER element at offset."""
    tag, first = der[offset], der[offset + 1]
    offset += 2
    if first & 0x80:
        count = first & 0x7F
        size = int.from_bytes(der[offset:offset + count], "big")
        offset += count
    else:
        size = first
    return tag, der[offset:offset + size], offset + size


def pkcs1_from_pem(pem: str) -> bytes:
    lines = [line.strip() for line in pem.strip().splitlines()]
    if lines[0] != "-----BEGIN RSA PRIVATE KEY-----" or lines[-1] != "-----END RSA PRIVATE KEY-----":
        raise ValueError("expected a PKCS#1 PEM RSA private key (-----BEGIN RSA PRIVATE KEY-----)")
    return base64.b64decode("".join(lines[1:-1]))


def convert(pkcs1: bytes) -> tuple[bytes, bytes]:
    """(PKCS#8 private key, X.509 SubjectPublicKeyInfo), both DER, of a PKCS#1 RSAPrivateKey."""
    tag, key, _ = _read(pkcs1, 0)
    if tag != 0x30:
        raise ValueError("not a DER SEQUENCE")
    _, _, offset = _read(key, 0)  # version
    tag_n, n, offset = _read(key, offset)
    tag_e, e, _ = _read(key, offset)
    if tag_n != 0x02 or tag_e != 0x02:
        raise ValueError("RSAPrivateKey without modulus and public exponent")
    private = _tlv(0x30, _tlv(0x02, b"\x00") + RSA_ALGORITHM + _tlv(0x04, pkcs1))
    rsa_public = _tlv(0x30, _tlv(0x02, n) + _tlv(0x02, e))
    public = _tlv(0x30, RSA_ALGORITHM + _tlv(0x03, b"\x00" + rsa_public))
    return private, public


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    private, public = convert(pkcs1_from_pem(pathlib.Path(argv[1]).read_text()))
    out = pathlib.Path(argv[2])
    (out / "private_key.der").write_bytes(private)
    (out / "public_key.der").write_bytes(public)
    print(f"openmetadata-jwt-keys: wrote {out}/private_key.der and {out}/public_key.der")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
