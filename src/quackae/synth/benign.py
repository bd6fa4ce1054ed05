"""Benign anomalies of the synthetic world: hosts that are not proper servers, and benign pages."""

from __future__ import annotations

import random

from quackae.synth.responses import HEAD_RE, Resp, hex_id, html_headers, shared_head

# --- Benign anomalies ---------------------------------------------------------------------------
#
# Two sorts. Host kinds: the vantage point is not the echo/discard/web server it should be (an
# SSH, SMTP, FTP, telnet or Redis daemon, a router, a fresh web server, a captive portal, a
# device spewing bytes). It answers the control probe the same way as the test, so Censored
# Planet sees the controls fail. Domain kinds: a normal server answers this test domain with a
# benign non-template page (CDN challenge or WAF, parking, a same-site redirect, errors), while
# its controls succeed.

#: Benign kinds whose host is not a proper echo/web server (all its tries, controls too, fail).
HOST_KINDS: tuple[str, ...] = (
    "ssh_banner",
    "smtp_banner",
    "ftp_banner",
    "telnet_banner",
    "redis_banner",
    "http_banner",
    "router_login",
    "router_default",
    "nginx_welcome",
    "apache_default",
    "iis_default",
    "captive_portal",
    "binary_garbage",
)
#: Benign kinds served by a proper server for some test domains (controls succeed).
DOMAIN_KINDS: tuple[str, ...] = (
    "cdn_challenge",
    "waf_block",
    "cdn_error",
    "parking",
    "same_site_redirect",
    "server_error",
    "hosting_suspended",
    "maintenance",
)
#: Every benign anomaly kind; "noise" is network noise (timeouts, resets of the path).
BENIGN_KINDS: tuple[str, ...] = (*HOST_KINDS, *DOMAIN_KINDS, "noise")

#: Kinds that are not HTTP: on a web scan the client sees a malformed response, no page.
BANNER_KINDS = frozenset(
    {"ssh_banner", "smtp_banner", "ftp_banner", "telnet_banner", "redis_banner", "binary_garbage"}
)

#: False-positive patterns per benign kind (those a signature can catch). Each matches every
#: received text of its kind and no blockpage.
BENIGN_PATTERNS: dict[str, str] = {
    "ssh_banner": r"^SSH-2\.0-",
    "smtp_banner": r"^220 [\w.-]+ E?SMTP",
    "ftp_banner": r"^220[ -].{0,80}FTP",
    "telnet_banner": r"^\ufffd\ufffd\x01\ufffd\ufffd\x03.{0,40}login: ",
    "redis_banner": r"^-(?:ERR unknown command|NOAUTH Authentication required)",
    "http_banner": r"<title>400 Bad Request</title>.{0,200}plain HTTP request",
    "router_login": r"WWW-Authenticate: Basic realm=\"[^\"]*(?:Router|Gateway|AP)",
    "router_default": r"<title>(?:Router|Wireless Gateway) (?:Status|Setup)</title>",
    "nginx_welcome": r"<title>Welcome to nginx!</title>",
    "apache_default": r"<title>Apache2 \w+ Default Page: It works</title>",
    "iis_default": r"<title>IIS Windows Server</title>",
    "captive_portal": r"Location: http://(?:portal|hotspot|login)\.[\w.-]+/(?:login|auth)",
    "cdn_challenge": r"<title>Just a moment\.\.\.</title>.{0,200}Checking your browser",
    "waf_block": r"Server: StratusEdge.{0,900}(?:Web Application Firewall|Request ID)",
    "cdn_error": r"<hr><center>StratusEdge</center>|<h1>Error \d{3}</h1>\n<p>The origin web server",
    "parking": r"https://parkcentral-domains\.com/\?d=",
    "same_site_redirect": r"Location: https://",
    "server_error": (
        r"<hr><center>(?:nginx|Apache|openresty|LiteSpeed|Microsoft-IIS|Caddy)</center>"
    ),
    "hosting_suspended": r"/cgi-sys/suspendedpage\.cgi",
    "maintenance": r"performing some maintenance at the moment",
}

#: Benign kinds given a false-positive signature by default (common servers and CDN pages).
DEFAULT_FALSE_POSITIVE_KINDS: frozenset[str] = frozenset(
    {
        "nginx_welcome",
        "apache_default",
        "iis_default",
        "cdn_challenge",
        "cdn_error",
        "parking",
        "hosting_suspended",
        "ssh_banner",
    }
)

