"""Reading plain-data pickles, such as the RefCOCO ``refs(<splitBy>).p`` files, without running any of their code.

The refer API (LISA ``utils/refer.py``) loads ``refs(unc).p`` with a bare ``pickle.load``, which runs whatever the
file names. ``load_plain`` uses an unpickler whose ``find_class`` refuses every global, so only what the pickle
opcodes build by themselves can come out: dicts, lists, tuples, sets, strings, bytes, ints, floats, bools and None.
A file that names a function or a class (``os.system``, ``builtins.eval``, ``subprocess.Popen``, even
``collections.OrderedDict``) is refused before anything is called, with an ``UnsafePickleError`` naming it.

The RefCOCO files were written by Python 2's cPickle (protocol 2). There a ``str`` is a byte string (opcodes
``SHORT_BINSTRING``/``BINSTRING``) and a ``unicode`` is text (``BINUNICODE``). Python 3's default
``encoding="ASCII"`` fails on a non-ASCII byte string and ``"latin1"`` silently garbles UTF-8 text, so the pickle is
read with ``encoding="bytes"`` and every byte string (dict keys included) is then decoded as UTF-8, or as Latin-1
where it is not valid UTF-8 (Latin-1 maps every byte, so this never fails).
"""

import io
import os
import pickle
from typing import IO, Any

# What the pickle machine can build without a global (protocol 0-5 opcodes, pickletools.opcodes).
_PLAIN_TYPES = (dict, list, tuple, set, frozenset, str, bytes, bytearray, int, float, bool, type(None))


class UnsafePickleError(ValueError):
    """A pickle that asks for a global (a function or class) or a persistent id: refused, nothing was run."""


class _PlainUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that cannot look up any global: the allow-list is empty."""

    def find_class(self, module: str, name: str) -> Any:
        # Called for GLOBAL, STACK_GLOBAL, INST, OBJ targets and the EXT* extension codes alike.
        raise UnsafePickleError(
            f"pickle refers to the global {module}.{name}; only plain data (containers, strings, numbers) is allowed"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"pickle holds a persistent id {str(pid)[:80]!r}; only plain data is allowed")


def load_plain(file_or_bytes: bytes | bytearray | memoryview | str | os.PathLike | IO[bytes]) -> Any:
    """Unpickle plain data only, turning Python 2 byte strings into ``str``.

    Args:
        file_or_bytes: the pickle's bytes, a path to it, or a binary file object.

    Returns:
        The object, built from dicts, lists, tuples, sets, ``str``, ints, floats, bools and None; every byte
        string decoded as UTF-8 (Latin-1 where it is not UTF-8). Shared sub-objects stay shared.

    Raises:
        UnsafePickleError: the pickle names a global or a persistent id (the message names it).
        ValueError: not a readable pickle (truncated, corrupt, or a structure that refers to itself); a path in the
            message when one was given.
    """
    where = ""
    if isinstance(file_or_bytes, (str, os.PathLike)):
        where = f"{os.fspath(file_or_bytes)}: "
        with open(file_or_bytes, "rb") as f:
            return _load(f, where)
    if isinstance(file_or_bytes, (bytes, bytearray, memoryview)):
        return _load(io.BytesIO(bytes(file_or_bytes)), where)
    return _load(file_or_bytes, where)


def _load(f: IO[bytes], where: str) -> Any:
    try:
        raw = _PlainUnpickler(f, encoding="bytes").load()
    except UnsafePickleError as error:
        raise UnsafePickleError(f"{where}{error}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError) as error:
        # A crafted opcode stream can raise almost anything; none of it is a usable file.
        raise ValueError(f"{where}not a readable plain pickle ({type(error).__name__}: {error})") from None
    except (RecursionError, MemoryError, OverflowError) as error:
        raise ValueError(f"{where}pickle too deep or too large ({type(error).__name__})") from None
    try:
        return _decoded(raw, {}, set())
    except RecursionError:
        raise ValueError(f"{where}pickle nests too deeply") from None
    except ValueError as error:
        raise ValueError(f"{where}{error}") from None


def _decoded(value: Any, done: dict[int, Any], active: set[int]) -> Any:
    """``value`` with byte strings as ``str``; ``done`` keeps shared sub-objects shared (and the walk linear)."""
    if not isinstance(value, _PLAIN_TYPES):  # unreachable without a global; a second line of defence
        raise UnsafePickleError(f"pickle built a {type(value).__name__}, which is not plain data")
    if isinstance(value, (bytes, bytearray)):
        return _text(bytes(value))
    if isinstance(value, (str, int, float, type(None))):  # bool is an int
        return value
    ident = id(value)
    if ident in done:
        return done[ident]
    if ident in active:
        raise ValueError(f"the pickled {type(value).__name__} contains itself")
    active.add(ident)
    if isinstance(value, dict):
        out: Any = {}
        for key, item in value.items():
            text_key = _decoded(key, done, active)
            if text_key in out:
                raise ValueError(f"two dict keys decode to the same string {text_key!r}")
            out[text_key] = _decoded(item, done, active)
    elif isinstance(value, list):
        out = [_decoded(item, done, active) for item in value]
    else:  # tuple, set, frozenset keep their type
        out = type(value)(_decoded(item, done, active) for item in value)
    active.discard(ident)
    done[ident] = out
    return out


def _text(data: bytes) -> str:
    """A Python 2 ``str``: UTF-8 where it is valid UTF-8 (ASCII included), else Latin-1, which never fails."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")
