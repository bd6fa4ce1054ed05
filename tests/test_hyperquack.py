"""Parsing Hyperquack v1/v2 measurements into tries: controls, domains, received text, errors."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from quackae.ingest.hyperquack import (
    ParseError,
    Try,
    flatten_received,
    loads_line,
    parse_bytes,
    parse_line,
    parse_lines,
    parse_measurement,
    parse_timestamp,
    parse_timestamps,
)
from quackae.ingest.sources import scan_from_name

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"
T0 = "2020-11-14T07:54:49.246304766-05:00"
T1 = "2020-11-14T07:54:50.5-05:00"


def _request(domain: str) -> str:
    return f"GET / HTTP/1.1\r\nHost: {domain}\r\n\r\n"


def v1_echo(**over: Any) -> dict[str, Any]:
    """A v1 echo measurement: 2 retries after a failure, then the control try."""
    obj: dict[str, Any] = {
        "Server": "1.2.3.4",
        "Keyword": "blocked.example",
        "Retries": 2,
        "Results": [
            {
                "Sent": _request("blocked.example"),
                "Received": "HTTP/1.1 403 Forbidden\r\n\r\nno",
                "Success": False,
                "Error": "Incorrect echo response",
                "StartTime": T0,
                "EndTime": T1,
            },
            {
                "Sent": "",
                "Success": False,
                "Error": "dial tcp 0.0.0.0:0->1.2.3.4:7: connect: connection timed out",
                "StartTime": T0,
                "EndTime": T1,
            },
            {
                "Sent": "GET blocked.example HTTP/1.1\r\nHost: /path\r\n\r\n",
                "Success": True,
                "StartTime": T0,
                "EndTime": T1,
            },
            {
                "Sent": _request("example5718349450314.com"),
                "Success": True,
                "StartTime": T0,
                "EndTime": T1,
            },
        ],
        "Blocked": True,
        "FailSanity": False,
        "StatefulBlock": False,
    }
    obj.update(over)
    return obj


def v1_https(**over: Any) -> dict[str, Any]:
    """A v1 HTTPS measurement with an object ``Received`` and TLS details."""
    received = {
        "status_line": "403 Forbidden",
        "headers": {"Server": ["nginx"], "Set-Cookie": ["a=1", "b=2"]},
        "body": "<html>blocked\nhere</html>",
        "tls": {"version": 771, "cipher_suite": 49199, "cert": "MIIB"},
    }
    obj: dict[str, Any] = {
        "Server": "5.6.7.8",
        "Keyword": "news.example",
        "Retries": 1,
        "Results": [
            {
                "Sent": "news.example",
                "Received": received,
                "Success": False,
                "Error": "Incorrect web response: status lines don't match",
                "StartTime": T0,
            },
            {"Sent": "news.example", "Success": True, "StartTime": T0, "EndTime": T1},
            {"Sent": "rtyutgyhefdafioasfjhjhi.com", "Success": True},
            {"Sent": "", "Success": False, "Error": "i/o timeout"},
        ],
        "Blocked": False,
        "FailSanity": False,
        "StatefulBlock": False,
    }
    obj.update(over)
    return obj


def v2_https(**over: Any) -> dict[str, Any]:
    """A v2 HTTPS measurement with controls first and last."""
    obj: dict[str, Any] = {
        "vp": "9.9.9.9",
        "location": {"country_name": "Wonderland", "country_code": "WL"},
        "service": "https",
        "test_url": "test.example",
        "response": [
            {
                "matches_template": True,
                "control_url": "control-1.com",
                "start_time": T0,
                "end_time": T1,
            },
            {
                "matches_template": False,
                "response": {
                    "status_line": "200 OK",
                    "headers": {"A": ["1"], "B": ["2", "3"]},
                    "body": "hello",
                    "TlsVersion": 772,
                    "CipherSuite": 4865,
                    "Certificate": "MIIC",
                },
                "error": "Certificates do not match",
                "start_time": T0,
                "end_time": T1,
            },
            {
                "matches_template": False,
                "response": "",
                "error": "read tcp 1.1.1.1:5->9.9.9.9:443: read: connection reset by peer",
                "start_time": T0,
                "end_time": T1,
            },
            {
                "matches_template": True,
                "control_url": "control-2.com",
                "start_time": T0,
                "end_time": T1,
            },
        ],
        "anomaly": True,
        "controls_failed": False,
        "stateful_block": False,
        "tag": "2021-05-30T01:01:01",
    }
    obj.update(over)
    return obj


# --------------------------------------------------------------------------- v1


def test_v1_echo_controls_domains_and_fields() -> None:
    tries = parse_measurement(v1_echo(), "echo")
    assert [t.try_index for t in tries] == [0, 1, 2]
    assert [t.domain for t in tries] == ["blocked.example"] * 3  # request, empty Sent, swapped
    first = tries[0]
    assert (first.ip, first.location, first.country_code, first.scan, first.fmt) == (
        "1.2.3.4",
        "",
        "",
        "echo",
        "v1",
    )
    assert first.received == "HTTP/1.1 403 Forbidden\r\n\r\nno" and first.status_line == ""
    assert first.success is False and first.anomaly is True
    assert first.error == "Incorrect echo response" and first.sent.startswith("GET / ")
    assert tries[1].sent == "" and tries[1].received is None
    assert tries[2].success is True
    assert (first.tls_version, first.cipher_suite, first.has_cert) == (None, None, False)


def test_v1_empty_sent_after_retries_is_control() -> None:
    tries = parse_measurement(v1_https(), "https")
    assert [t.try_index for t in tries] == [0, 1]  # index 2 control domain, index 3 empty > Retries


def test_v1_swapped_path_without_keyword_match() -> None:
    obj = v1_echo(Keyword="k.example")
    obj["Results"] = [{"Sent": "GET other.example HTTP/1.1\r\nHost: /x\r\n\r\n", "Success": True}]
    obj["Retries"] = 0
    assert [t.domain for t in parse_measurement(obj, "discard")] == ["other.example"]


def test_v1_https_received_object_and_tls() -> None:
    t = parse_measurement(v1_https(), "https")[0]
    assert t.received == (
        "403 Forbidden\nServer: nginx\nSet-Cookie: a=1\nSet-Cookie: b=2\n<html>blocked\nhere</html>"
    )
    assert t.status_line == "403 Forbidden"
    assert (t.tls_version, t.cipher_suite, t.has_cert) == (771, 49199, True)
    assert t.domain == "news.example" and t.sent == "news.example"
    assert not math.isnan(t.start) and math.isnan(t.end)


def test_v1_missing_optional_flags_default_false() -> None:
    obj = v1_echo()
    del obj["FailSanity"], obj["StatefulBlock"]
    tries = parse_measurement(obj, "echo")
    assert not tries[0].controls_failed and not tries[0].stateful_block


# --------------------------------------------------------------------------- v2


def test_v2_controls_dropped_and_fields() -> None:
    tries = parse_measurement(v2_https(), None)
    assert [t.try_index for t in tries] == [1, 2]
    t = tries[0]
    assert (t.ip, t.domain, t.location, t.country_code, t.scan, t.fmt) == (
        "9.9.9.9",
        "test.example",
        "Wonderland",
        "WL",
        "https",
        "v2",
    )
    assert t.received == "200 OK\nA: 1\nB: 2\nB: 3\nhello" and t.status_line == "200 OK"
    assert (t.tls_version, t.cipher_suite, t.has_cert) == (772, 4865, True)
    assert t.success is False and t.anomaly is True and t.sent == ""
    assert tries[1].received is None and "connection reset" in tries[1].error


def test_v2_scan_argument_wins_and_service_port_is_stripped() -> None:
    assert parse_measurement(v2_https(), "http")[0].scan == "http"
    assert parse_measurement(v2_https(service="echo:8080"), None)[0].scan == "echo"


def test_scan_missing_or_unknown_is_parse_error() -> None:
    with pytest.raises(ParseError, match="scan"):
        parse_measurement(v1_echo(), None)
    obj = v2_https()
    del obj["service"]
    with pytest.raises(ParseError, match="scan"):
        parse_measurement(obj, None)
    with pytest.raises(ParseError, match="scan"):
        parse_measurement(v2_https(service="dns"), None)


def test_flatten_received_forms() -> None:
    assert flatten_received(None) == (None, "")
    assert flatten_received("") == (None, "")
    assert flatten_received("raw\r\nbytes") == ("raw\r\nbytes", "")
    assert flatten_received({"status_line": "301", "headers": {"L": "x"}}) == ("301\nL: x\n", "301")
    with pytest.raises(ParseError):
        flatten_received(7)


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    "text",
    [
        "2020-11-14T07:54:49.246304766-05:00",
        "2021-05-30T01:01:03.68639419-04:00",
        "2021-05-30T01:01:03Z",
        "2000-02-29T23:59:59.5+05:30",
        "1999-12-31T23:59:59.000001+00:00",
    ],
)
def test_parse_timestamp_matches_datetime(text: str) -> None:
    micro = re.sub(r"\.(\d{1,6})\d*", lambda m: "." + m.group(1).ljust(6, "0"), text)
    expected = datetime.fromisoformat(micro.replace("Z", "+00:00")).timestamp()
    assert parse_timestamp(text) == pytest.approx(expected, abs=1e-6)


def test_parse_timestamp_nanoseconds() -> None:
    assert parse_timestamp("1970-01-01T00:00:01.123456789Z") == pytest.approx(1.123456789, abs=1e-9)
    assert parse_timestamp("1970-01-01T00:00:00-01:00") == 3600.0


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "yesterday",
        "2020-13-01T00:00:00Z",
        "2020-11-14",
        "2020-11-14T07:54:49+5",
        "2020-11-14T07:54:49.²³-05:00",
    ],
)
def test_parse_timestamp_rejects(bad: str) -> None:
    with pytest.raises(ParseError):
        parse_timestamp(bad)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "obj,reason",
    [
        ([], "not an object"),
        ("x", "not an object"),
        ({"foo": 1}, "unknown"),
        ({k: v for k, v in v1_echo().items() if k != "Results"}, "Results"),
        ({k: v for k, v in v1_echo().items() if k != "Keyword"}, "Keyword"),
        ({k: v for k, v in v1_echo().items() if k != "Blocked"}, "Blocked"),
        (v1_echo(Retries="2"), "Retries"),
        (v1_echo(Retries=True), "Retries"),
        (v1_echo(Results={"a": 1}), "Results"),
        (v1_echo(Results=[1, 2]), "entry"),
        (v1_echo(Server=123), "Server"),
        (v1_echo(Blocked="yes"), "Blocked"),
        (v2_https(location="US"), "location"),
        (v2_https(anomaly=None), "anomaly"),
        ({k: v for k, v in v2_https().items() if k != "test_url"}, "test_url"),
    ],
)
def test_bad_shapes_raise_parse_error(obj: Any, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_measurement(obj, "echo")


def test_bad_entry_fields_raise_parse_error() -> None:
    cases = [
        ("Success", "true"),
        ("StartTime", 12),
        ("StartTime", "not a time"),
        ("Error", ["x"]),
        ("Received", 5),
        ("Received", {"status_line": 1}),
        ("Received", {"headers": ["A: b"]}),
        ("Received", {"headers": {"A": [1]}}),
        ("Received", {"body": None, "tls": "x"}),
        ("Received", {"tls": {"version": "771"}}),
        ("Sent", 7),
    ]
    for key, value in cases:
        obj = v1_https()
        obj["Results"][0][key] = value
        with pytest.raises(ParseError):
            parse_measurement(obj, "https")


_JUNK: list[Any] = [None, 0, -1, 1.5, True, "", "x", [], [1], {}, {"a": 1}, "\ud800", 2**80]


def _mutations(obj: Any, rng: random.Random, n: int) -> list[Any]:
    """``n`` copies of ``obj`` with one random value replaced by junk or one key dropped."""
    paths: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i))

    walk(obj, ())
    out = []
    for _ in range(n):
        mutated = copy.deepcopy(obj)
        path = rng.choice(paths[1:])
        parent = mutated
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and rng.random() < 0.3:
            del parent[path[-1]]
        else:
            parent[path[-1]] = rng.choice(_JUNK)
        out.append(mutated)
    return out


def _reference_objects() -> list[tuple[dict[str, Any], str | None]]:
    folder = REFERENCE / "hyperquack"
    if not folder.is_dir():
        return []
    objs = []
    for path in sorted(folder.glob("*.json")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                objs.append((json.loads(line), scan_from_name(path.name)))
    return objs


def test_fuzzed_inputs_only_ever_raise_parse_error() -> None:
    rng = random.Random(1234)
    bases = [(v1_echo(), "echo"), (v1_https(), "https"), (v2_https(), None)]
    bases += _reference_objects()
    checked = 0
    for base, scan in bases:
        for mutated in _mutations(base, rng, 150):
            try:
                tries = parse_measurement(mutated, scan)
            except ParseError:
                continue
            assert all(isinstance(t, Try) for t in tries)
            checked += 1
    assert checked > 0


@pytest.mark.parametrize(
    "data,reason",
    [
        (b'{"Server": "\xff"}', "UTF-8"),
        (b"{not json", "JSON"),
        (b"[1, 2]", "not an object"),
        (b"", "JSON"),
        ("[" * 100_000, "JSON"),
    ],
)
def test_parse_line_errors(data: bytes | str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_line(data, "echo")


def test_parse_line_round_trip() -> None:
    tries = parse_line(json.dumps(v2_https()).encode(), None)
    assert len(tries) == 2


# --------------------------------------------------------------------------- reference data


def test_reference_measurements() -> None:
    objs = _reference_objects()
    if not objs:
        pytest.skip("shared reference data not present")
    total = 0
    for obj, scan in objs:
        tries = parse_measurement(obj, scan)
        total += len(tries)
        for t in tries:
            assert t.scan == scan and t.domain and t.ip
            assert "control" not in t.domain and t.domain not in (
                "example5718349450314.com",
                "rtyutgyhefdafioasfjhjhi.com",
            )
            assert t.start > 1.5e9 and t.end >= t.start
            if t.fmt == "v1":
                assert t.domain == obj["Keyword"]
            else:
                assert t.country_code
    assert total > 20
    # The v1 echo line with two empty-Sent timeouts keeps them as tries of the keyword.
    by_keyword = {o.get("Keyword"): o for o, _ in objs}
    if "www.89.com" in by_keyword:
        tries = parse_measurement(by_keyword["www.89.com"], "echo")
        assert [t.try_index for t in tries] == [0, 1, 2, 3, 4]
        assert [t.sent == "" for t in tries] == [False, True, False, False, True]


# --------------------------------------------------------------------------- fast JSON


@pytest.mark.parametrize(
    "data",
    [
        b'{"vp": "1.2.3.4", "n": [1, 2.5, -0, 1E2, 123456789012345678901234567890], "s": '
        b'"\\u00e9\\n"}',
        b'  {"a": {"b": [true, false, null]}}  ',
        b'{"a": NaN, "b": Infinity}',  # the standard library accepts these; msgspec does not
        b'{"a": "\\ud800"}',  # a lone surrogate
        b"[1, 2]",
        b'{"a": 1, "a": 2}',
        '{"a": "é"}'.encode(),
    ],
)
def test_loads_line_equals_json_loads(data: bytes) -> None:
    expected = json.loads(data.decode("utf-8"))
    got = loads_line(data)
    assert json.dumps(got) == json.dumps(expected)  # same values, same key order


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1',
        b"\xff{}",
        b'{"a": "\xed\xa0\x80"}',
        b'{"a": 01}',
        b'{"a": [1,]}',
        b"\xef\xbb\xbf{}",
    ],
)
def test_loads_line_raises_what_json_raises(data: bytes) -> None:
    try:
        json.loads(data.decode("utf-8"))
    except ValueError as e:
        expected = type(e)
    with pytest.raises(expected):
        loads_line(data)


@pytest.mark.skipif(not (REFERENCE / "hyperquack").is_dir(), reason="shared/reference not present")
def test_loads_line_on_real_lines() -> None:
    for path in sorted((REFERENCE / "hyperquack").glob("*.json")):
        for line in path.read_bytes().splitlines():
            assert json.dumps(loads_line(line)) == json.dumps(json.loads(line.decode("utf-8")))


# --------------------------------------------------------------------------- typed path


def _dict_path(data: bytes, scan: str | None) -> list[Try] | str:
    """What flatten's dict path gives for a line: its tries, or "rejected"."""
    try:
        obj = loads_line(data)
        if not isinstance(obj, dict):
            return "rejected"
        return parse_measurement(obj, scan)
    except (ParseError, ValueError, RecursionError):
        return "rejected"


