"""Structure-aware fuzzer for the record path: the record contract, both sinks' builders, and the
dead letter built for every record.

Raw bytes alone barely get past ``json.loads``, so most inputs are read as a recipe instead: the
first byte picks a mode, and a :class:`atheris.FuzzedDataProvider` then builds a whole Kafka
record from the rest (a JSON document with every JSON type, integers of any size, floats that
overflow, any Unicode in names and values, URL-like images; key, headers and timestamp). Mode
``0`` (the byte ``0x30``, so seed files stay readable) takes the rest verbatim as the record's
value, and mode ``1`` builds dead letters directly from arbitrary messages, reasons and details.

Per input, the properties the consumer relies on:

- ``record.transform`` returns a :class:`Quote` or raises :class:`InvalidRecord`, nothing else;
- a rejection names a known reason and a short detail that UTF-8 can carry;
- an accepted quote gives a PostgreSQL row and payload and a MongoDB document that BSON encodes,
  with every extra field stored unchanged (not shadowed by a field the consumer sets);
- the dead letter for the record (the rejection's, or a sink refusal's) is built without error,
  encodes, and fits ``MAX_DEAD_LETTER_BYTES``.

Run (see README.md): ``python -m tests.fuzz.fuzz_record -max_total_time=60``.
"""

from __future__ import annotations

import json
import reprlib
import sys
import tempfile
import time
from collections import Counter
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import atheris

# The dependencies come in first and uninstrumented: coverage feedback is for the project's code.
import bson
import orjson
import pymongo  # noqa: F401  (imported by the sinks; loaded here so it stays uninstrumented)

with atheris.instrument_imports(include=["quotes_consumer"], enable_loader_override=False):
    from quotes_consumer import deadletter, record
    from quotes_consumer.sinks import mongo, postgres

from tests import json_parity

CORPUS = Path(__file__).resolve().parent / "corpus"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LIMIT = 65_536
GROUP = "quotes-consumer"

MAX_DETAIL_CHARS = 1_000

# --- Building blocks ------------------------------------------------------------------------------

WORDS = ["Hello", "world", "D'oh!", "Homer", "Simpson", "é", "日本", "🍩", "a", "Left", "Right"]
SPACES = [" ", "  ", "\n", "\t", "\r\n", "\x0b", "\x1c", "\x85", "\xa0", "\u2028", "\u3000", ""]
ODD_CHARS = [
    "\x00",
    "\ud800",
    "\udfff",
    "\ud83d",
    "\U0001f600",
    "\ufeff",
    "\u200b",
    "\x7f",
    "\x1b",
    "$",
    ".",
    "\\",
    '"',
    "'",
    "[",
    "]",
    ":",
    "@",
    "/",
    "%",
    "#",
    "?",
    "\u2100",
    "\uff0e",
    "\U0010ffff",
]
KEYS = [
    "quote",
    "character",
    "image",
    "characterDirection",
    "source",
    "_id",
    "content_hash",
    "word_count",
    "kafka",
    "ingested_at",
    "written_at",
    "message_id",
    "$set",
    "$",
    "a.b",
    ".",
    "",
    "\x00",
    "\ud800",
    "x\udc80y",
    "é",
    "__proto__",
]
URLS = [
    "https://example.org/a.png",
    "http://h/p",
    "HTTPS://EXAMPLE.ORG/X",
    "http://[::1]/a.png",
    "http://[::1",
    "http://[::1]:99999/",
    "http://[",
    "http://]",
    "http://a]/",
    "http://[v1.x]/",
    "http://[::ffff:1.2.3.4]/",
    "https://a:99999",
    "https://a:65535/",
    "http://a:0/",
    "http://a:-1/",
    "http://a:x/",
    "http://a:+1/",
    "http://a:1_0/",
    "http://a:/",
    "http://",
    "https://",
    "http:///x",
    "http://@/",
    "http://:80/",
    "http://user:pw@host/",
    "http://a b",
    "http://a\tb/",
    "http://a\nb/",
    "http://a\rb/",
    "http://a/\x00",
    "http://a\u2100b/",
    "http://\uff21.com/",
    "http://\u0130.com/",
    "https://例え.テスト/",
    "http://%zz/",
    "http:\\\\a",
    "http:/a",
    "http:a",
    " http://a/ ",
    "//x.org/a",
    "ftp://x",
    "javascript:alert(1)",
    "",
]
NUMBER_LITERALS = [
    "1e400",
    "-1e400",
    "1e-400",
    "-0",
    "-0.0",
    "0e0",
    "1E+2",
    "1.7976931348623157e308",
    "1.7976931348623159e308",
    "5e-324",
    "2.5e-324",
    "NaN",
    "Infinity",
    "-Infinity",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
]
DIGIT_COUNTS = [19, 20, 21, 640, 641, 4299, 4300, 4301, 5000]
EDGE_INTS = [0, -1, 1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64]
# Message coordinates are the broker's, but a dead letter is built for any message at all.
ANY_INTS = [*EDGE_INTS, 2**100, 10**5000, -(10**5000)]
TIMESTAMPS = [None, -1, 0, 1, -(2**63), 2**63 - 1, 10**15, 253_402_300_799_999, 253_402_300_800_000]
HEADER_NAMES = ["uuid", "uuid", "trace-id", "", "\ud800", "\x00", "dlq.reason"]
HEADER_VALUES = [
    None,
    b"id-1",
    b"id-2",
    b"",
    b"\xff",
    b"\xed\xa0\x80",
    b"a\nb",
    b" padded",
    b"x" * 200,
    b"x" * 201,
    "é".encode(),
]


