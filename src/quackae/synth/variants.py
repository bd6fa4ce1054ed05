"""Families and benign habits whose pages vary per response, so page templates cannot group them.

A template (status line + title, or a redirect's target host) groups a censor's pages when they
are the same page with the domain, addresses and long ids as placeholders. The pages here break
that on purpose, each with some of these habits (``HABITS``):

- ``nonce``: a short random reference (letters, a 4-digit number, an ``HH:MM`` time) in the
  visible text and title, which the tokenizer's normaliser does not replace;
- ``wording``: several titles and a pool of sentences, drawn and ordered per response;
- ``woven``: the domain, the vantage point's address or a case number inside the sentences;
- ``languages``: one censor answering in several languages;
- ``truncated``: the body cut at a random length (a middlebox that injects part of a page);
- ``status``: one page served with different status lines.

Benign kinds do the same: a CDN bot check one hosting network serves for its customers' domains
from every country, same-site redirects whose target is the tested site in many spellings, and
an ISP notice that its network injects into every request of a vantage point for a while (the
control too). They exist only in a world built with ``variants=True``: the default world, and
every byte it generates, stays as it was. Each family and kind has a signature pattern (an
identity header or its redirect target) that matches all of its pages and nothing else.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from quackae.synth.categories import CATEGORY_LABELS
from quackae.synth.responses import Resp, generic_headers, shared_head

HABITS = ("nonce", "wording", "woven", "languages", "truncated", "status")
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


@dataclass(frozen=True)
class Voice:
    """A page's text in one language: title variants and a pool of sentences."""

    lang: str
    titles: tuple[str, ...]
    sentences: tuple[str, ...]


@dataclass(frozen=True)
class VariantFamily:
    """A censor whose page varies per response (``habits``); ``pattern`` matches all its pages."""

    name: str
    countries: tuple[str, ...]
    habits: frozenset[str]
    voices: tuple[Voice, ...]
    statuses: tuple[str, ...]
    server: str
    layout: str = "html"  # html | plain | redirect
    notice: str = ""  # a redirect's target ({nonce}, {d})

    @property
    def pattern(self) -> str:
        """The family's signature: its redirect target's host, else its identity header."""
        if self.layout == "redirect":
            host = self.notice.split("/")[2].split("{nonce}")[-1]
            return r"Location: http://[a-z]{5}" + re.escape(host) + "/"
        return f"Server: {re.escape(self.server)}\\b"


def _h(*habits: str) -> frozenset[str]:
    assert set(habits) <= set(HABITS), habits
    return frozenset(habits)