def _same_tries(a: list[Try], b: list[Try]) -> bool:
    """Equal field by field (nan equal to nan)."""
    return len(a) == len(b) and all(
        json.dumps(dataclasses.astuple(x)) == json.dumps(dataclasses.astuple(y))
        for x, y in zip(a, b, strict=True)
    )


def test_typed_path_equals_dict_path_on_mutated_lines() -> None:
    """``parse_lines`` gives the dict path's tries for every line it takes, on fuzzed lines."""
    rng = random.Random(99)
    bases = [(v1_echo(), "echo"), (v1_https(), "https"), (v2_https(), None), (v2_https(), "http")]
    bases += _reference_objects()
    lines: list[tuple[bytes, str | None]] = []
    for base, scan in bases:
        for obj in [base, *_mutations(base, rng, 120)]:
            lines.append((json.dumps(obj).encode(), scan))
            raw = json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")
            lines.append((raw, scan))  # raw UTF-8 (and invalid UTF-8 from lone surrogates)
    taken = 0
    for scan in {s for _, s in lines}:
        datas = [d for d, s in lines if s == scan]
        for data, tries in zip(datas, parse_lines(datas, scan), strict=True):
            expected = _dict_path(data, scan)
            if tries is None:  # left to the dict path
                continue
            taken += 1
            assert expected != "rejected" and _same_tries(tries, expected), data[:200]
    assert taken > len(lines) / 4  # the typed path takes the usual lines
    assert parse_bytes(json.dumps(v2_https()).encode(), None) is not None