class Raw:
    """A JSON fragment written as is: a literal that ``json.dumps`` cannot produce (an integer
    of thousands of digits, ``1e400``) or a nesting too deep to build as Python objects."""

    def __init__(self, text: str) -> None:
        self.text = text


def text(fdp: atheris.FuzzedDataProvider, max_len: int = 12) -> str:
    """Any Unicode: lone surrogates, NUL, odd whitespace, or words that pass the contract.

    A provider out of data answers every choice with its lowest value, so the lowest choices
    here (and throughout) lead to a valid quote, not to a rejection.
    """
    mode = fdp.ConsumeIntInRange(0, 4)
    if mode <= 1:
        words = [fdp.PickValueInList(WORDS) for _ in range(fdp.ConsumeIntInRange(1, 4))]
        spaced = "".join(word + fdp.PickValueInList(SPACES) for word in words)
        return fdp.PickValueInList(SPACES) + spaced if mode == 1 else spaced
    if mode == 2:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, max_len))
    if mode == 3:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, max_len))
    count = fdp.ConsumeIntInRange(0, 4)
    return "".join(fdp.PickValueInList(ODD_CHARS + WORDS) for _ in range(count))


def url(fdp: atheris.FuzzedDataProvider) -> str:
    """A known URL shape, sometimes with a fuzzed host, port, path or an odd character."""
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:
        return fdp.PickValueInList(URLS)
    if mode == 1:
        scheme = fdp.PickValueInList(["http", "https", "HTTP", "ftp", ""])
        host = text(fdp, 8)
        port = fdp.PickValueInList(["", ":", ":80", ":99999", ":-1", ":x", f":{fdp.ConsumeInt(3)}"])
        return f"{scheme}://{host}{port}/{text(fdp, 8)}"
    if mode == 2:
        base = fdp.PickValueInList(URLS)
        at = fdp.ConsumeIntInRange(0, len(base))
        return base[:at] + fdp.PickValueInList(ODD_CHARS + SPACES) + base[at:]
    return "http://" + fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 16))