VARIANT_LIST: tuple[VariantFamily, ...] = (
    VariantFamily(
        "tr_incident_nonce",
        ("TR",),
        _h("nonce", "status"),
        (
            Voice(
                "tr",
                ("Erişim engellendi · Olay {nonce}",),
                (
                    "Bu adrese erişim, {time} itibarıyla olay kaydı {nonce} ile durduruldu.",
                    "Kayıt numarası {case} için başvuru yapılabilir.",
                    "Ayrıntılar için hizmet sağlayıcınızla görüşün.",
                ),
            ),
        ),
        ("200 OK", "403 Forbidden"),
        "Kalkan-Gw/4",
    ),
    VariantFamily(
        "ru_reworded_notice",
        ("RU",),
        _h("wording", "status"),
        (
            Voice(
                "ru",
                (
                    "Страница недоступна",
                    "Доступ к сайту закрыт",
                    "Ресурс ограничен провайдером",
                    "Сайт заблокирован по требованию",
                    "Просмотр страницы невозможен",
                ),
                (
                    "Провайдер закрыл доступ к этому адресу по предписанию надзорного ведомства.",
                    "Адрес включён в перечень ресурсов с ограниченным доступом.",
                    "Если вы считаете ограничение ошибочным, направьте обращение оператору.",
                    "Ограничение действует для всех абонентов сети.",
                    "Повторите попытку позднее или выберите другой ресурс.",
                    "Оператор не несёт ответственности за содержание закрытых сайтов.",
                ),
            ),
        ),
        ("200 OK", "403 Forbidden"),
        "Rubezh-Filter",
    ),
    VariantFamily(
        "ir_case_order",
        ("IR",),
        _h("woven", "wording"),
        (
            Voice(
                "fa",
                (
                    "پرونده {case}: دسترسی به {d} مسدود است",
                    "دستور {case} درباره {d}",
                    "{d} طبق پرونده {case} فیلتر شده است",
                ),
                (
                    "دسترسی به {d} بر اساس دستور شماره {case} کارگروه مسدود شده است.",
                    "درخواست شما از نشانی {ip} ثبت شد.",
                    "برای اعتراض به پرونده {case} به سامانه شکایات مراجعه کنید.",
                    "این تصمیم برای همه کاربران شبکه اجرا می‌شود.",
                ),
            ),
        ),
        ("403 Forbidden",),
        "Parvaneh-Gw",
    ),
    VariantFamily(
        "ae_multilingual_gateway",
        ("AE", "SA"),
        _h("languages", "nonce"),
        (
            Voice(
                "ar",
                ("عذراً، هذا المحتوى غير متاح · {nonce}",),
                (
                    "الموقع الذي تحاول الوصول إليه محظور بموجب لوائح تنظيم الاتصالات.",
                    "رقم المرجع: {nonce}",
                ),
            ),
            Voice(
                "en",
                ("Sorry, this content is not available · {nonce}",),
                (
                    "The site you are trying to reach is prohibited under telecom regulations.",
                    "Reference number: {nonce}",
                ),
            ),
            Voice(
                "ur",
                ("معذرت، یہ مواد دستیاب نہیں · {nonce}",),
                (
                    "جس ویب سائٹ تک آپ رسائی چاہتے ہیں وہ مواصلاتی ضوابط کے تحت ممنوع ہے۔",
                    "حوالہ نمبر: {nonce}",
                ),
            ),
            Voice(
                "tl",
                ("Paumanhin, hindi available ang nilalamang ito · {nonce}",),
                (
                    "Ipinagbabawal ang site na ito ayon sa mga regulasyon sa telekomunikasyon.",
                    "Numero ng sanggunian: {nonce}",
                ),
            ),
        ),
        ("200 OK",),
        "Sahab-WebGuard",
    ),
    VariantFamily(
        "id_cut_notice",
        ("ID",),
        _h("truncated", "status"),
        (
            Voice(
                "id",
                ("Situs ini diblokir oleh jaringan kami",),
                (
                    "Alamat {d} masuk ke daftar hitam penyaringan konten nasional.",
                    "Pemblokiran dilakukan sesuai peraturan menteri tentang penanganan konten.",
                    "Untuk pengaduan, hubungi layanan pelanggan penyedia internet Anda.",
                    "Terima kasih atas pengertian Anda.",
                ),
            ),
        ),
        ("200 OK", "403 Forbidden", "404 Not Found"),
        "Nawala-Proxy",
    ),
    VariantFamily(
        "kz_status_rotation",
        ("KZ",),
        _h("status", "languages", "wording"),
        (
            Voice(
                "kk",
                ("Қолжетімділік шектелген", "Ресурс бұғатталған"),
                (
                    "Бұл ресурсқа кіру заң талаптарына сәйкес шектелді.",
                    "Сұрау нөмірі: {case}",
                    "Сұрақтар болса, байланыс операторына хабарласыңыз.",
                ),
            ),
            Voice(
                "ru",
                ("Доступ приостановлен", "Ресурс недоступен в сети"),
                (
                    "Доступ к ресурсу приостановлен согласно требованиям законодательства.",
                    "Номер запроса: {case}",
                    "По вопросам обращайтесь к оператору связи.",
                ),
            ),
        ),
        (
            "200 OK",
            "403 Forbidden",
            "451 Unavailable For Legal Reasons",
            "503 Service Unavailable",
            "410 Gone",
            "406 Not Acceptable",
        ),
        "Tansyq-DPI",
    ),
    VariantFamily(
        "vn_stamped_notice",
        ("VN",),
        _h("nonce", "woven"),
        (
            Voice(
                "vi",
                ("Thông báo {time} · Mã {nonce}",),
                (
                    "Trang {d} đã bị chặn theo yêu cầu của cơ quan quản lý.",
                    "Yêu cầu từ địa chỉ {ip} lúc {time} đã được ghi nhận với mã {nonce}.",
                    "Vui lòng liên hệ tổng đài hỗ trợ nếu cần thêm thông tin.",
                ),
            ),
        ),
        ("200 OK",),
        "Tuong-Lua/2",
    ),
    VariantFamily(
        "pk_cut_bilingual",
        ("PK",),
        _h("languages", "truncated"),
        (
            Voice(
                "ur",
                ("اس ویب سائٹ تک رسائی روک دی گئی ہے",),
                (
                    "یہ سائٹ متعلقہ اتھارٹی کی ہدایت پر بند کی گئی ہے۔",
                    "شکایت کے لیے اپنے انٹرنیٹ فراہم کنندہ سے رابطہ کریں۔",
                ),
            ),
            Voice(
                "en",
                ("Access to this website has been stopped",),
                (
                    "This site has been closed on the direction of the competent authority.",
                    "For complaints please contact your internet service provider.",
                ),
            ),
        ),
        ("200 OK",),
        "Fasil-Gateway",
    ),
    VariantFamily(
        "eg_rotating_redirect",
        ("EG",),
        _h("nonce", "status"),
        (),
        ("302 Found", "301 Moved Permanently", "307 Temporary Redirect", "303 See Other"),
        "",
        layout="redirect",
        notice="http://{nonce}.tanbih-eg.net/?u={d}",
    ),
    VariantFamily(
        "th_plain_reworded",
        ("TH",),
        _h("wording", "nonce"),
        (
            Voice(
                "th",
                (
                    "ไม่สามารถเข้าถึงเว็บไซต์นี้ได้ {nonce}",
                    "เว็บไซต์ถูกระงับการเข้าถึง {nonce}",
                    "การเข้าถึงถูกปิดกั้น {nonce}",
                ),
                (
                    "เว็บไซต์นี้ถูกระงับตามคำสั่งของหน่วยงานที่กำกับดูแล",
                    "หากมีข้อสงสัยโปรดติดต่อผู้ให้บริการอินเทอร์เน็ตของท่าน",
                    "หมายเลขอ้างอิง {case}",
                    "ขออภัยในความไม่สะดวก",
                ),
            ),
        ),
        ("200 OK",),
        "Kamphaeng",
        layout="plain",
    ),
)

