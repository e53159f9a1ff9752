"""The stores section: ``stores/<store name>.json``, one JSON object of keys and values.

Keys are sorted and the JSON indented, so an export reviews well in git. Importing adds
missing stores and keys, rewrites nothing that is equal, and raises ConflictError when a
key exists with another value (the unit of work then rolls everything back).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from persistence.codecs import validate_json
from persistence.errors import ConflictError, InvalidInputError
from persistence.stores import validate_key
from persistence.transfer._core import all_pages
from persistence.transfer._files import SectionReader, SectionWriter
from persistence.validation import validate_slug

if TYPE_CHECKING:
    from persistence.uow import UnitOfWork

__all__ = ["SECTION", "StoresSection"]

SUFFIX = ".json"
_MISSING = object()


def _canonical(value: Any) -> bytes:
    # Sorted keys: key order is not content. Types stay distinct (1, 1.0 and true differ).
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _digests(stores: dict[str, dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, items in stores.items():
        out[name] = "store"  # an empty store is still an object of the scope
        for key, value in items.items():
            out[f"{name}/{key}"] = hashlib.sha256(_canonical(value)).hexdigest()
    return out


def _database(uow: UnitOfWork) -> dict[str, dict[str, Any]]:
    return {
        record.name: dict(uow.store(record.name).items()) for record in all_pages(uow.list_stores)
    }


@dataclass(frozen=True)
class StoresSection:
    name: str = "stores"

    def export(self, uow: UnitOfWork, out: SectionWriter) -> None:
        for name, items in _database(uow).items():
            out.write_json((name + SUFFIX,), items)

    def read(self, src: SectionReader) -> dict[str, dict[str, Any]]:
        stores: dict[str, dict[str, Any]] = {}
        for parts in src.files():
            if len(parts) != 1 or not parts[0].endswith(SUFFIX):
                raise src.fail(parts, "unexpected file (want <store name>.json)")
            data = src.read_json(parts)
            try:
                name = validate_slug(parts[0][: -len(SUFFIX)], what="store name")
                if not isinstance(data, dict):
                    raise InvalidInputError("a store file holds one JSON object")
                for key, value in data.items():
                    validate_key(key)
                    validate_json(value, what=f"value of key {key!r}")
            except InvalidInputError as exc:
                raise src.fail(parts, str(exc)) from None
            stores[name] = data
        return stores

    def apply(self, uow: UnitOfWork, validated: Any) -> int:
        written = 0
        for name, items in validated.items():
            store = uow.store(name)
            if not items:
                with store.transaction(lock=True):  # creates the (empty) store
                    pass
            for key, value in items.items():
                current = store.get(key, _MISSING)
                if current is _MISSING:
                    store[key] = value
                    written += 1
                elif _canonical(current) != _canonical(value):
                    raise ConflictError(
                        f"store {name!r} key {key!r} holds another value than the import"
                    )
        return written

    def digests(self, validated: Any) -> dict[str, str]:
        return _digests(validated)

    def database_digests(self, uow: UnitOfWork) -> dict[str, str]:
        return _digests(_database(uow))


SECTION = StoresSection()