@pytest.mark.parametrize(
    "data",
    [
        b'{"Server": "1.2.3.4", "Keyword": "a.com", "Retries": 0, "Blocked": false, '
        b'"Results": [{"Sent": "a.com", "Error": "x", "StartTime": "\xff"}]}',  # invalid UTF-8
        b'{"vp": "1.2.3.4", "test_url": "a.com", "anomaly": false, "response": [], "x": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}",  # nesting the dict path refuses
        b'{"Server": null, "vp": "1.2.3.4", "test_url": "a.com", "anomaly": false, '
        b'"response": []}',  # a v1 key decides the format even when null
        b'{"vp": "1.2.3.4", "test_url": "a.com", "anomaly": false, "response": [{"response": '
        b'{"body": "x", "Certificate": 5}}]}',  # a certificate that is no string
        b'{"vp": "1.2.3.4", "test_url": "a.com", "anomaly": false, "response": [{"start_time":'
        b' "2021-13-01T00:00:00.5+00:00"}]}',  # a bad timestamp
    ],
)
def test_typed_path_leaves_unusual_lines_to_the_dict_path(data: bytes) -> None:
    assert parse_bytes(data, "http") is None
    assert _dict_path(data, "http") == "rejected"


def test_parse_timestamps_equals_parse_timestamp() -> None:
    """The column-wise parse gives ``parse_timestamp``'s value or refusal for every string."""
    rng = random.Random(7)
    bases = [T0, T1, "0000-01-01T00:00:00.1+00:00", "2021-02-28T23:59:60.999999999+14:00"]
    texts: list[str | None] = [
        None,
        "",
        "x",
        "2021-05-30T01:01:25Z",
        "2021-05-30T01:01:25.1²+01:00",
    ]
    for _ in range(3000):
        chars = list(rng.choice(bases))
        for _ in range(rng.randint(0, 2)):
            at = rng.randrange(len(chars))
            pick = rng.choice("0123456789-:T.+Z a")
            if rng.random() < 0.5:
                chars[at] = pick
            else:
                chars.insert(at, pick)
        texts.append("".join(chars))
    values, bad = parse_timestamps(texts)
    refused = 0
    for text, value, failed in zip(texts, values.tolist(), bad.tolist(), strict=True):
        if not text:
            assert math.isnan(value) and not failed
            continue
        try:
            expected = parse_timestamp(text)
        except ParseError:
            assert failed, text
            refused += 1
            continue
        assert not failed and value == expected, text
    assert 0 < refused < len(texts)