#: Variant blockpage families by name.
VARIANT_FAMILIES: dict[str, VariantFamily] = {f.name: f for f in VARIANT_LIST}

#: Benign kinds of the variant world: a hosting network's bot check served for its customers'
#: domains in every country, same-site redirects in many spellings, an ISP's injected notice.
VARIANT_KINDS: tuple[str, ...] = ("cdn_bot_check", "site_redirect_variants", "isp_notice")

#: False-positive patterns of the variant kinds (each matches all of its pages, no blockpage).
VARIANT_BENIGN_PATTERNS: dict[str, str] = {
    "cdn_bot_check": r"Server: VeloxEdge\b",
    "site_redirect_variants": r"X-Redirect-By: ",
    "isp_notice": r"Server: NoticeGate\b",
}

_CDN_VOICES = (
    Voice(
        "en",
        ("Verifying you are human · {nonce}", "One more step · {nonce}", "Security check"),
        (
            "VeloxEdge is checking the security of your connection to {d}.",
            "This takes a few seconds. Reference {nonce}-{case}.",
            "Enable JavaScript and cookies to continue.",
        ),
    ),
    Voice(
        "de",
        ("Überprüfung, ob Sie ein Mensch sind · {nonce}", "Sicherheitsprüfung"),
        (
            "VeloxEdge prüft die Sicherheit Ihrer Verbindung zu {d}.",
            "Das dauert einige Sekunden. Referenz {nonce}-{case}.",
            "Aktivieren Sie JavaScript und Cookies, um fortzufahren.",
        ),
    ),
    Voice(
        "es",
        ("Verificando que usted es humano · {nonce}", "Un paso más"),
        (
            "VeloxEdge está revisando la seguridad de su conexión con {d}.",
            "Esto tarda unos segundos. Referencia {nonce}-{case}.",
            "Active JavaScript y las cookies para continuar.",
        ),
    ),
    Voice(
        "tr",
        ("İnsan olduğunuz doğrulanıyor · {nonce}", "Güvenlik denetimi"),
        (
            "VeloxEdge, {d} ile bağlantınızın güvenliğini denetliyor.",
            "Bu birkaç saniye sürer. Referans {nonce}-{case}.",
        ),
    ),
)

