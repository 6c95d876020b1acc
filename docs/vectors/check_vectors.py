#!/usr/bin/env python3
"""Checks docs/vectors/*.json with code that shares nothing with chainiac's Rust crates.

Ed25519 signatures are verified by the `cryptography` package (OpenSSL); the aggregate keys
are recomputed as sums of the roster keys with the reference point arithmetic of RFC 8032,
section 6. For objects.json, digests are recomputed with the `blake3` package from the context
strings of protocol §2, inclusion proofs walked as §8 describes, and the anchor calldata built
from its fields. Exit status 0 when every vector checks out.
"""

import json
import pathlib
import struct
import sys

import blake3

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


def derive_key(context: str, data: bytes) -> bytes:
    return blake3.blake3(data, derive_key_context=context).digest()


def key_signatures(data: bytes, offset: int):
    """The `list<key signature>` at `offset`: (key, signature) pairs and the offset after it."""
    (count,) = struct.unpack_from("<I", data, offset)
    offset += 4
    pairs = []
    for _ in range(count):
        pairs.append((data[offset : offset + 32], data[offset + 32 : offset + 96]))
        offset += 96
    return pairs, offset


def signatures_verify(pairs, digest: bytes) -> bool:
    try:
        for key, signature in pairs:
            verify(key, digest, signature)
    except InvalidSignature:
        return False
    return True


def inclusion_proof_verifies(proof: bytes, root: bytes, chain_id: bytes, head: bytes, leaf_count: int) -> bool:
    if proof[0] != 1:
        return False
    index, count, siblings = struct.unpack_from("<QQI", proof, 1)
    hashes = [proof[21 + 32 * i : 53 + 32 * i] for i in range(siblings)]
    if len(proof) != 21 + 32 * siblings or count != leaf_count or index >= count:
        return False
    h = derive_key("chainiac v1 timeline leaf", chain_id + head)
    used = 0
    while count > 1:
        if index % 2 == 1:
            if used == len(hashes):
                return False
            h = derive_key("chainiac v1 timeline node", hashes[used] + h)
            used += 1
        elif index + 1 < count:
            if used == len(hashes):
                return False
            h = derive_key("chainiac v1 timeline node", h + hashes[used])
            used += 1
        index //= 2
        count = (count + 1) // 2
    return used == len(hashes) and h == root


def check_objects(vectors) -> int:
    checked = 0
    for case in vectors["policies"]:
        policy = bytes.fromhex(case["policy"])
        signed = bytes.fromhex(case["signed_policy"])
        if signed[:1] != b"\x01" or signed[1 : 1 + len(policy)] != policy:
            raise SystemExit(f"policy {case['name']}: the signed policy does not start with the policy")
        digest = derive_key("chainiac v1 policy", policy)
        if digest.hex() != case["policy_digest"]:
            raise SystemExit(f"policy {case['name']}: digest mismatch")
        pairs, end = key_signatures(signed, 1 + len(policy))
        if end != len(signed):
            raise SystemExit(f"policy {case['name']}: trailing bytes")
        if case["valid"] and not signatures_verify(pairs, digest):
            raise SystemExit(f"policy {case['name']}: a signature does not verify")
        checked += 1
    for case in vectors["releases"]:
        manifest = bytes.fromhex(case["manifest"])
        release = bytes.fromhex(case["release"])
        digest = derive_key("chainiac v1 release manifest", manifest)
        if digest.hex() != case["manifest_digest"]:
            raise SystemExit(f"release {case['name']}: manifest digest mismatch")
        if release[1 : 1 + len(manifest)] == manifest:
            pairs, _ = key_signatures(release, 1 + len(manifest))
            ok = signatures_verify(pairs, digest)
        else:
            ok = False
        if case["valid"] and not ok:
            raise SystemExit(f"release {case['name']}: a developer signature does not verify")
        checked += 1
    for case in vectors["inclusion_proofs"]:
        ok = inclusion_proof_verifies(
            bytes.fromhex(case["proof"]),
            bytes.fromhex(case["root"]),
            bytes.fromhex(case["chain_id"]),
            bytes.fromhex(case["head"]),
            case["leaf_count"],
        )
        if ok != case["valid"]:
            raise SystemExit(f"inclusion proof over {case['leaf_count']} leaves: expected valid={case['valid']}")
        checked += 1
    for case in vectors["anchor_calldata"]:
        expected = (
            b"chainiac anchor1"
            + bytes.fromhex(case["timeline"])
            + struct.pack(">Q", case["index"])
            + bytes.fromhex(case["timeline_block"])
        )
        if (bytes.fromhex(case["calldata"]) == expected) != case["valid"]:
            raise SystemExit(f"anchor {case['name']}: expected valid={case['valid']}")
        checked += 1
    return checked


def main() -> None:
    folder = pathlib.Path(__file__).resolve().parent
    cosi = check_cosi(json.loads((folder / "cosi.json").read_text()))
    links = check_skipchain(json.loads((folder / "skipchain.json").read_text()))
    objects = check_objects(json.loads((folder / "objects.json").read_text()))
    print(
        f"vectors: {cosi} collective signatures and {links} forward links verified with OpenSSL Ed25519; "
        f"{objects} object cases (policies, releases, inclusion proofs, anchor calldata) checked"
    )


if __name__ == "__main__":
    try:
        main()
    except InvalidSignature:
        sys.exit("a vector signature does not verify")