#: Compatibility view: benign page kind -> covered by a default false-positive signature.
BENIGN_PAGES: dict[str, bool] = {
    k: k in DEFAULT_FALSE_POSITIVE_KINDS for k in BENIGN_KINDS if k != "noise"
}

_SERVERS = (
    "nginx",
    "Apache",
    "openresty",
    "LiteSpeed",
    "nginx/1.18.0",
    "Apache/2.4.41 (Ubuntu)",
    "Microsoft-IIS/8.5",
    "Caddy",
)


def banner_text(kind: str, rng: random.Random) -> str:
    """The first bytes a non-HTTP daemon sends (or garbage), as the client reads them."""
    if kind == "ssh_banner":
        return rng.choice(
            (
                "SSH-2.0-OpenSSH_7.4\r\n",
                "SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.3\r\n",
                "SSH-2.0-dropbear_2019.78\r\n",
                "SSH-2.0-ROSSSH\r\n",
            )
        )
    if kind == "smtp_banner":
        host = rng.choice(("mail", "mx1", "smtp")) + f".host{rng.randint(1, 999)}.net"
        return f"220 {host} {rng.choice(('ESMTP Postfix', 'ESMTP Exim 4.94', 'ESMTP ready'))}\r\n"
    if kind == "ftp_banner":
        return rng.choice(
            (
                "220 (vsFTPd 3.0.3)\r\n",
                "220 ProFTPD Server (FTP) ready.\r\n",
                "220-FileZilla Server 0.9.60 beta FTP\r\n",
                "220 Microsoft FTP Service\r\n",
            )
        )
    if kind == "telnet_banner":
        return (
            "\ufffd\ufffd\x01\ufffd\ufffd\x03\ufffd\ufffd\x18\r\n"
            + rng.choice(("", "BusyBox v1.19\r\n"))
            + rng.choice(("login: ", "DVR login: ", "router login: "))
        )
    if kind == "redis_banner":
        return rng.choice(
            (
                "-ERR unknown command 'GET', with args beginning with: '/' \r\n",
                "-NOAUTH Authentication required.\r\n",
            )
        )
    # Bytes that are not UTF-8 reach the JSON as U+FFFD, as Go's encoder writes them.
    return "".join(chr(c) if c < 128 else "\ufffd" for c in rng.randbytes(rng.randint(4, 40)))


def _page(
    rng: random.Random,
    status: str,
    body: str,
    server: str | None,
    cert: str,
    *extra: tuple[str, str],
) -> Resp:
    """A benign HTML response with a server header."""
    head = (("Server", server),) if server else ()
    body = shared_head(body, rng)
    return Resp(status, html_headers(rng, body, *head, *extra), body, cert)


def _error_page(status: str, server: str) -> str:
    return (
        f"<html>\n<head><title>{status}</title></head>\n<body>\n<center><h1>{status}</h1>"
        f"</center>\n<hr><center>{server}</center>\n</body>\n</html>\n"
    )


#: Benign kinds whose real pages carry a stylesheet and a language attribute, as real ones do
#: (the default pages of nginx, Apache and IIS, CDN and WAF pages, parking and maintenance pages).
_BENIGN_DRESS: dict[str, tuple[str, str]] = {
    "nginx_welcome": (
        "",
        "html{color-scheme:light dark}body{width:35em;margin:0 "
        "auto;font-family:Tahoma,Verdana,Arial,sans-serif}",
    ),
    "apache_default": (
        "",
        "*{margin:0;padding:0}body,html{padding:3px 3px 3px "
        "3px;background-color:#D8DBE2;font-family:Verdana}",
    ),
    "iis_default": (
        "en",
        "body{color:#000000;background-color:#0072C6;margin:0}#container{margin-left:auto;margin-right:auto;text-align:center}",
    ),
    "cdn_challenge": (
        "en-US",
        "html,body{width:100%;height:100%;margin:0;padding:0}body{background-color:#ffffff;color:#000000;font-family:system-ui}",
    ),
    "waf_block": (
        "en-US",
        "body{font-family:-apple-system,system-ui,sans-serif;margin:2em}h1{font-size:1.6em}",
    ),
    "parking": ("en", "body{background:#f2f2f2;font-family:Arial,sans-serif}a{color:#0066cc}"),
    "maintenance": (
        "en",
        "body{text-align:center;padding:150px;font:20px "
        "Helvetica,sans-serif;color:#333}article{display:block;width:650px;margin:0 auto}",
    ),
}


