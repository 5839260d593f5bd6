"""The plain-data unpickler: Python 2 and 3 plain pickles load; anything naming a global is refused, unrun."""

import collections
import pickle
import pickletools

import pytest

from pipeline.data.fixtures.refcoco import py2_pickle
from pipeline.data.safe_pickle import UnsafePickleError, load_plain
from tests.samples import payload

PLAIN = {
    "ref_id": 7,
    "ids": [1, 2, 3],
    "big": 2**70,
    "negative": -(2**40),
    "score": 0.25,
    "flags": (True, False, None),
    "nested": [{"sent": "the man", "tokens": ["the", "man"]}, []],
    "unicode": "naïve café ☕",
}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_python3_plain_data_round_trips(protocol):
    assert load_plain(pickle.dumps(PLAIN, protocol=protocol)) == PLAIN


def test_sets_and_bytes_at_protocol_4():
    value = {"set": {1, 2}, "frozen": frozenset({"a"}), "raw": b"abc"}
    assert load_plain(pickle.dumps(value, protocol=4)) == {"set": {1, 2}, "frozen": frozenset({"a"}), "raw": "abc"}


def test_python2_byte_strings_become_text():
    value = {"ascii": b"a man", "utf8": "café".encode(), "latin1": b"caf\xe9", "unicode": "naïve", "n": 3}
    data = py2_pickle(value)
    assert b"U\x05a man" in data  # a Python 2 str: SHORT_BINSTRING, which Python 3 cannot write
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(data)  # what a bare pickle.load (encoding="ASCII") does with such a file
    assert load_plain(data) == {"ascii": "a man", "utf8": "café", "latin1": "café", "unicode": "naïve", "n": 3}


def test_real_python2_cpickle_output():
    # Python 2.7.18, cPickle.dumps(x, 2) of {'sent': 'a man', 'sent_id': 101, 'tokens': ['a', 'man']} and of
    # [{'raw': 'caf\xc3\xa9', 'u': u'na\xefve', 'n': 70000, 'big': 2**70, 'f': 0.25, 't': (1, 'a'), 'b': True,
    # 'none': None}]: byte strings, a unicode, a memo numbered from 1, BINGET-free single characters.
    first = (
        b"\x80\x02}q\x01(U\x06tokensq\x02]q\x03(U\x01aU\x03manq\x04eU\x07sent_idq\x05KeU\x04sentq\x06U\x05a manq\x07u."
    )
    second = (
        b"\x80\x02]q\x01}q\x02(U\x03rawq\x03U\x05caf\xc3\xa9q\x04U\x04noneq\x05NU\x01b\x88U\x01uX\x06\x00\x00"
        b"\x00na\xc3\xafveq\x06U\x01tK\x01U\x01a\x86q\x07U\x01fG?\xd0\x00\x00\x00\x00\x00\x00U\x03bigq\x08"
        b"\x8a\t\x00\x00\x00\x00\x00\x00\x00\x00@U\x01nJp\x11\x01\x00ua."
    )
    assert load_plain(first) == {"sent": "a man", "sent_id": 101, "tokens": ["a", "man"]}
    assert load_plain(second) == [
        {"raw": "café", "u": "naïve", "n": 70000, "big": 2**70, "f": 0.25, "t": (1, "a"), "b": True, "none": None}
    ]


def test_fixture_writer_matches_cpickle_opcodes():
    # Python 2.7.18's cPickle.dumps(((), (1, 2, 3, 4), -1, 2**31), 2); equal once unused memo entries are dropped.
    cpickle = b"\x80\x02()(K\x01K\x02K\x03K\x04tq\x01J\xff\xff\xff\xffI2147483648\nt."
    assert pickletools.optimize(py2_pickle(((), (1, 2, 3, 4), -1, 2**31))) == pickletools.optimize(cpickle)


def test_memoised_repeats_stay_shared():
    shared = ["x"]
    loaded = load_plain(pickle.dumps([shared, shared], protocol=2))
    assert loaded == [["x"], ["x"]] and loaded[0] is loaded[1]


def test_file_objects_and_paths(tmp_path):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(py2_pickle([{"ref_id": 1}]))
    assert load_plain(path) == load_plain(str(path)) == [{"ref_id": 1}]
    with path.open("rb") as f:
        assert load_plain(f) == [{"ref_id": 1}]


# The global each payload names: os.system is posix.system; below protocol 3, pickle writes Python 2 module names.
@pytest.mark.parametrize(
    ("name", "named"),
    [
        ("system", r"(posix|os)\.system"),
        ("eval", r"(builtins|__builtin__)\.eval"),
        ("exec", r"(builtins|__builtin__)\.exec"),
        ("check_call", r"(subprocess|commands)\.check_call"),
    ],
)
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_reduce_payloads_are_refused_and_not_run(tmp_path, name, named, protocol):
    marker = tmp_path / "pwned"
    data = pickle.dumps([{"ref_id": 1, "sentences": [payload(name, marker)]}], protocol=protocol)
    with pytest.raises(UnsafePickleError, match=rf"global {named};"):
        load_plain(data)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["system", "eval", "check_call"])
def test_the_payloads_are_live(tmp_path, name):
    """The control: a bare pickle.loads (what the refer API does) runs the same payload."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(payload(name, marker), protocol=2))
    assert marker.exists()


def test_python2_style_globals_are_named(tmp_path):
    marker = tmp_path / "pwned"
    for data, name in [
        (f"cos\nsystem\n(S'touch {marker}'\ntR.".encode(), "os.system"),  # protocol 0 GLOBAL, as Python 2 writes
        (f'c__builtin__\neval\n(S\'open("{marker}", "w")\'\ntR.'.encode(), "__builtin__.eval"),
        (b"\x80\x02csubprocess\nPopen\nq\x01.", "subprocess.Popen"),
    ]:
        with pytest.raises(UnsafePickleError, match=rf"global {name}"):
            load_plain(data)
    assert not marker.exists()


def test_harmless_looking_globals_are_refused_too():
    with pytest.raises(UnsafePickleError, match=r"collections\.OrderedDict"):
        load_plain(pickle.dumps(collections.OrderedDict(a=1), protocol=2))
    with pytest.raises(UnsafePickleError, match=r"__builtin__\.set"):
        load_plain(pickle.dumps({1, 2}, protocol=2))  # protocols < 4 build sets through a global


def test_refusal_names_the_file(tmp_path):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    with pytest.raises(UnsafePickleError, match=r"refs\(unc\)\.p: pickle refers to the global os\.system"):
        load_plain(path)


def test_persistent_ids_and_extension_codes_are_refused():
    with pytest.raises(UnsafePickleError, match="persistent id"):
        load_plain(b"\x80\x02X\x01\x00\x00\x00aQ.")  # BINPERSID
    with pytest.raises(ValueError):
        load_plain(b"\x80\x02\x82\x01.")  # EXT1 code 1: no extension registered


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (pickle.dumps(PLAIN, protocol=2)[:-7], "not a readable plain pickle"),
        (b"", "not a readable plain pickle"),
        (b"not a pickle at all", "not a readable plain pickle"),
    ],
)
def test_corrupt_pickles(data, message):
    with pytest.raises(ValueError, match=message):
        load_plain(data)


def test_structures_that_contain_themselves():
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        load_plain(pickle.dumps(loop, protocol=2))


def test_keys_that_collide_once_decoded():
    with pytest.raises(ValueError, match="same string 'a'"):
        load_plain(pickle.dumps({b"a": 1, "a": 2}, protocol=3))
