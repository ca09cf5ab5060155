"""Finding a row id inside a link's token, however it was encoded."""

from __future__ import annotations

import base64
import binascii
import struct
import zlib


def decodings(token: str) -> list[bytes]:
    """The token itself and every piece of it read as URL-safe base64, standard base64 or hex
    (itsdangerous tokens are base64 payloads and signatures joined by dots), and whatever of
    those decodes as zlib (itsdangerous compresses a payload when that makes it shorter)."""
    pieces = [token, *token.split("."), *token.split("/")]
    found = [piece.encode() for piece in pieces]
    for piece in pieces:
        padded = piece + "=" * (-len(piece) % 4)
        for decode in (base64.urlsafe_b64decode, base64.b64decode):
            try:
                found.append(decode(padded))
            except (binascii.Error, ValueError):
                continue
        try:
            found.append(bytes.fromhex(piece))
        except ValueError:
            pass
    for data in list(found):
        try:
            found.append(zlib.decompress(data))
        except zlib.error:
            continue
    return found


def spellings_of(number: int) -> list[bytes]:
    return [
        str(number).encode(),
        format(number, "x").encode(),
        format(number, "X").encode(),
        struct.pack(">I", number),
        struct.pack("<I", number),
    ]


def id_leaks(token: str, *numbers: int) -> list[tuple[int, bytes]]:
    """Each (id, spelling) found in the token. Ids of one digit are skipped: any random text
    would contain them by chance."""
    return [
        (number, spelling)
        for number in numbers
        if number > 9
        for spelling in spellings_of(number)
        if any(spelling in decoded for decoded in decodings(token))
    ]