def _dress(kind: str, body: str) -> str:
    """A benign page with its kind's stylesheet (after <head>) and language attribute, if any."""
    lang, css = _BENIGN_DRESS.get(kind, ("", ""))
    if css:
        body = HEAD_RE.sub(lambda m: m.group(0) + f"<style>{css}</style>\n", body, count=1)
    if lang:
        body = body.replace("<html>", f'<html lang="{lang}">', 1)
    return body


def benign_http(kind: str, rng: random.Random, domain: str) -> Resp:
    """One benign HTTP response of a kind (host or domain kind with a page)."""
    if kind == "http_banner":
        body = (
            "<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n<center><h1>400 "
            "Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port"
            "</center>\r\n</body>\r\n</html>\r\n"
        )
        return _page(rng, "400 Bad Request", body, "nginx", "localhost")
    if kind == "router_login":
        realm = rng.choice(("Broadband Router", "Home Gateway", "Wireless AP", "DSL Router"))
        body = (
            "<HTML><HEAD><TITLE>401 Unauthorized</TITLE></HEAD>\n<BODY><H1>401 Unauthorized</H1>\n"
            "Authorization required to access this device.</BODY></HTML>\n"
        )
        return _page(
            rng,
            "401 Unauthorized",
            body,
            rng.choice(("micro_httpd", "GoAhead-Webs", "httpd")),
            "router",
            ("WWW-Authenticate", f'Basic realm="{realm}"'),
        )
    if kind == "router_default":
        title = rng.choice(("Router Status", "Wireless Gateway Setup", "Router Setup"))
        body = (
            f"<html><head><title>{title}</title>\n<script>var "
            f"fw='V{rng.randint(1, 4)}.0.{rng.randint(0, 99)}';"
            '</script></head>\n<body onload="init()"><div id="menu"></div>\n<form name="login">'
            'Password <input type="password" name="pw"></form></body></html>\n'
        )
        return _page(
            rng, "200 OK", body, rng.choice(("lighttpd", "mini_httpd/1.19", None)), "router"
        )
    if kind == "nginx_welcome":
        body = (
            "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n"
            "<h1>Welcome to nginx!</h1>\n<p>"
            + rng.choice(
                (
                    "The web server works; further configuration is needed.",
                    "If you see this page, the nginx web server is successfully installed and "
                    "working.",
                )
            )
            + "</p>\n</body>\n</html>\n"
        )
        body = _dress(kind, body)
        return _page(rng, "200 OK", body, f"nginx/1.{rng.randint(14, 24)}.0", "localhost")
    if kind == "apache_default":
        distro = rng.choice(("Ubuntu", "Debian"))
        body = (
            f"<html>\n<head>\n<title>Apache2 {distro} Default Page: It works</title>\n</head>\n"
            '<body>\n<div class="main_page">\n<p>This is the default welcome page of the Apache2 '
            "server after installation.</p>\n</div>\n</body>\n</html>\n"
        )
        body = _dress(kind, body)
        return _page(rng, "200 OK", body, f"Apache/2.4.{rng.randint(29, 52)}", "localhost")
    if kind == "iis_default":
        body = (
            "<!DOCTYPE html>\n<html>\n<head>\n<title>IIS Windows Server</title>\n</head>\n<body>\n"
            '<div id="container"><img src="iisstart.png" alt="IIS"></div>\n</body>\n</html>\n'
        )
        body = _dress(kind, body)
        return _page(rng, "200 OK", body, "Microsoft-IIS/10.0", "WIN-SRV")
    if kind == "captive_portal":
        host = (
            rng.choice(("portal", "hotspot", "login"))
            + "."
            + rng.choice(("guestwifi.net", "cafe-net.com", "hotel-wlan.de"))
        )
        path = rng.choice(("login", "auth"))
        target = f"http://{host}/{path}?orig={domain}&mac={hex_id(rng, 12)}"
        body = f'<html><body>Redirecting to <a href="{target}">the sign-in page</a></body></html>\n'
        return _page(rng, "302 Found", body, None, "portal", ("Location", target))
    if kind == "cdn_challenge":
        body = (
            "<!DOCTYPE html>\n<html><head><title>Just a moment...</title></head>\n<body>\n"
            f"<h2>Checking your browser before accessing {domain}.</h2>\n"
            f"<p>This process is automatic. Ray ID: {hex_id(rng, 16)}</p>\n</body></html>\n"
        )
        body = _dress(kind, body)
        return _page(
            rng,
            "503 Service Unavailable",
            body,
            "StratusEdge",
            "StratusEdge Inc",
            ("Cache-Control", "no-store"),
        )
    if kind == "waf_block":
        body = (
            "<!DOCTYPE html>\n<html><head><title>Request rejected</title></head>\n<body>\n"
            "<h1>Sorry, you have been blocked</h1>\n<p>The Web Application Firewall of this site "
            "stopped a request it considered unsafe.</p>\n<p>Request ID: "
            f"{hex_id(rng, 20)}</p>\n</body></html>\n"
        )
        body = _dress(kind, body)
        return _page(rng, "403 Forbidden", body, "StratusEdge", "StratusEdge Inc")
    if kind == "cdn_error":
        status = rng.choice(
            ("502 Bad Gateway", "504 Gateway Time-out", "520 Unknown Error", "404 Not Found")
        )
        body = (
            _error_page(status, "StratusEdge")
            if rng.random() < 0.5
            else f"<!DOCTYPE html>\n<html><head><title>{domain} | {status}</title></head>\n<body>\n"
            f"<h1>Error {status[:3]}</h1>\n<p>The origin web server of {domain} is not reachable. "
            f"Ray ID: {hex_id(rng, 16)}</p>\n</body></html>\n"
        )
        return _page(rng, status, body, "StratusEdge", "StratusEdge Inc")
    if kind == "parking":
        offer = rng.choice(
            ("This domain is parked free of charge.", "This domain may be for sale.")
        )
        body = (
            f"<html><head><title>{domain}</title></head>\n<body>\n<h1>{domain}</h1>\n"
            f"<p>{offer}</p>\n"
            f'<a href="https://parkcentral-domains.com/?d={domain}&amp;s={rng.randint(1, 9999)}">'
            "Related searches</a>\n</body></html>\n"
        )
        body = _dress(kind, body)
        return _page(rng, "200 OK", body, "Apache", "parkcentral")
    if kind == "same_site_redirect":
        target = rng.choice(
            (
                f"https://{domain}/",
                f"https://{domain}/index.php",
                f"https://www.{domain.removeprefix('www.')}/",
            )
        )
        body = (
            "<html><head><title>301 Moved Permanently</title></head><body><h1>Moved Permanently"
            f'</h1><p>The document has moved <a href="{target}">here</a>.</p></body></html>\n'
        )
        status = rng.choice(("301 Moved Permanently", "302 Found", "308 Permanent Redirect"))
        return _page(rng, status, body, rng.choice(_SERVERS), domain, ("Location", target))
    if kind == "server_error":
        status, server = (
            rng.choice(
                (
                    "502 Bad Gateway",
                    "500 Internal Server Error",
                    "503 Service Unavailable",
                    "504 Gateway Time-out",
                )
            ),
            rng.choice(_SERVERS),
        )
        return _page(rng, status, _error_page(status, server.split("/")[0]), server, "localhost")
    if kind == "hosting_suspended":
        contact = rng.choice(
            (
                "Contact your hosting provider for more information.",
                "Please contact the billing department.",
            )
        )
        body = (
            "<html><head><title>Account Suspended</title></head>\n<body>\n"
            "<h1>This Account has been suspended.</h1>\n"
            f"<p>{contact}</p>\n"
            '<a href="/cgi-sys/suspendedpage.cgi">details</a>\n</body></html>\n'
        )
        return _page(rng, "200 OK", body, rng.choice(("Apache", "LiteSpeed")), "cpanel")
    title, line = rng.choice(
        (
            ("Site Maintenance", "We&rsquo;ll be back soon!"),
            ("Under Maintenance", "Scheduled maintenance"),
            ("Temporarily unavailable", "This site is temporarily down for maintenance"),
        )
    )
    body = (
        f"<!doctype html>\n<html><head><title>{title}</title></head>\n<body>\n"
        f"<article><h1>{line}</h1>\n<p>Sorry for the inconvenience; we are "
        "performing some maintenance at the moment.</p></article>\n</body></html>\n"
    )
    body = _dress(kind, body)
    return _page(rng, "503 Service Unavailable", body, None, domain, ("Retry-After", "3600"))