_NOTICE_VOICES = (
    Voice(
        "en",
        (
            "Your data allowance is almost used · {nonce}",
            "Account notice {case}",
            "Service announcement · {time}",
        ),
        (
            "Dear customer, {nonce} is your notice reference.",
            "You have used most of this month's data allowance.",
            "Top up in the customer portal to keep browsing at full speed.",
            "Planned maintenance tonight from {time} may interrupt the service.",
            "Your invoice {case} is due; pay it to avoid interruption.",
        ),
    ),
    Voice(
        "es",
        ("Aviso de su proveedor · {nonce}", "Aviso de cuenta {case}"),
        (
            "Estimado cliente, ha consumido casi todos sus datos de este mes.",
            "Su factura {case} está pendiente de pago.",
            "Referencia del aviso: {nonce}.",
        ),
    ),
)

_REDIRECT_PATHS = (
    "/",
    "/login?next=%2F",
    "/en/",
    "/home",
    "/?lang=en",
    "/index.html",
    "/auth/signin?r={nonce}",
    "/welcome",
)
_SERVERS = ("nginx", "Apache", "cloudflare", "openresty", "Microsoft-IIS/10.0", "LiteSpeed")
_REDIRECTORS = ("WordPress", "Yoast SEO", "Redirection", "Drupal")


def nonce(rng: random.Random, n: int = 5) -> str:
    """A short random reference of capital letters the normaliser keeps (no digits, no hex)."""
    return "".join(rng.choice(_LETTERS) for _ in range(n))


def _values(rng: random.Random) -> dict[str, str]:
    """One response's nonce, case number and time (the same wherever the page repeats them)."""
    return {
        "{nonce}": nonce(rng),
        "{case}": f"{rng.randint(100, 9999)}/{rng.randint(19, 21)}",
        "{time}": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
    }


def _text(template: str, values: dict[str, str], domain: str, vp_ip: str, category: str) -> str:
    """A title or sentence with its placeholders filled."""
    for key, value in values.items():
        template = template.replace(key, value)
    return template.replace("{d}", domain).replace("{ip}", vp_ip).replace("{cat}", category)


def _compose(
    rng: random.Random, voices: tuple[Voice, ...], habits: frozenset[str]
) -> tuple[Voice, str, list[str]]:
    """The voice, title and sentences of one response, as its habits draw them."""
    voice = rng.choice(voices) if "languages" in habits else voices[0]
    if "wording" in habits:
        title = rng.choice(voice.titles)
        k = rng.randint(2, len(voice.sentences))
        sentences = rng.sample(list(voice.sentences), k)
    else:
        title, sentences = voice.titles[0], list(voice.sentences)
    return voice, title, sentences


def _html(lang: str, cls: str, title: str, paras: list[str]) -> str:
    inner = "".join(f"<p>{p}</p>\n" for p in paras)
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<title>{title}</title>\n</head>\n'
        f'<body>\n<div class="{cls}">\n<h2>{title}</h2>\n{inner}</div>\n</body>\n</html>\n'
    )


