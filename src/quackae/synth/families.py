"""Blockpage families of the synthetic world: each censor's page template and how it is served."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Collection
from dataclasses import dataclass

from quackae.synth.categories import CATEGORY_LABELS
from quackae.synth.responses import (
    HTML_TYPES,
    LOCAL_IPS,
    Resp,
    generic_headers,
    hex_id,
    shared_head,
)

# --- Blockpage families ---------------------------------------------------------------------
#
# Each family is one censor's page template, written on its own: its own wording in its own
# language, its own layout (HTML table, div, card, right-to-left, plain text, JSON, XML, a
# frame, a redirect, a meta refresh or a near-empty answer), headers, server and CSS. A page
# varies per request (domain, reference numbers, client address, dates, optional lines), but
# every page of a family contains the family's ``pattern`` and no other family's or benign
# page does, so ``write_signatures`` can fingerprint any chosen subset of families.

#: Blockpage mechanisms of the families (the HTTP status of the page, or how it is delivered).
FAMILY_MECHANISMS: tuple[str, ...] = (
    "200",
    "403",
    "404",
    "451",
    "redirect",
    "iframe",
    "meta-refresh",
    "near-empty",
)

_STATUS = {
    "200": "200 OK",
    "403": "403 Forbidden",
    "404": "404 Not Found",
    "451": "451 Unavailable For Legal Reasons",
}


@dataclass(frozen=True)
class Family:
    """One blockpage family: a censor's template, where it is deployed, and its signature.

    ``lines`` are always on the page, ``extras`` are optional per-request lines; both may use
    the placeholders ``{d}`` (domain), ``{ref}``, ``{n}``, ``{ip}``, ``{date}`` and ``{cat}``.
    ``notice`` is the target of redirects, frames and meta refreshes (``{a}``/``{b}``: random
    numbers, ``{d}``: domain). ``pattern`` is a Python regex found in every page of the family.
    """

    name: str
    language: str
    script: str
    mechanism: str
    countries: tuple[str, ...]
    layout: str
    title: str
    lines: tuple[str, ...]
    pattern: str
    extras: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    notice: str = ""


def _fam(
    name: str,
    language: str,
    script: str,
    mechanism: str,
    countries: str,
    layout: str,
    title: str,
    lines: tuple[str, ...],
    pattern: str,
    extras: tuple[str, ...] = (),
    headers: tuple[tuple[str, str], ...] = (),
    notice: str = "",
) -> Family:
    """Shorthand constructor: ``countries`` is a comma-separated list of country codes."""
    return Family(
        name,
        language,
        script,
        mechanism,
        tuple(countries.split(",")),
        layout,
        title,
        lines,
        pattern,
        extras,
        headers,
        notice,
    )


FAMILY_LIST: tuple[Family, ...] = (
    # --- Russia, Belarus, Kazakhstan (Cyrillic)
    _fam(
        "ru_registry_div",
        "ru",
        "Cyrillic",
        "200",
        "RU",
        "div",
        "Доступ ограничен",
        (
            "Доступ к ресурсу {d} ограничен на основании решения органа власти.",
            "Сведения о причинах ограничения размещены в едином реестре.",
        ),
        r"на основании решения органа власти",
        ("Номер записи в реестре: {n}", "Ваш IP-адрес: {ip}"),
        (("Server", "nginx"),),
    ),
    _fam(
        "ru_subscriber_table",
        "ru",
        "Cyrillic",
        "403",
        "RU,BY",
        "table",
        "Ресурс заблокирован",
        (
            "Уважаемый абонент! Запрошенная страница {d} заблокирована оператором связи.",
            "Блокировка выполнена во исполнение требований законодательства.",
        ),
        r"Уважаемый абонент! Запрошенная страница",
        ("Дата: {date}", "Код обращения: {ref}"),
        (("Server", "Apache"), ("X-Powered-By", "PHP/5.4.16")),
    ),
    _fam(
        "ru_warning_redirect",
        "ru",
        "Cyrillic",
        "redirect",
        "RU",
        "redirect",
        "Перенаправление",
        (),
        r"http://zapret\.uzel-svyazi\.net/",
        notice="http://zapret.uzel-svyazi.net/?site={d}",
    ),
    _fam(
        "ru_api_json",
        "ru",
        "Cyrillic",
        "451",
        "RU",
        "json",
        "Ресурс недоступен",
        ("Ресурс недоступен по требованию регулятора отрасли связи",),
        r"Ресурс недоступен по требованию регулятора отрасли связи",
        ("Идентификатор запроса {ref}",),
        (("Server", "envoy"), ("Content-Type", "application/json; charset=utf-8")),
    ),
    _fam(
        "ru_silent_dpi",
        "ru",
        "Cyrillic",
        "near-empty",
        "RU,BY",
        "empty",
        "",
        (),
        r"Server: kvant-dpi",
        headers=(("Server", "kvant-dpi"),),
    ),
    _fam(
        "by_ministry_plain",
        "ru",
        "Cyrillic",
        "451",
        "BY",
        "plain",
        "Доступ ограничен",
        (
            "Доступ к интернет-ресурсу {d} ограничен в соответствии с решением Министерства "
            "информации.",
        ),
        r"ограничен в соответствии с решением Министерства информации",
        ("Обращения принимаются по адресу info@{d}", "Время: {date}"),
        (("Server", "lighttpd/1.4.55"),),
    ),
    _fam(
        "kz_card",
        "kk",
        "Cyrillic",
        "200",
        "KZ",
        "card",
        "Ресурсқа кіру шектелген",
        (
            "Бұл интернет-ресурсқа кіру шектелген.",
            "Шектеу Қазақстан Республикасының заңнамасына сәйкес енгізілді.",
        ),
        r"Шектеу Қазақстан Республикасының заңнамасына",
        ("Сұрау нөмірі: {n}", "Санат: {cat}"),
        (("Server", "nginx/1.20.1"),),
    ),
    _fam(
        "kz_meta_refresh",
        "kk",
        "Cyrillic",
        "meta-refresh",
        "KZ",
        "meta",
        "Қайта бағыттау",
        ("Сіз ақпараттық бетке бағытталасыз.",),
        r"http://akparat\.shekteu-qyzmet\.kz/",
        notice="http://akparat.shekteu-qyzmet.kz/bet?r={d}&id={ref}",
    ),
    # --- Iran (Persian, Arabic script)
    _fam(
        "ir_frame_private",
        "fa",
        "Arabic",
        "iframe",
        "IR",
        "frame",
        "صفحه در دسترس نیست",
        ("دسترسی به این تارنما طبق مقررات کشور ممکن نیست.",),
        r"http://10\.66\.0\.\d{1,3}/masdood\.htm",
        notice="http://10.66.0.{b}/masdood.htm?d={d}",
    ),
    _fam(
        "ir_frame_filter",
        "fa",
        "Arabic",
        "iframe",
        "IR",
        "frame",
        "پالایش",
        ("این محتوا پالایش شده است.",),
        r"http://172\.20\.\d{1,3}\.1/palayesh/",
        notice="http://172.20.{a}.1/palayesh/index.php?url={d}",
    ),
    _fam(
        "ir_rtl_notice",
        "fa",
        "Arabic",
        "403",
        "IR",
        "rtl",
        "صفحه مسدود است",
        (
            "کاربر گرامی، دسترسی به {d} بر اساس فهرست مصادیق محتوای مجرمانه امکان‌پذیر نیست.",
            "برای طرح شکایت با پشتیبانی تماس بگیرید.",
        ),
        r"بر اساس فهرست مصادیق محتوای مجرمانه",
        ("شماره پیگیری: {n}",),
        (("Server", "Microsoft-IIS/7.5"), ("X-AspNet-Version", "4.0.30319")),
    ),
    # --- Turkey (Turkish)
    _fam(
        "tr_court_center",
        "tr",
        "Latin",
        "200",
        "TR",
        "center",
        "Bu siteye erişim durduruldu",
        (
            "{d} hakkında Sulh Ceza Hakimliği kararı ile erişimin engellenmesi tedbiri "
            "uygulanmaktadır.",
        ),
        r"kararı ile erişimin engellenmesi tedbiri uygulanmaktadır",
        ("Karar numarası: {n}", "Karar tarihi: {date}"),
        (("Server", "Apache/2.2.15 (CentOS)"),),
    ),
    _fam(
        "tr_admin_table",
        "tr",
        "Latin",
        "451",
        "TR",
        "table",
        "İdari tedbir",
        (
            "İdari tedbir kararı uyarınca bu adrese erişim sağlanamamaktadır.",
            "Ayrıntılı bilgi için hizmet sağlayıcınıza başvurunuz.",
        ),
        r"İdari tedbir kararı uyarınca bu adrese",
        ("Başvuru no: {ref}",),
        (("Server", "nginx"),),
    ),
    _fam(
        "tr_notice_redirect",
        "tr",
        "Latin",
        "redirect",
        "TR",
        "redirect",
        "Yönlendirme",
        (),
        r"http://uyari\.erisim-bildirim\.net/",
        notice="http://uyari.erisim-bildirim.net/{d}",
    ),
    _fam(
        "tr_fake_404",
        "tr",
        "Latin",
        "404",
        "TR",
        "pre",
        "404",
        ("Aradığınız sayfa bu ağda görüntülenemiyor (kod TRB-404).",),
        r"\(kod TRB-404\)",
        ("İstek: {ref}",),
        (("Server", "mini_httpd/1.30"),),
    ),
    # --- India (English, Hindi)
    _fam(
        "in_operator_plain",
        "en",
        "Latin",
        "200",
        "IN",
        "plain",
        "Link unavailable",
        (
            "The link you opened is unavailable on this network following instructions issued to "
            "licensed operators.",
            "Kindly reach out to your operator's helpline for assistance.",
        ),
        r"unavailable on this network following instructions issued to licensed operators",
        ("Ticket {n}",),
        (("Server", "Apache-Coyote/1.1"),),
    ),
    _fam(
        "in_hindi_div",
        "hi",
        "Devanagari",
        "451",
        "IN",
        "div",
        "वेबसाइट उपलब्ध नहीं",
        (
            "यह वेब पता सरकारी निर्देशों के अनुसार इस नेटवर्क पर उपलब्ध नहीं है।",
            "अधिक जानकारी के लिए अपने सेवा प्रदाता से संपर्क करें।",
        ),
        r"सरकारी निर्देशों के अनुसार इस नेटवर्क पर",
        ("संदर्भ संख्या: {n}",),
        (("Server", "openresty"),),
    ),
    _fam(
        "in_gateway_empty",
        "en",
        "Latin",
        "near-empty",
        "IN",
        "empty",
        "",
        (),
        r"Server: sanchar-gw/2",
        headers=(("Server", "sanchar-gw/2"), ("Pragma", "no-cache")),
    ),
    # --- Indonesia (Indonesian)
    _fam(
        "id_healthy_redirect",
        "id",
        "Latin",
        "redirect",
        "ID",
        "redirect",
        "Dialihkan",
        (),
        r"http://peringatan\.jaring-sehat\.id/",
        notice="http://peringatan.jaring-sehat.id/?situs={d}",
    ),
    _fam(
        "id_card",
        "id",
        "Latin",
        "200",
        "ID",
        "card",
        "Situs tidak dapat diakses",
        (
            "Mohon maaf, situs {d} tidak dapat dibuka karena termasuk dalam daftar situs "
            "bermuatan negatif.",
            "Gunakan internet secara sehat dan aman.",
        ),
        r"termasuk dalam daftar situs bermuatan negatif",
        ("Kategori: {cat}",),
        (("Server", "nginx/1.14.2"),),
    ),
    _fam(
        "id_meta_refresh",
        "id",
        "Latin",
        "meta-refresh",
        "ID",
        "meta",
        "Mengalihkan",
        ("Anda sedang dialihkan ke halaman pemberitahuan.",),
        r"http://blokir\.sahabat-net\.co\.id/",
        notice="http://blokir.sahabat-net.co.id/info.html?u={d}&s={n}",
    ),
    # --- Pakistan (Urdu, English)
    _fam(
        "pk_urdu_rtl",
        "ur",
        "Arabic",
        "200",
        "PK",
        "rtl",
        "ویب سائٹ بند ہے",
        (
            "یہ ویب سائٹ متعلقہ ادارے کی ہدایت پر بند کر دی گئی ہے۔",
            "مزید معلومات کے لیے اپنے انٹرنیٹ فراہم کنندہ سے رابطہ کریں۔",
        ),
        r"متعلقہ ادارے کی ہدایت پر بند کر دی گئی",
        ("حوالہ نمبر: {n}",),
        (("Server", "Apache"),),
    ),
    _fam(
        "pk_regulator_pre",
        "en",
        "Latin",
        "403",
        "PK",
        "pre",
        "Not accessible",
        (
            "This website is not accessible in your region under the direction of the telecom "
            "regulator.",
        ),
        r"under the direction of the telecom regulator",
        ("Reference {ref}", "Client {ip}"),
        (("Server", "squid/3.5.20"), ("X-Cache", "MISS from pk-gw")),
    ),
    # --- Arabic-speaking countries
    _fam(
        "sa_table",
        "ar",
        "Arabic",
        "200",
        "SA",
        "table",
        "الموقع محجوب",
        ("عفواً، لا يمكن الوصول إلى الصفحة المطلوبة لمخالفتها الأنظمة واللوائح.",),
        r"لا يمكن الوصول إلى الصفحة المطلوبة لمخالفتها",
        ("الفئة: {cat}",),
        (("Server", "Apache"),),
    ),
    _fam(
        "sa_frame_private",
        "ar",
        "Arabic",
        "iframe",
        "SA",
        "frame",
        "تنبيه",
        ("المحتوى غير متاح.",),
        r"http://192\.168\.251\.\d{1,3}/tanbih\.html",
        notice="http://192.168.251.{b}/tanbih.html#{d}",
    ),
    _fam(
        "ae_bilingual_card",
        "ar",
        "Arabic",
        "403",
        "AE",
        "card",
        "المحتوى محظور | Content blocked",
        (
            "المحتوى المطلوب محظور وفقاً لسياسة تنظيم الإنترنت.",
            "The content you requested is not permitted under the internet access policy of this "
            "country.",
        ),
        r"المحتوى المطلوب محظور وفقاً لسياسة",
        ("Ref: {ref}",),
        (("Server", "BigIP"),),
    ),
    _fam(
        "eg_fake_404",
        "ar",
        "Arabic",
        "404",
        "EG",
        "plain",
        "404",
        ("404 - الصفحة المطلوبة غير متوفرة على هذه الشبكة",),
        r"الصفحة المطلوبة غير متوفرة على هذه الشبكة",
        (),
        (("Server", "nginx/1.10.3"),),
    ),
    _fam(
        "eg_notice_redirect",
        "ar",
        "Arabic",
        "redirect",
        "EG",
        "redirect",
        "تحويل",
        (),
        r"http://tanbih\.shabaka-misr\.net/",
        notice="http://tanbih.shabaka-misr.net/p?h={d}",
    ),
    # --- Vietnam, Thailand, Korea, China
    _fam(
        "vn_div",
        "vi",
        "Latin",
        "200",
        "VN",
        "div",
        "Trang web bị ngăn chặn",
        ("Trang web {d} đã bị ngăn chặn theo yêu cầu của cơ quan quản lý.",),
        r"đã bị ngăn chặn theo yêu cầu của cơ quan quản lý",
        ("Mã tham chiếu: {ref}",),
        (("Server", "nginx"),),
    ),
    _fam(
        "vn_json",
        "vi",
        "Latin",
        "403",
        "VN",
        "json",
        "Truy cập bị từ chối",
        ("Truy cập bị từ chối do vi phạm quy định về nội dung thông tin trên mạng",),
        r"vi phạm quy định về nội dung thông tin trên mạng",
        ("Thời gian {date}",),
        (("Content-Type", "application/json"), ("Server", "gunicorn")),
    ),
    _fam(
        "th_center",
        "th",
        "Thai",
        "200",
        "TH",
        "center",
        "ไม่สามารถเข้าถึงเว็บไซต์",
        ("เว็บไซต์นี้ถูกปิดกั้นตามคำสั่งของหน่วยงานที่เกี่ยวข้อง",),
        r"ถูกปิดกั้นตามคำสั่งของหน่วยงานที่เกี่ยวข้อง",
        ("รหัสอ้างอิง {n}",),
        (("Server", "Apache/2.4.6"),),
    ),
    _fam(
        "th_court_table",
        "th",
        "Thai",
        "451",
        "TH",
        "table",
        "ระงับการเข้าถึง",
        ("การเข้าถึง {d} ถูกระงับตามคำสั่งศาล", "หากมีข้อสงสัยโปรดติดต่อผู้ให้บริการ"),
        r"ถูกระงับตามคำสั่งศาล",
        ("วันที่ {date}",),
        (("Server", "Microsoft-IIS/8.5"),),
    ),
    _fam(
        "kr_notice_redirect",
        "ko",
        "Hangul",
        "redirect",
        "KR",
        "redirect",
        "안내",
        (),
        r"http://annae\.jeopsok-chadan\.kr/",
        notice="http://annae.jeopsok-chadan.kr/index.jsp?u={d}",
    ),
    _fam(
        "kr_card",
        "ko",
        "Hangul",
        "200",
        "KR",
        "card",
        "불법·유해 정보 차단 안내",
        ("요청하신 사이트 {d}는 관련 법률에 따라 접속이 차단되었습니다.",),
        r"관련 법률에 따라 접속이 차단되었습니다",
        ("문의 번호: {n}",),
        (("Server", "Jetty(9.4.z)"),),
    ),
    _fam(
        "cn_policy_xml",
        "zh",
        "Han",
        "403",
        "CN",
        "xml",
        "禁止访问",
        ("该网站已被网络安全策略禁止访问",),
        r"该网站已被网络安全策略禁止访问",
        ("请求编号 {ref}",),
        (("Content-Type", "application/xml"), ("Server", "Tengine")),
    ),
    _fam(
        "cn_plain",
        "zh",
        "Han",
        "200",
        "CN",
        "plain",
        "无法显示",
        ("根据相关法律法规，您访问的网站暂时无法显示。",),
        r"根据相关法律法规，您访问的网站暂时无法显示",
        ("时间：{date}",),
        (("Server", "Tengine/2.3.2"),),
    ),
    # --- Western countries (English, German, French, Spanish)
    _fam(
        "us_gateway_json",
        "en",
        "Latin",
        "403",
        "US",
        "json",
        "Request blocked",
        ("Request blocked by the acceptable use policy of this network",),
        r"blocked by the acceptable use policy of this network",
        ("Category {cat}", "Transaction {ref}"),
        (("Content-Type", "application/json"), ("Server", "edge-proxy")),
    ),
    _fam(
        "us_school_div",
        "en",
        "Latin",
        "200",
        "US",
        "div",
        "Page not allowed",
        (
            "This page is not allowed on the district network.",
            "Ask a teacher if you need it for class work.",
        ),
        r"not allowed on the district network",
        ("Reason: {cat}", "Device: {ip}"),
        (("Server", "nginx"),),
    ),
    _fam(
        "us_silent_empty",
        "en",
        "Latin",
        "near-empty",
        "US",
        "empty",
        "",
        (),
        r"X-Filter-Verdict: deny",
        headers=(("X-Filter-Verdict", "deny"), ("Server", "Apache")),
    ),
    _fam(
        "de_court_plain",
        "de",
        "Latin",
        "451",
        "DE",
        "plain",
        "Zugang gesperrt",
        ("Der Zugang zu dieser Website wurde aufgrund einer gerichtlichen Anordnung gesperrt.",),
        r"aufgrund einer gerichtlichen Anordnung gesperrt",
        ("Aktenzeichen {n}",),
        (("Server", "nginx"),),
    ),
    _fam(
        "de_policy_xml",
        "de",
        "Latin",
        "403",
        "DE",
        "xml",
        "Zugriff verweigert",
        ("Der Zugriff wurde durch die Sicherheitsrichtlinie des Netzbetreibers verweigert",),
        r"durch die Sicherheitsrichtlinie des Netzbetreibers verweigert",
        ("Vorgang {ref}",),
        (("Content-Type", "text/xml; charset=utf-8"), ("Server", "Apache")),
    ),
    _fam(
        "fr_div",
        "fr",
        "Latin",
        "200",
        "FR",
        "div",
        "Site inaccessible",
        (
            "L'accès à ce site a été bloqué à la demande de l'autorité administrative compétente.",
            "Vous pouvez contester cette mesure auprès de la juridiction compétente.",
        ),
        r"bloqué à la demande de l'autorité administrative",
        ("Référence : {ref}",),
        (("Server", "nginx"),),
    ),
    _fam(
        "fr_meta_refresh",
        "fr",
        "Latin",
        "meta-refresh",
        "FR",
        "meta",
        "Redirection",
        ("Redirection vers la page d'information.",),
        r"http://information\.acces-restreint\.fr/",
        notice="http://information.acces-restreint.fr/?site={d}&ref={ref}",
    ),
    _fam(
        "es_card",
        "es",
        "Latin",
        "451",
        "ES,MX",
        "card",
        "Acceso bloqueado",
        ("El acceso a esta página ha sido bloqueado por orden judicial.",),
        r"ha sido bloqueado por orden judicial",
        ("Expediente {n}", "Fecha {date}"),
        (("Server", "Apache/2.4.29 (Ubuntu)"),),
    ),
    _fam(
        "mx_notice_redirect",
        "es",
        "Latin",
        "redirect",
        "MX",
        "redirect",
        "Redirección",
        (),
        r"http://aviso\.red-bloqueo\.mx/",
        notice="http://aviso.red-bloqueo.mx/sitio/{d}",
    ),
)

#: All blockpage families by name.
FAMILIES: dict[str, Family] = {f.name: f for f in FAMILY_LIST}

#: Families without a signature by default (about a quarter, spread over mechanisms and scripts).
_DEFAULT_UNFINGERPRINTED = frozenset(
    {
        "ru_api_json",
        "kz_meta_refresh",
        "ir_frame_filter",
        "tr_admin_table",
        "in_hindi_div",
        "id_card",
        "pk_urdu_rtl",
        "eg_fake_404",
        "th_court_table",
        "kr_card",
        "de_policy_xml",
        "us_silent_empty",
    }
)

#: The families fingerprinted by default.
DEFAULT_FINGERPRINTED: frozenset[str] = frozenset(FAMILIES) - _DEFAULT_UNFINGERPRINTED

#: Compatibility view: family name -> fingerprinted by default.
VENDORS: dict[str, bool] = {name: name in DEFAULT_FINGERPRINTED for name in FAMILIES}


_CSS_CLASSES = ("box", "wrap", "main", "notice", "msg", "content", "panel", "block", "info", "page")


def _family_class(name: str) -> str:
    """The class of a family's main container (its own word and number)."""
    digest = hashlib.sha256(name.encode()).digest()
    return f"{_CSS_CLASSES[digest[17] % len(_CSS_CLASSES)]}{digest[8] % 90 + 10}"


