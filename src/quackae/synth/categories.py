"""Test-domain categories of the synthetic world: the words names are made of, and their labels.

The lowest module of the generator: the world draws domains from ``CATEGORY_WORDS`` and blockpages
name a domain's category with ``CATEGORY_LABELS``.
"""

from __future__ import annotations

CATEGORY_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], int]] = {
    # category: (prefixes, suffixes, tlds, count)
    "news": (
        ("daily", "free", "world", "metro", "nation", "east", "open", "global", "city", "north"),
        ("herald", "press", "ledger", "gazette", "report", "tribune", "voice", "dispatch", "post"),
        ("com", "net", "org", "news"),
        24,
    ),
    "social": (
        ("chat", "friend", "link", "buzz", "snap", "share", "talk", "meet"),
        ("hub", "space", "circle", "book", "wall", "feed", "zone"),
        ("com", "net", "app"),
        14,
    ),
    "adult": (
        ("hot", "xxx", "sexy", "adult", "naughty", "red", "night", "velvet"),
        ("tube", "cams", "videos", "pics", "club", "lounge", "zone"),
        ("com", "xxx", "net"),
        20,
    ),
    "gambling": (
        ("lucky", "royal", "jackpot", "golden", "ace", "mega", "vegas"),
        ("casino", "bet", "poker", "slots", "spin", "odds"),
        ("com", "bet", "net"),
        15,
    ),
    "human_rights": (
        ("rights", "justice", "liberty", "dignity", "witness", "amnesty"),
        ("watch", "now", "network", "alliance", "project", "forum"),
        ("org", "net"),
        14,
    ),
    "lgbtq": (
        ("rainbow", "pride", "queer", "equal", "out"),
        ("voices", "community", "center", "alliance", "youth", "life"),
        ("org", "com", "net"),
        12,
    ),
    "circumvention": (
        ("hide", "free", "open", "secure", "tunnel", "proxy", "stealth", "ghost"),
        ("vpn", "gate", "route", "way", "surf", "browse"),
        ("com", "net", "io", "org"),
        15,
    ),
    "religion": (
        ("faith", "spirit", "sacred", "light", "grace"),
        ("path", "fellowship", "teachings", "house"),
        ("org", "net"),
        8,
    ),
    "political": (
        ("citizens", "reform", "democracy", "opposition", "people"),
        ("movement", "party", "front", "union", "forum"),
        ("org", "net", "info"),
        12,
    ),
    "filesharing": (
        ("torrent", "file", "warez", "share", "upload", "mega"),
        ("bay", "box", "drop", "locker", "cloud"),
        ("to", "cc", "com", "net"),
        12,
    ),
    "commerce": (
        ("shop", "buy", "market", "deal", "store", "cart"),
        ("mart", "direct", "world", "plus", "express"),
        ("com", "net", "shop"),
        15,
    ),
    "tech": (
        ("code", "dev", "cloud", "byte", "data", "stack"),
        ("works", "labs", "base", "forge", "hub"),
        ("com", "io", "dev"),
        12,
    ),
    "search": (("find", "seek", "look", "query"), ("it", "er", "engine"), ("com",), 5),
    "education": (
        ("learn", "study", "campus", "open", "smart"),
        ("academy", "university", "school", "courses"),
        ("edu", "org", "com"),
        10,
    ),
    "sports": (
        ("goal", "score", "match", "team", "arena"),
        ("live", "center", "daily", "zone"),
        ("com", "net"),
        8,
    ),
    "entertainment": (
        ("movie", "show", "star", "fun", "game"),
        ("time", "world", "box", "planet"),
        ("com", "tv", "net"),
        8,
    ),
}

CATEGORY_LABELS = {
    "news": "News and Media",
    "social": "Social Networking",
    "adult": "Pornography",
    "gambling": "Gambling",
    "human_rights": "Advocacy Organizations",
    "lgbtq": "LGBT",
    "circumvention": "Proxy Avoidance",
    "religion": "Religion",
    "political": "Political Organizations",
    "filesharing": "Peer-to-Peer File Sharing",
    "commerce": "Shopping",
    "tech": "Information Technology",
    "search": "Search Engines",
    "education": "Education",
    "sports": "Sports",
    "entertainment": "Entertainment",
}