def number(fdp: atheris.FuzzedDataProvider) -> Any:
    mode = fdp.ConsumeIntInRange(0, 8)
    if mode == 0:
        return fdp.ConsumeIntInRange(-1000, 1000)
    if mode == 1:
        return fdp.PickValueInList(EDGE_INTS) + fdp.ConsumeIntInRange(-2, 2)
    if mode == 2:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 40))
    if mode == 3:  # an integer literal of any length, up to well past Python's 4300-digit limit
        count = fdp.PickValueInList(DIGIT_COUNTS) if fdp.ConsumeBool() else None
        count = count if count is not None else fdp.ConsumeIntInRange(1, 10_000)
        digit = str(fdp.ConsumeIntInRange(1, 9))
        sign = "-" if fdp.ConsumeBool() else ""
        return Raw(sign + digit * count)
    if mode == 4:
        return fdp.ConsumeFloat()  # inf and nan too, which json.dumps writes as Infinity, NaN
    if mode == 5:
        return Raw(fdp.PickValueInList(NUMBER_LITERALS))
    if mode == 6:
        mantissa = str(fdp.ConsumeIntInRange(0, 10**6))
        fraction = f".{fdp.ConsumeIntInRange(0, 999)}" if fdp.ConsumeBool() else ""
        exponent = fdp.ConsumeIntInRange(-100_000, 100_000)
        return Raw(f"{'-' if fdp.ConsumeBool() else ''}{mantissa}{fraction}e{exponent}")
    if mode == 7:
        return fdp.ConsumeRegularFloat()
    return fdp.PickValueInList([-0.0, 0.0, 1e308, 5e-324, 2**53 + 1.0])


def nested(fdp: atheris.FuzzedDataProvider) -> Raw:
    """Arrays or objects nested around the 32-level limit, or deeper than Python recurses."""
    depth = fdp.PickValueInList([30, 31, 32, 33, 34, 1_000, 3_000])
    if fdp.ConsumeBool():
        return Raw("[" * depth + "]" * depth)
    return Raw('{"k":' * depth + "1" + "}" * depth)


def value(fdp: atheris.FuzzedDataProvider, depth: int) -> Any:
    """Any JSON value; containers get rarer with depth."""
    kind = fdp.ConsumeIntInRange(0, 10 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind in (2, 3):
        return number(fdp)
    if kind == 4:
        return text(fdp)
    if kind == 5:
        return url(fdp)
    if kind == 6:
        return fdp.PickValueInList(KEYS)
    if kind == 7:
        return [value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    if kind == 8:
        return nested(fdp)
    return {key(fdp): value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))}


def key(fdp: atheris.FuzzedDataProvider) -> str:
    choice = fdp.ConsumeIntInRange(0, 7)
    if choice == 7:  # a long name, which a rejection's detail must cut
        return text(fdp, 8) * fdp.ConsumeIntInRange(1, 200)
    return fdp.PickValueInList(KEYS) if choice < 4 else text(fdp, 8)


def document(fdp: atheris.FuzzedDataProvider) -> Any:
    """Mostly an object that is a valid quote, or close to one; sometimes any JSON value."""
    if fdp.ConsumeIntInRange(0, 15) == 15:
        return value(fdp, 0)
    doc: dict[str, Any] = {}
    for name in ("quote", "character"):
        choice = fdp.ConsumeIntInRange(0, 9)
        if choice < 7:
            doc[name] = text(fdp, 20)
        elif choice < 9:
            doc[name] = value(fdp, 1)
    choice = fdp.ConsumeIntInRange(0, 5)
    if choice < 3:
        doc["image"] = url(fdp)
    elif choice == 3:
        doc["image"] = value(fdp, 1)
    choice = fdp.ConsumeIntInRange(0, 5)
    if choice < 2:
        doc["characterDirection"] = fdp.PickValueInList(["Left", "Right", " Left ", "left", ""])
    elif choice == 2:
        doc["characterDirection"] = value(fdp, 1)
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        doc[key(fdp)] = value(fdp, 1)
    return doc