def _family_css(name: str) -> str:
    """A family's own stylesheet, derived from its name.

    Fonts, colours, sizes, the font's quoting, property order and whitespace all differ per family,
    so no "house style" is shared by every censor's pages.
    """
    digest = hashlib.sha256(name.encode()).digest()
    font = ("Tahoma", "Verdana", "Georgia", "Arial", "Trebuchet MS", "Segoe UI", "Courier New")[
        digest[0] % 7
    ]
    quote = ("", "'", '"')[digest[18] % 3] if " " not in font else ("'", '"')[digest[18] % 2]
    body = [
        f"font-family:{quote}{font}{quote},sans-serif",
        f"font-size:{12 + digest[1] % 6}px",
        f"background:#{digest[2:5].hex()}",
        f"color:#{digest[5:8].hex()}",
    ]
    box = [
        f"margin:{digest[9] % 40}px auto",
        f"max-width:{500 + digest[10] % 400}px",
        f"padding:{digest[11] % 30}px",
        f"border:{digest[12] % 4}px solid #{digest[13:16].hex()}",
    ]
    if digest[19] % 2:
        body.reverse()
    if digest[20] % 2:
        box.reverse()
    rules = (("body", body), (f".{_family_class(name)}", box))
    if digest[16] % 2:  # pretty-printed
        return "\n" + "".join(
            f"{sel} {{\n" + "".join(f"  {d.replace(':', ': ', 1)};\n" for d in decls) + "}\n"
            for sel, decls in rules
        )
    return "".join(f"{sel}{{{';'.join(decls)}}}" for sel, decls in rules)


