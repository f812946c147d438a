"""Where stores live: resolving the root, and turning names into file names.

A store name or a dataset id can be any string, but a file name cannot: Windows
forbids ``:`` and names like ``CON``, macOS and Windows fold case, macOS may
normalise Unicode, and every system limits a name to 255 bytes. So each name is
percent-encoded into a small alphabet (lowercase ASCII letters, digits, ``-``,
``_``; every other byte as ``%XX`` with upper-case hex). The encoding is
reversible, and two names that differ in any way, case or normalisation
included, give file names that differ on every filesystem. A name whose
encoding would be too long is cut and followed by ``~`` and a hash; the exact
name is always also recorded inside the store file.
"""

from __future__ import annotations

import os

__all__ = [
    "GLOBAL_CONTEXT_DIR",
    "ROOT_ENV_VAR",
    "decode_name",
    "encode_name",
    "resolve_root",
]

#: The environment variable that names the root when ``root=`` is not given.
ROOT_ENV_VAR = "LOCALSTORE_ROOT"

#: The directory of the global context; ``@`` never appears in an encoded name.
GLOBAL_CONTEXT_DIR = "@global"

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_MAX_ENCODED = 120
_HASH_CHARS = 32
_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"com{i}" for i in range(10)]
    + [f"lpt{i}" for i in range(10)]
)


def resolve_root(root: str | os.PathLike[str] | None) -> tuple[str, str]:
    """Return the absolute root directory and where it came from.

    The source is ``"argument"``, ``"environment"`` (``$LOCALSTORE_ROOT``, where an
    empty or blank value counts as unset) or ``"default"`` (the user data directory that
    platformdirs gives for "localstore"). ``~`` is expanded in the first two.
    """
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            from .errors import ArgumentTypeError

            raise ArgumentTypeError(
                f"root must be a str or a path, not {type(root).__name__} ({root!r})"
            )
        path, source = os.fspath(root), "argument"
        if not path.strip():
            from .errors import InvalidArgumentError

            raise InvalidArgumentError(f"root must not be an empty path ({root!r})")
    elif os.environ.get(ROOT_ENV_VAR, "").strip():
        path, source = os.environ[ROOT_ENV_VAR], "environment"
    else:
        import platformdirs  # imported late: it costs milliseconds at start-up

        path, source = (
            platformdirs.user_data_dir("localstore", appauthor=False),
            "default",
        )
    return os.path.abspath(os.path.expanduser(path)), source


def encode_name(name: str) -> str:
    """Return the file-name form of ``name`` (see the module docstring)."""
    if name.isascii() and name.islower() and name.isidentifier():
        encoded = name  # the common case: nothing to escape
    else:
        encoded = "".join(
            chr(byte) if chr(byte) in _SAFE else f"%{byte:02X}"
            for byte in name.encode("utf-8")
        )
    if encoded in _RESERVED:
        encoded = f"%{ord(encoded[0]):02X}{encoded[1:]}"
    if len(encoded) > _MAX_ENCODED:
        import hashlib

        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_HASH_CHARS]
        head = encoded[: _MAX_ENCODED - _HASH_CHARS - 1]
        cut = head.find("%", len(head) - 2)  # keep no half of a %XX escape
        encoded = f"{head if cut == -1 else head[:cut]}~{digest}"
    return encoded


def decode_name(encoded: str) -> str | None:
    """Return the name that :func:`encode_name` turned into ``encoded``.

    Returns ``None`` for a hashed (shortened) name, whose exact form is only kept
    inside its file, and for a string that no name encodes to.
    """
    if "~" in encoded:
        return None
    try:
        raw = bytearray()
        index = 0
        while index < len(encoded):
            char = encoded[index]
            if char == "%":
                raw.append(int(encoded[index + 1 : index + 3], 16))
                index += 3
            elif char in _SAFE:
                raw.append(ord(char))
                index += 1
            else:
                return None
        name = raw.decode("utf-8")
    except (ValueError, IndexError):
        return None
    return name if encode_name(name) == encoded else None