def serialize(fdp: atheris.FuzzedDataProvider, tree: Any) -> bytes:
    """The document as a producer might send it, ``Raw`` fragments spliced in; sometimes
    with a few bytes changed."""
    raws: list[str] = []

    def placeholders(item: Any) -> Any:
        if isinstance(item, Raw):
            raws.append(item.text)
            return f"@raw:{len(raws) - 1}@"
        if isinstance(item, list):
            return [placeholders(child) for child in item]
        if isinstance(item, dict):
            return {name: placeholders(child) for name, child in item.items()}
        return item

    ascii_only = fdp.ConsumeIntInRange(0, 3) != 0
    separators = (",", ":") if fdp.ConsumeBool() else None
    out = json.dumps(placeholders(tree), ensure_ascii=ascii_only, separators=separators)
    for index, raw in enumerate(raws):
        out = out.replace(f'"@raw:{index}@"', raw, 1)
    # A lone surrogate written raw (ensure_ascii=False) is no UTF-8: surrogatepass sends it as
    # the invalid bytes some producers do send.
    data = out.encode("utf-8", "surrogatepass")
    for _ in range(fdp.ConsumeIntInRange(1, 3) if fdp.ConsumeIntInRange(0, 4) == 4 else 0):
        at = fdp.ConsumeIntInRange(0, len(data))
        edit = fdp.ConsumeIntInRange(0, 2)
        if edit == 0:
            data = data[:at] + fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 4)) + data[at:]
        elif edit == 1:
            data = data[:at] + data[at + fdp.ConsumeIntInRange(1, 8) :]
        else:
            data = data[:at]
    return data


def headers(fdp: atheris.FuzzedDataProvider) -> tuple[record.Header, ...]:
    out: list[record.Header] = []
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        name = fdp.PickValueInList(HEADER_NAMES) if fdp.ConsumeBool() else text(fdp, 8)
        if fdp.ConsumeBool():
            data: bytes | None = fdp.PickValueInList(HEADER_VALUES)
        else:
            data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 24))
        out.append((name, data))
    return tuple(out)


def timestamp(fdp: atheris.FuzzedDataProvider) -> int | None:
    if fdp.ConsumeBool():
        return fdp.PickValueInList(TIMESTAMPS)
    return fdp.ConsumeIntInRange(-(2**63), 2**63 - 1)


def message(fdp: atheris.FuzzedDataProvider, value_bytes: bytes | None) -> record.Message:
    return record.Message(
        topic="quotes",
        partition=fdp.ConsumeIntInRange(0, 2**31 - 1),
        offset=fdp.ConsumeIntInRange(0, 2**63 - 1),
        timestamp_ms=timestamp(fdp),
        key=None if fdp.ConsumeBool() else fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 32)),
        value=value_bytes,
        headers=headers(fdp),
    )


# --- Properties -----------------------------------------------------------------------------------


def check_record(message_: record.Message, max_bytes: int, refusal: str) -> None:
    """Transform one message, check what comes out, and dead-letter it."""
    explain(f"transform({short(message_)}, max_bytes={max_bytes}, now=NOW)")
    # orjson first, the standard library where orjson refuses: one outcome either way.
    fast = json_parity.outcome(record.decode, message_.value, max_bytes)
    assert fast == json_parity.outcome(record.decode_stdlib, message_.value, max_bytes), fast
    try:
        quote = record.transform(message_, max_bytes, NOW)
    except record.InvalidRecord as error:
        check_rejection(error)
        reason, detail = error.reason, error.detail
        tally(reason)
    else:
        check_quote(quote)
        tally("quote")
        reason, detail = "rejected_by_mongo", refusal  # a sink may still refuse a valid quote
    check_letter(deadletter.dead_letter(deadletter.Reject(message_, reason, str(detail)), GROUP))


def check_rejection(error: record.InvalidRecord) -> None:
    assert error.reason in record.REASONS, error.reason
    assert isinstance(error.detail, str) and error.detail, "every rejection says why"
    assert len(error.detail) <= MAX_DETAIL_CHARS, len(error.detail)
    error.detail.encode("utf-8")  # readable in a log, whatever the input held