def _fill(text: str, rng: random.Random, domain: str, category: str) -> str:
    """Fill the placeholders of one phrase with per-request values."""
    if "{" not in text:
        return text
    return (
        text.replace("{d}", domain)
        .replace("{cat}", CATEGORY_LABELS[category])
        .replace("{ref}", hex_id(rng, rng.choice((8, 10, 12, 16))))
        .replace("{n}", str(rng.randint(1000, 9999999)))
        .replace("{ip}", LOCAL_IPS[rng.getrandbits(1)])
        .replace("{a}", str(rng.randint(0, 255)))
        .replace("{b}", str(rng.randint(2, 250)))
        .replace(
            "{date}",
            f"2021-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
        )
    )


def _render_html(family: Family, title: str, paras: list[str]) -> str:
    """A family's HTML page in its layout."""
    lang, css = family.language, _family_css(family.name)
    cls = _family_class(family.name)
    if family.layout == "table":
        rows = "".join(
            f'<tr><td align="center"><font size="3">{p}</font></td></tr>\n' for p in paras
        )
        return (
            f'<HTML><HEAD><TITLE>{title}</TITLE>\n<META HTTP-EQUIV="Pragma" '
            'CONTENT="no-cache"></HEAD>\n'
            f'<BODY><TABLE border="0" cellpadding="6" width="{560 + len(family.name) * 4}">\n'
            "<tr><th "
            f'bgcolor="#{hashlib.sha256(family.name.encode()).hexdigest()[:6]}">{title}</th></tr>\n'
            f"{rows}</TABLE></BODY></HTML>\n"
        )
    if family.layout == "center":
        inner = "<br>\n".join(paras)
        return (
            f"<html><head><title>{title}</title></head>\n<body><center>\n<h2>{title}</h2>\n"
            f"<p>{inner}</p>\n</center></body></html>\n"
        )
    if family.layout == "card":
        inner = "".join(f'<p class="card-text">{p}</p>\n' for p in paras)
        return (
            f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, '
            f'initial-scale=1">\n<title>{title}</title>\n'
            f'<style>{css}</style>\n</head>\n<body>\n<div class="container {cls}">\n<div '
            'class="card">\n'
            f'<div class="card-header">{title}</div>\n<div '
            f'class="card-body">\n{inner}</div>\n</div>\n'
            "</div>\n</body>\n</html>\n"
        )
    if family.layout == "rtl":
        inner = "".join(f"<p>{p}</p>\n" for p in paras)
        return (
            f'<html dir="rtl" lang="{lang}"><head><meta http-equiv="Content-Type" '
            'content="text/html; '
            f'charset=utf-8"><title>{title}</title><style>{css}</style></head>\n'
            f'<body><div class="{cls}" style="direction:rtl;text-align:right">\n<h3>{title}</h3>\n'
            f"{inner}</div></body></html>\n"
        )
    if family.layout == "pre":
        return f"<html><body><pre>\n{title}\n\n" + "\n".join(paras) + "\n</pre></body></html>\n"
    inner = "".join(f"<p>{p}</p>\n" for p in paras)  # "div"
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta '
        f'charset="utf-8">\n<title>{title}</title>\n'
        f"<style>{css}</style>\n</head>\n<body>\n<div "
        f'class="{cls}">\n<h1>{title}</h1>\n{inner}</div>\n'
        "</body>\n</html>\n"
    )


