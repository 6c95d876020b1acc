#!/usr/bin/env python3
"""Checks docs/vectors/*.json with code that shares nothing with chainiac's Rust crates.

Ed25519 signatures are verified by the `cryptography` package (OpenSSL); the aggregate keys
are recomputed as sums of the roster keys with the reference point arithmetic of RFC 8032,
section 6. Exit status 0 when every vector checks out.
"""

import json
import pathlib
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

P = 2**255 - 19
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def decompress(encoded: bytes):
    y = int.from_bytes(encoded, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:
        raise ValueError("non-canonical y")
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        if sign:
            raise ValueError("invalid point")
        return (0, y, 1, 0)
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        raise ValueError("not on the curve")
    if (x & 1) != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def add(p, q):
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def compress(p) -> bytes:
    z_inv = pow(p[2], P - 2, P)
    x, y = p[0] * z_inv % P, p[1] * z_inv % P
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


def verify(key: bytes, message: bytes, signature: bytes) -> None:
    Ed25519PublicKey.from_public_bytes(key).verify(signature, message)


def check_cosi(vectors) -> int:
    for case in vectors["cases"]:
        total = (0, 1, 1, 0)
        for index in case["participants"]:
            total = add(total, decompress(bytes.fromhex(case["roster"][index])))
        aggregate = bytes.fromhex(case["aggregate_public_key"])
        if compress(total) != aggregate:
            raise SystemExit(f"{case['name']}: aggregate key is not the sum of the participants' keys")
        verify(aggregate, bytes.fromhex(case["message"]), bytes.fromhex(case["signature"]))
        try:
            verify(aggregate, bytes.fromhex(case["message"]) + b"\0", bytes.fromhex(case["signature"]))
        except InvalidSignature:
            pass
        else:
            raise SystemExit(f"{case['name']}: signature verifies for another message")
    return len(vectors["cases"])


def check_skipchain(vectors) -> int:
    for link in vectors["forward_links"]:
        verify(
            bytes.fromhex(link["aggregate_public_key"]),
            bytes.fromhex(link["message"]),
            bytes.fromhex(link["signature"]),
        )
    return len(vectors["forward_links"])


def main() -> None:
    folder = pathlib.Path(__file__).resolve().parent
    cosi = check_cosi(json.loads((folder / "cosi.json").read_text()))
    links = check_skipchain(json.loads((folder / "skipchain.json").read_text()))
    print(f"vectors: {cosi} collective signatures and {links} forward links verified with OpenSSL Ed25519")


if __name__ == "__main__":
    try:
        main()
    except InvalidSignature:
        sys.exit("a vector signature does not verify")