def check_quote(quote: record.Quote) -> None:
    for text_ in (quote.quote, quote.character, quote.image or "", quote.character_direction or ""):
        assert "\x00" not in text_
        text_.encode("utf-8")
    assert quote.quote == record.normalize(quote.quote) != ""
    assert quote.character == record.normalize(quote.character) != ""
    assert quote.word_count == len(quote.quote.split()) >= 1
    if quote.image is not None:  # a URL that any reader parses as stored: no ValueError
        assert not any(char.isspace() for char in quote.image), repr(quote.image)
        parts = urlsplit(quote.image)
        assert parts.scheme in ("http", "https") and parts.hostname, repr(quote.image)
        _ = parts.port
    assert len(postgres.to_row(quote)) == len(postgres.COLUMNS)
    orjson.loads(postgres.to_json([quote]))
    stored = bson.decode(bson.encode(mongo.to_document(quote, NOW)))
    for name, item in quote.extra.items():
        assert stored[name] == item, f"extra field {name!r} is not stored as sent"


def check_letter(letter: deadletter.DeadLetter) -> None:
    assert letter.size() <= deadletter.MAX_DEAD_LETTER_BYTES, letter.size()
    for name, data in letter.headers:
        assert isinstance(name, str) and isinstance(data, bytes)
        name.encode("utf-8")  # the Kafka client encodes header names strictly
    names = [name for name, _ in letter.headers]
    assert "dlq.reason" in names and "dlq.error" in names


def fuzz_dead_letter(fdp: atheris.FuzzedDataProvider) -> None:
    """Any message, reason, detail and group: the dead letter is built and fits."""

    # Sizes around each budget, the large ones rarely: they cost a millisecond each.
    def sized(unit: bytes) -> bytes | None:
        size = fdp.PickValueInList([None, 0, 1, 100, 16_384, 16_385, 65_536, 999_000])
        if fdp.ConsumeIntInRange(0, 15) == 0:
            size = fdp.PickValueInList([999_950, 1_000_000, 1_100_000])
        return None if size is None else (unit * size)[:size]

    def any_text() -> str:
        repeat = 1 if fdp.ConsumeIntInRange(0, 7) else fdp.PickValueInList([2, 100, 100_000])
        return text(fdp, 16) * repeat

    header_list = list(headers(fdp))
    if fdp.ConsumeIntInRange(0, 3) == 0:
        count, size = fdp.ConsumeIntInRange(0, 40), fdp.PickValueInList([0, 100, 50_000])
        header_list += [(any_text(), b"h" * size) for _ in range(count)]
    message_ = record.Message(
        topic=any_text(),
        partition=fdp.PickValueInList(ANY_INTS),
        offset=fdp.PickValueInList(ANY_INTS),
        timestamp_ms=fdp.PickValueInList([None, *ANY_INTS]),
        key=sized(fdp.ConsumeBytes(2) or b"k"),
        value=sized(fdp.ConsumeBytes(2) or b"v"),
        headers=tuple(header_list),
    )
    reject = deadletter.Reject(message_, any_text(), any_text())
    group = any_text()
    explain(f"dead_letter({short(reject)}, {short(group)})")
    letter = deadletter.dead_letter(reject, group)
    check_letter(letter)
    tally("dead letter")
    if message_.value is not None and letter.value is not None:
        assert message_.value.startswith(letter.value)


# --- Running -------------------------------------------------------------------------------------

SHORT = reprlib.Repr()
SHORT.maxstring = SHORT.maxother = 400