def _render_structured(family: Family, title: str, paras: list[str], rng: random.Random) -> str:
    """A family's plain-text, JSON or XML body."""
    if family.layout == "plain":
        return "\n".join(paras) + "\n"
    if family.layout == "json":
        obj = {
            "status": int(_STATUS[family.mechanism][:3]),
            "error": title,
            "message": paras[0],
            "details": paras[1:],
            "id": hex_id(rng, 12),
        }
        return json.dumps(obj, ensure_ascii=False, indent=1 + len(family.name) % 3) + "\n"
    items = "".join(f"  <detail>{p}</detail>\n" for p in paras[1:])  # "xml"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<response>\n  '
        f"<code>{_STATUS[family.mechanism][:3]}</code>\n"
        f"  <title>{title}</title>\n  <reason>{paras[0]}</reason>\n{items}</response>\n"
    )


def _content_type(family: Family) -> str | None:
    """A family's own Content-Type (JSON, XML, plain text); None for HTML (drawn per response)."""
    for name, value in family.headers:
        if name == "Content-Type":
            return value
    return "text/plain" if family.layout == "plain" else None


def _headers(
    rng: random.Random, family: Family, body: str, *extra: tuple[str, str]
) -> tuple[tuple[str, str], ...]:
    """A family's response headers: the shared generic ones plus its own identity headers."""
    own = tuple((k, v) for k, v in family.headers if k != "Content-Type")
    content_type = _content_type(family)
    if content_type == "text/plain":
        content_type = rng.choice(HTML_TYPES).replace("html", "plain")
    return generic_headers(rng, body, content_type, own + extra)


