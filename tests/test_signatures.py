"""Signature loading, the label rule and the RE2-prefiltered matcher's exactness."""

from __future__ import annotations

import json
import math
import random
import re
from importlib import resources
from pathlib import Path

import pytest

from quackae.ingest.hyperquack import Try, parse_measurement
from quackae.ingest.signatures import (
    Matcher,
    Signature,
    SignatureError,
    label,
    load_signature_file,
    load_signatures,
)
from quackae.ingest.sources import scan_from_name

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"
REF_SIGNATURES = REFERENCE / "signatures"


def _write_set(folder: Path, fps: list[tuple[str, str]], bps: list[tuple[str, str]]) -> Path:
    """Write the two signature files (JSON lines) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, sigs in (("false_positive_signatures.json", fps), ("blockpage_signatures.json", bps)):
        lines = [json.dumps({"fingerprint": f, "pattern": p}) for f, p in sigs]
        (folder / name).write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return folder


def _try(received: str | None, success: bool | None = False, anomaly: bool = True) -> Try:
    return Try(
        "1.2.3.4",
        "d.example",
        "",
        "",
        "http",
        "v2",
        1,
        math.nan,
        math.nan,
        success,
        anomaly,
        False,
        False,
        "",
        received,
        "",
        "",
        None,
        None,
        False,
    )


@pytest.fixture()
def matcher(tmp_path: Path) -> Matcher:
    folder = _write_set(
        tmp_path / "sigs",
        fps=[("x_fp_nginx", r"Welcome to nginx"), ("x_fp_503", r"503 Service.Unavailable")],
        bps=[
            ("b_first", r"Access (denied|blocked)"),
            ("b_second", r"blocked"),
            ("b_dotall", r"<title>.*Forbidden.*</title>"),
            ("b_unicode", "非法阻断"),
        ],
    )
    return load_signatures(folder)


# --------------------------------------------------------------------------- loading


def test_load_counts_and_order(matcher: Matcher) -> None:
    assert len(matcher) == 6
    assert [s.fingerprint for s in matcher.false_positives] == ["x_fp_nginx", "x_fp_503"]
    assert matcher.blockpages[0] == Signature("b_first", r"Access (denied|blocked)")


@pytest.mark.parametrize(
    "line,reason",
    [
        ("{not json", "invalid JSON"),
        ('["a", "b"]', "object"),
        ('{"pattern": "x"}', "fingerprint"),
        ('{"fingerprint": "f", "pattern": 3}', "pattern"),
        ('{"fingerprint": "f", "pattern": ""}', "pattern"),
        ('{"fingerprint": "f", "pattern": "(unclosed"}', "not a valid Python regex"),
    ],
)
def test_bad_signature_line_names_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "blockpage_signatures.json"
    path.write_text('{"fingerprint": "ok", "pattern": "ok"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(SignatureError) as exc:
        load_signature_file(path)
    message = str(exc.value)
    assert f"{path}:3:" in message and reason in message


def test_missing_files_and_dirs(tmp_path: Path) -> None:
    with pytest.raises(SignatureError, match="not a directory"):
        load_signatures(tmp_path / "absent")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "blockpage_signatures.json").write_text("", encoding="utf-8")
    with pytest.raises(SignatureError, match="false_positive_signatures.json"):
        load_signatures(tmp_path / "half")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "false_positive_signatures.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SignatureError, match="cannot read"):
        load_signature_file(tmp_path / "bin" / "false_positive_signatures.json")


def test_default_set() -> None:
    data = resources.files("quackae.ingest").joinpath("data", "blockpage_signatures.json")
    if data.is_file():
        assert len(load_signatures(None)) > 0
    else:
        with pytest.raises(SignatureError, match="quackae/ingest/data"):
            load_signatures(None)


# --------------------------------------------------------------------------- matching rule


def test_false_positive_beats_blockpage(matcher: Matcher) -> None:
    assert matcher.match("<h1>Welcome to nginx</h1> Access denied") == (-1, "x_fp_nginx")


def test_first_hit_in_file_order(matcher: Matcher) -> None:
    assert matcher.match("this page is blocked. Access blocked") == (1, "b_first")
    assert matcher.match("simply blocked") == (1, "b_second")


def test_dotall(matcher: Matcher) -> None:
    assert matcher.match("<title>\n403\nForbidden\n</title>") == (1, "b_dotall")
    assert matcher.match("HTTP/1.1 503 Service\nUnavailable") == (-1, "x_fp_503")


def test_no_hit_and_unicode(matcher: Matcher) -> None:
    assert matcher.match("") == (0, "")
    assert matcher.match("an ordinary page") == (0, "")
    assert matcher.match("<title>非法阻断235</title>") == (1, "b_unicode")


def test_lone_surrogates_fall_back_to_python(matcher: Matcher) -> None:
    assert matcher.match("\ud800 Access denied") == (1, "b_first")
    assert matcher.match("\udfff nothing") == (0, "")


def test_patterns_where_re2_differs_from_python() -> None:
    sigs = [
        Signature("digit", r"code \d\d\d"),  # Python \d is Unicode
        Signature("end", r"the end$"),  # Python $ matches before a final newline
        Signature("look", r"foo(?=bar)"),
        Signature("backref", r"(ab)\1"),
        Signature("upto", r"xa{,2}y"),  # Python {,n} is a repeat; RE2 reads it literally
        Signature("word", r"\bwall\b"),
        Signature("posix", r"[[:alpha:]]q"),
    ]
    m = Matcher([], sigs)
    cases = {
        "code ٣٤٥": "digit",
        "the end\n": "end",
        "foobar": "look",
        "abab": "backref",
        "xaay": "upto",
        "a wall.": "word",
        "a]q": "posix",
        "nothing here": "",
    }
    for text, fingerprint in cases.items():
        assert m.match(text)[1] == fingerprint, text
        assert m.match(text) == m.match_naive(text)
    assert m.python_only == len(sigs)


def _reference_texts() -> list[str]:
    texts = []
    folder = REFERENCE / "hyperquack"
    for path in sorted(folder.glob("*.json")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                for t in parse_measurement(json.loads(line), scan_from_name(path.name)):
                    if t.received:
                        texts.append(t.received)
    return texts


def _literal_sample(pattern: str) -> str | None:
    """A string a simple pattern matches (escapes removed), or None for real regexes."""
    if re.search(r"(?<!\\)[][()|*+?{}^$]", pattern) or re.search(r"\\[a-zA-Z0-9]", pattern):
        return None
    return re.sub(r"\\(.)", r"\1", pattern)


def test_reference_signatures_agree_with_naive_loop() -> None:
    if not REF_SIGNATURES.is_dir():
        pytest.skip("shared reference data not present")
    m = load_signatures(REF_SIGNATURES)
    assert len(m) > 1000
    texts = _reference_texts()
    samples = [s for s in (_literal_sample(x.pattern) for x in m.blockpages) if s]
    samples += [s for s in (_literal_sample(x.pattern) for x in m.false_positives) if s]
    assert len(samples) > 100
    texts += samples
    texts += [f"HTTP/1.1 200 OK\r\n\r\n<html>{s}</html>" for s in samples[::7]]
    hits = 0
    for text in texts:
        got = m.match(text)
        assert got == m.match_naive(text), text[:200]
        hits += got[0] != 0
    assert hits >= len(samples) * 0.9


def test_reference_signatures_found_at_the_end_of_long_texts() -> None:
    """All of Censored Planet's patterns sit in one RE2 set (one scan per text). A set whose DFA ran
    out of memory would answer "no match" without an error, so texts up to the 8 MiB line cap, made
    of the patterns' own words (the most states for the DFA), must still show a hit at their end."""
    if not REF_SIGNATURES.is_dir():
        pytest.skip("shared reference data not present")
    m = load_signatures(REF_SIGNATURES)
    assert len(m._sets) == 1 and m.python_only == 0
    words = sorted(
        {
            w
            for s in m.blockpages + m.false_positives
            for w in re.findall(r"[A-Za-z]{4,}", s.pattern)
        }
    )
    probe = next(s for s in m.blockpages if s.pattern.replace(" ", "").isalnum())
    rng = random.Random(5)
    for size in (100_000, 8_000_000):
        parts, n = [], 0
        while n < size:
            parts.append(rng.choice(words) + rng.choice(' <>/="'))
            n += len(parts[-1])
        text = "".join(parts) + probe.pattern
        found = m._candidates(text)
        assert found is not None and m.blockpages.index(probe) + len(m.false_positives) in found, (
            size
        )