def _respond(
    rng: random.Random,
    status: str,
    body: str,
    server: str,
    content_type: str | None,
    cut: bool,
    cert: str,
    *extra: tuple[str, str],
) -> Resp:
    """Headers drawn from the shared distribution (on the whole body), then the body maybe cut."""
    if content_type is None:
        body = shared_head(body, rng)
    own = ((("Server", server),) if server else ()) + extra
    headers = generic_headers(rng, body, content_type, own)
    if cut:
        body = body[: rng.randint(max(len(body) // 5, 1), len(body))]
    return Resp(status, headers, body, cert)


def variant_page(rng: random.Random, name: str, domain: str, category: str, vp_ip: str) -> Resp:
    """One response of a variant family for a request of ``domain`` at vantage point ``vp_ip``."""
    fam = VARIANT_FAMILIES[name]
    status = rng.choice(fam.statuses) if "status" in fam.habits else fam.statuses[0]
    values = _values(rng)
    label = CATEGORY_LABELS.get(category, category)
    cert = name.replace("_", "-") + "-gw"
    if fam.layout == "redirect":
        host = {"{nonce}": values["{nonce}"].lower()}  # a host name in lower case
        target = _text(fam.notice, host, domain, vp_ip, label)
        body = rng.choice(("", f'<a href="{target}">{status[4:]}</a>.\n'))
        return _respond(rng, status, body, "", None, False, cert, ("Location", target))
    voice, title, sentences = _compose(rng, fam.voices, fam.habits)
    title = _text(title, values, domain, vp_ip, label)
    paras = [_text(s, values, domain, vp_ip, label) for s in sentences]
    cut = "truncated" in fam.habits
    if fam.layout == "plain":
        body = title + "\n\n" + "\n".join(paras) + "\n"
        return _respond(rng, status, body, fam.server, "text/plain; charset=utf-8", cut, cert)
    body = _html(voice.lang, name.split("_")[0] + "-notice", title, paras)
    return _respond(rng, status, body, fam.server, None, cut, cert)


def variant_benign(rng: random.Random, kind: str, domain: str) -> Resp:
    """One response of a variant benign kind for ``domain``."""
    values = _values(rng)
    if kind == "cdn_bot_check":
        voice, title, sentences = _compose(rng, _CDN_VOICES, frozenset({"languages", "wording"}))
        title = _text(title, values, domain, "", "")
        paras = [_text(s, values, domain, "", "") for s in sentences]
        status = rng.choice(("403 Forbidden", "429 Too Many Requests", "503 Service Unavailable"))
        body = _html(voice.lang, "velox-check", title, paras)
        return _respond(rng, status, body, "VeloxEdge", None, False, "VeloxEdge Inc")
    if kind == "site_redirect_variants":
        bare = domain.removeprefix("www.")
        host = rng.choice((domain, domain, f"www.{bare}", bare))
        path = _text(rng.choice(_REDIRECT_PATHS), values, domain, "", "")
        target = rng.choice((f"https://{host}{path}", f"http://{host}{path}", path))
        status = rng.choice(
            ("301 Moved Permanently", "302 Found", "303 See Other", "307 Temporary Redirect")
        )
        body = rng.choice(("", f'<html><body><a href="{target}">moved</a></body></html>\n'))
        return _respond(
            rng,
            status,
            body,
            rng.choice(_SERVERS),
            None,
            False,
            domain,
            ("Location", target),
            ("X-Redirect-By", rng.choice(_REDIRECTORS)),
        )
    if kind == "isp_notice":
        voice, title, sentences = _compose(rng, _NOTICE_VOICES, frozenset({"languages", "wording"}))
        title = _text(title, values, domain, "", "")
        paras = [_text(s, values, domain, "", "") for s in sentences]
        body = _html(voice.lang, "isp-notice", title, paras)
        return _respond(rng, "200 OK", body, "NoticeGate", None, False, "notice")
    raise ValueError(f"unknown variant benign kind {kind!r}")