def short(item: Any) -> str:
    """``repr`` of a message or reject with long texts, bytes and numbers cut in the middle."""
    names = (
        [f.name for f in fields(item)]
        if is_dataclass(item) and not isinstance(item, type)
        else getattr(item, "_fields", None)  # a named tuple
    )
    if names is not None:
        parts = ", ".join(f"{name}={short(getattr(item, name))}" for name in names)
        return f"{type(item).__name__}({parts})"
    if isinstance(item, tuple):
        return "(" + ", ".join(short(part) for part in item) + ("," if len(item) == 1 else "") + ")"
    if isinstance(item, int) and not isinstance(item, bool) and abs(item) > 10**60:
        return f"<int of {item.bit_length()} bits>"
    if isinstance(item, str | bytes) and len(item) > 200:
        unit = "chars" if isinstance(item, str) else "bytes"
        return f"<{len(item)} {unit}: {item[:60]!r}...{item[-20:]!r}>"
    return SHORT.repr(item)


def explain(line: str) -> None:
    """With ``--explain FILE``: print the call an input makes, to write a regression test from."""
    if Stats.explaining:
        print(line)


class Stats:
    """What the inputs came to, printed at every power of two from 2**14 executions on, beside
    libFuzzer's own lines: proof that valid quotes, not only rejections, are being reached.
    (libFuzzer ends the process with C ``exit()``, so Python's ``atexit`` never runs.)"""

    explaining: ClassVar[bool] = False
    runs: ClassVar[int] = 0
    outcomes: ClassVar[Counter[str]] = Counter()
    started: ClassVar[float] = time.monotonic()


def tally(outcome: str) -> None:
    Stats.outcomes[outcome] += 1


def report() -> None:
    elapsed = time.monotonic() - Stats.started
    top = ", ".join(f"{name} {n}" for name, n in Stats.outcomes.most_common(6))
    print(
        f"fuzz_record: {Stats.runs} executions in {elapsed:.0f} s "
        f"({Stats.runs / max(elapsed, 1e-9):,.0f}/s): {top}",
        file=sys.stderr,
        flush=True,
    )


def test_one_input(data: bytes) -> None:
    Stats.runs += 1
    if Stats.runs >= 2**14 and Stats.runs & (Stats.runs - 1) == 0:
        report()
    if not data:
        return
    mode = data[0] % 8
    fdp = atheris.FuzzedDataProvider(data[1:])
    if mode == 0:  # the rest, as is, is the value of an otherwise plain record
        check_record(record.Message("quotes", 0, 1, None, None, data[1:]), LIMIT, "refused")
        return
    if mode == 1:
        fuzz_dead_letter(fdp)
        return
    tree = document(fdp)
    value_bytes = None if fdp.ConsumeIntInRange(0, 31) == 31 else serialize(fdp, tree)
    message_ = message(fdp, value_bytes)
    size = len(value_bytes or b"")
    max_bytes = fdp.PickValueInList([LIMIT, LIMIT, LIMIT, size, max(size - 1, 0)])
    check_record(message_, max_bytes, text(fdp, 40))


def main(argv: list[str]) -> None:
    """libFuzzer's command line. Without a corpus directory, new inputs go to a temporary one
    and the committed seed corpus is only read; without ``-artifact_prefix``, crash files go
    to that temporary directory too: a run never writes into the repository.

    ``--explain FILE...`` runs inputs without libFuzzer and prints the call each one makes.
    """
    args = argv[1:]
    if args[:1] == ["--explain"]:
        Stats.explaining = True
        for name in args[1:]:
            print(f"# {name}")
            test_one_input(Path(name).read_bytes())
        return
    scratch = tempfile.mkdtemp(prefix="fuzz_record-")
    if not any(not arg.startswith("-") for arg in args):
        args += [f"{scratch}/corpus", str(CORPUS)]
        Path(f"{scratch}/corpus").mkdir()
    if not any(arg.startswith("-artifact_prefix=") for arg in args):
        args.append(f"-artifact_prefix={scratch}/")
    print(f"fuzz_record: new inputs and crashes go to {scratch}", file=sys.stderr, flush=True)
    if not any(arg.startswith("-print_final_stats") for arg in args):
        args.append("-print_final_stats=1")
    atheris.Setup([argv[0], *args], test_one_input)
    Stats.started = time.monotonic()
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
