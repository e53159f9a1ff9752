"""persistence._redis_direct: RESP packing (no I/O)."""

from __future__ import annotations

import pytest

from persistence._redis_direct import packed, sha1


def test_packed_is_resp_arrays_of_bulk_strings() -> None:
    assert packed("MGET", "a:{t}", b"\x00\r\n") == (
        b"*3\r\n$4\r\nMGET\r\n$5\r\na:{t}\r\n$3\r\n\x00\r\n\r\n"
    )
    assert (
        packed("EVALSHA", "ab", 2, -1)
        == b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n2\r\n$2\r\n-1\r\n"
    )
    assert packed("GET", "ü") == b"*2\r\n$3\r\nGET\r\n$2\r\n\xc3\xbc\r\n"  # UTF-8, length in bytes


@pytest.mark.parametrize("bad", [1.5, None, True, bytearray(b"x")])
def test_anything_else_is_refused(bad: object) -> None:
    with pytest.raises(TypeError):
        packed("SET", "k", bad)


def test_sha1_is_the_name_redis_gives_a_script() -> None:
    assert sha1("return 1") == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