def family_page(rng: random.Random, family_name: str, domain: str, category: str) -> Resp:
    """One blockpage of a family for a request of ``domain``."""
    family = FAMILIES[family_name]
    cert = family.name.replace("_", "-") + "-gw"
    if family.mechanism in ("redirect", "meta-refresh", "iframe"):
        target = _fill(family.notice.replace("{d}", domain), rng, domain, category)
        if family.mechanism == "redirect":
            status = rng.choice(
                (
                    "302 Found",
                    "302 Moved Temporarily",
                    "301 Moved Permanently",
                    "307 Temporary Redirect",
                )
            )
            body = rng.choice(
                (
                    "",
                    f'<a href="{target}">{status[4:]}</a>.\n',
                    f"<html><body>{status[4:]}</body></html>\n",
                )
            )
            return Resp(status, _headers(rng, family, body, ("Location", target)), body, cert)
        if family.mechanism == "meta-refresh":
            note = family.lines[0] if family.lines else ""
            body = (
                '<html><head><meta http-equiv="refresh" '
                f'content="{rng.choice((0, 0, 1, 3))};url={target}">'
                f"<title>{family.title}</title></head><body>{note}</body></html>\n"
            )
            body = shared_head(body, rng)
            return Resp("200 OK", _headers(rng, family, body), body, cert)
        body = (
            f'<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
            f'<title>{family.title}</title></head>\n<body style="margin:0">'
            f'<iframe src="{target}" style="width:100%;height:100%" frameborder="0" '
            'scrolling="no"></iframe>'
            f"<noscript>{family.lines[0]}</noscript></body></html>\n"
        )
        body = shared_head(body, rng)
        return Resp("200 OK", _headers(rng, family, body), body, cert)
    if family.mechanism == "near-empty":
        status = rng.choice(("200 OK", "403 Forbidden"))
        body = rng.choice(("", "", "\n", "<html></html>\n", "<html><body></body></html>"))
        return Resp(status, _headers(rng, family, body), body, cert)
    lines = [_fill(p, rng, domain, category) for p in family.lines]
    extras = [_fill(p, rng, domain, category) for p in family.extras if rng.random() < 0.6]
    paras = lines + extras
    if family.layout in ("plain", "json", "xml"):
        body = _render_structured(family, family.title, paras, rng)
    else:
        body = shared_head(_render_html(family, family.title, paras), rng)
    return Resp(_STATUS[family.mechanism], _headers(rng, family, body), body, cert)


def fingerprinted_set(
    fingerprinted: Collection[str] | None, extra: Collection[str] = ()
) -> frozenset[str]:
    """The chosen fingerprinted families (None: the default), checked against ``FAMILIES``.

    ``extra`` names more families that may be chosen (the variant families).
    """
    if fingerprinted is None:
        return DEFAULT_FINGERPRINTED
    chosen = frozenset(fingerprinted)
    known = set(FAMILIES) | set(extra)
    unknown = sorted(chosen - known)
    if unknown:
        raise ValueError(
            f"unknown blockpage families {unknown}; known: {', '.join([*FAMILIES, *extra])}"
        )
    return chosen