# --------------------------------------------------------------------------- label


def test_label_rule(matcher: Matcher) -> None:
    # Template match and no anomaly: uncensored, even with a blockpage in the response.
    assert label(_try("Access denied", success=True, anomaly=False), matcher) == (-1, "")
    # A matching try of an anomalous measurement is still checked against signatures.
    assert label(_try("Access denied", success=True, anomaly=True), matcher) == (1, "b_first")
    assert label(_try("Access denied", success=False, anomaly=False), matcher) == (1, "b_first")
    assert label(_try("Welcome to nginx, Access denied"), matcher) == (-1, "x_fp_nginx")
    assert label(_try(None), matcher) == (0, "")
    assert label(_try(None, success=None, anomaly=False), matcher) == (0, "")
    assert label(_try("unremarkable"), matcher) == (0, "")


def test_label_reference_measurements() -> None:
    if not REF_SIGNATURES.is_dir():
        pytest.skip("shared reference data not present")
    m = load_signatures(REF_SIGNATURES)
    labels = []
    for path in sorted((REFERENCE / "hyperquack").glob("*.json")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                for t in parse_measurement(json.loads(line), scan_from_name(path.name)):
                    labels.append(label(t, m))
    counts = {c: sum(1 for x, _ in labels if x == c) for c in (-1, 0, 1)}
    assert counts[1] > 0 and counts[0] > 0 and counts[-1] > 0
    assert all(fp for c, fp in labels if c == 1)


# --------------------------------------------------------------------------- the default set

#: One hand-written example per default signature (a line such a page contains).
DEFAULT_EXAMPLES = {
    "b_nat_ir_iframe": '<iframe src="http://10.10.34.36/?type=Invalid Site&policy=MainPolicy"',
    "b_nat_kr_warning": "Location: http://warning.or.kr/i1.html",
    "b_nat_id_internet_positif": "Location: http://internetpositif.id/?u=x",
    "b_nat_tr_court_order": "5651 sayılı Kanun uyarınca erişim engellenmiştir",
    "b_nat_ru_registry": 'see <a href="https://eais.rkn.gov.ru/">registry</a>',
    "c_isp_in_dot_order": "blocked as per directions received from Department of "
    "Telecommunications",
    "c_host_cn_icp_unfiled": "<p>因该网站未进行备案</p>",
    "a_prod_fortinet": "<h2>FortiGuard Web Filtering</h2>",
    "a_prod_paloalto": "Access to the web page you were trying to visit has been blocked in "
    "accordance with company policy.",
    "a_prod_netsweeper": "Location: http://10.1.1.1:8080/webadmin/deny/index.php?dpid=2",
    "a_prod_sophos": "Sophos Web Appliance: access denied",
    "a_prod_cisco_wsa": "Notification codes: (1, BLOCK-DEST, 0, 0)",
    "a_prod_cisco_umbrella": "Location: https://block.opendns.com/?url=x",
    "a_prod_bluecoat": "Location: http://notify.example/notify-Blocked?cfru=aHR0cDovL3g=",
    "a_prod_mcafee": "<title>McAfee Web Gateway - Notification</title>",
    "a_prod_forcepoint": "Location: http://10.0.0.1:15871/cgi-bin/blockpage.cgi?ws-session=1",
    "a_prod_kerio": "Kerio Control: access to this page is denied",
    "a_prod_barracuda": "The Barracuda Web Filter blocked this page",
    "a_prod_squid_denied": "ERR_ACCESS_DENIED ... Generated by proxy (squid/4.10)",
    "x_fp_nginx_welcome": "<title>Welcome to nginx!</title>",
    "x_fp_nginx_http_to_https": "The plain HTTP request was sent to HTTPS port",
    "x_fp_apache_default": "<title>Apache2 Ubuntu Default Page: It works</title>",
    "x_fp_iis_default": "<title>IIS Windows Server</title>",
    "x_fp_akamai": "Server: AkamaiGHost",
    "x_fp_cloudflare": "<title>Attention Required! | Cloudflare</title>",
    "x_fp_incapsula": "Request unsuccessful. Incapsula incident ID: 1-2",
    "x_fp_sucuri": "Sucuri WebSite Firewall - Access Denied",
    "x_fp_cloudfront": "Generated by cloudfront (CloudFront)",
    "x_fp_cpanel_default": '<a href="/cgi-sys/defaultwebpage.cgi">',
    "x_fp_cpanel_suspended": '<a href="/cgi-sys/suspendedpage.cgi">',
    "x_fp_plesk_default": "<title>Domain Default page</title>",
    "x_fp_parking": '<script src="https://www.sedoparking.com/x.js">',
    "x_fp_squid_error": "ERR_CONNECT_FAIL (squid)",
    "x_fp_ssh_banner": "SSH-2.0-OpenSSH_8.9\r\n",
    "x_fp_smtp_banner": "220 mx.example.org ESMTP Postfix\r\n",
    "x_fp_ftp_banner": "220 ProFTPD Server (FTP) ready.\r\n",
    "x_fp_redis_banner": "-NOAUTH Authentication required.\r\n",
}


def test_default_set_is_real_world_and_live() -> None:
    """Every default signature matches its example first; none names a fictitious (synth) censor."""
    from quackae import synth

    m = load_signatures(None)
    names = [s.fingerprint for s in (*m.false_positives, *m.blockpages)]
    assert sorted(names) == sorted(DEFAULT_EXAMPLES) and len(m.blockpages) >= 15
    for name, text in DEFAULT_EXAMPLES.items():
        assert m.match(text)[1] == name, (name, m.match(text))
    fictitious = {
        "netsentry",
        "clearpath",
        "bluewall",
        "ironveil",
        "safeharbor",
        "civicshield",
        "webguard",
        "orbitfilter",
        "trustnet",
        "gatewarden",
        "kestrel",
        "vigilnet",
        "stratusedge",
        "parkcentral",
        "domainmart",
        "synth",
    }
    fictitious |= {
        re.sub(r"[{?/].*", "", f.notice.removeprefix("http://"))
        for f in synth.FAMILIES.values()
        if f.notice
    }
    fictitious |= {name.lower() for name in synth.FAMILIES}
    fictitious.discard("")
    for sig in (*m.false_positives, *m.blockpages):
        plain = re.sub(r"\\(.)", r"\1", sig.pattern).lower()
        for word in fictitious:
            assert word not in sig.fingerprint.lower() and word not in plain, (sig, word)


def test_default_set_on_reference_files() -> None:
    """The default set on Censored Planet's real pages: the labels docs/signatures.md states."""
    if not (REFERENCE / "hyperquack").is_dir():
        pytest.skip("shared reference data not present")
    m = load_signatures(None)
    got: dict[str, set[tuple[int, str]]] = {}
    for path in sorted((REFERENCE / "hyperquack").glob("*.json")):
        for line in path.read_text(encoding="utf-8").splitlines():
            for t in parse_measurement(json.loads(line), scan_from_name(path.name)):
                if t.received:
                    got.setdefault(t.domain, set()).add(label(t, m))
    assert got["104.com.tw"] >= {(1, "c_host_cn_icp_unfiled")}
    assert got["discover.com"] == {(-1, "x_fp_akamai")}
    assert got["www.sex.com"] == got["www.89.com"] == {(1, "a_prod_paloalto")}
