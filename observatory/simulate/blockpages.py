"""Block pages the simulated censors serve: the body text of realistic national block pages, per country.

Each network serves one of its country's pages (networks differ, as real ISPs do). The verdict rules must
recognise them from `observatory/data/blockpages.toml`; `tests/test_simulate_observations.py` checks that
every page here matches one of its fingerprints once that file exists.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockPage:
    id: str
    code: int
    headers: tuple[tuple[str, str], ...]
    body: str


_PTA = BlockPage(
    id="pk_pta",
    code=200,
    headers=(("Content-Type", "text/html"), ("Server", "nginx")),
    body=(
        "<html><head><title>Site Restricted</title></head><body><center>"
        "<h2>Surf Safely!</h2><p>This site is restricted due to its content being in violation of the laws "
        "of Pakistan. The site you are trying to access contains content that is prohibited for viewership "
        "from within Pakistan.</p><p>Pakistan Telecommunication Authority</p></center></body></html>"
    ),
)
_PK_ISP = BlockPage(
    id="pk_isp_notice",
    code=200,
    headers=(("Content-Type", "text/html; charset=UTF-8"), ("Connection", "close")),
    body=(
        '<html><head><title>This site is restricted</title></head><body style="text-align:center">'
        '<img src="/pta-logo.png"><h1>This site is restricted</h1><p>This website is not accessible in '
        "accordance with the directives of the Pakistan Telecommunication Authority (PTA).</p></body></html>"
    ),
)
_IR = BlockPage(
    id="ir_peyvandha",
    code=403,
    headers=(("Content-Type", "text/html"), ("Connection", "close")),
    body=(
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1256">'
        '<title>M1-6</title></head><body>'
        '<iframe src="http://10.10.34.34?type=Invalid Site&policy=MainPolicy" '
        'style="width: 100%; height: 100%" scrolling="no" marginwidth="0" marginheight="0" '
        'frameborder="0" vspace="0" hspace="0"></iframe></body></html>'
    ),
)
_RU = BlockPage(
    id="ru_rkn",
    code=200,
    headers=(("Content-Type", "text/html; charset=utf-8"), ("Server", "nginx")),
    body=(
        "<html><head><title>Доступ ограничен</title></head><body><h1>Доступ к ресурсу ограничен</h1>"
        "<p>Доступ к информационному ресурсу ограничен на основании Федерального закона от 27.07.2006 "
        "№ 149-ФЗ «Об информации, информационных технологиях и о защите информации».</p>"
        "<p>Единый реестр: <a href=\"http://eais.rkn.gov.ru/\">http://eais.rkn.gov.ru/</a></p></body></html>"
    ),
)
_TR = BlockPage(
    id="tr_btk",
    code=200,
    headers=(("Content-Type", "text/html; charset=utf-8"),),
    body=(
        "<html><head><title>Telekomünikasyon İletişim Başkanlığı</title></head><body>"
        "<p>Bu internet sitesi hakkında Bilgi Teknolojileri ve İletişim Kurumu tarafından uygulanan 5651 "
        "sayılı kanun çerçevesinde idari tedbir uygulanmaktadır.</p></body></html>"
    ),
)
_ID = BlockPage(
    id="id_internet_positif",
    code=302,
    headers=(("Location", "http://internet-positif.org/"), ("Content-Type", "text/html")),
    body=(
        "<html><head><title>Internet Positif</title></head><body><h1>Internet Positif</h1>"
        "<p>Mohon maaf, situs yang Anda akses tidak dapat dibuka karena mengandung konten negatif.</p>"
        "</body></html>"
    ),
)
_PK_NAYATEL = BlockPage(
    id="pk_nayatel_safeweb",
    code=200,
    headers=(("Content-Type", "text/html"), ("Server", "Apache")),
    body=(
        "<html><head><title>Nayatel Safeweb</title></head><body><h2>Nayatel Safeweb</h2><p>As per your "
        "subscription of Nayatel Safeweb service, the website you are trying to access is blocked for your "
        "viewing.</p></body></html>"
    ),
)
_PK_MOBILINK = BlockPage(
    id="pk_mobilink_redirect",
    code=200,
    headers=(("Content-Type", "text/html"), ("Connection", "close")),
    body=(
        '<html><head><meta http-equiv="refresh" content="0; '
        'url=http://119.73.65.87:8080/redirect.html?accessurl=aHR0cHM6Ly93d3cuZmFjZWJvb2suY29tLw=="></head>'
        "<body></body></html>"
    ),
)
_GENERIC = BlockPage(
    id="generic_isp",
    code=451,
    headers=(("Content-Type", "text/html"), ("Connection", "close")),
    body=(
        "<html><head><title>451 Unavailable For Legal Reasons</title></head><body>"
        "<h1>Access Denied</h1><p>Access to this website has been blocked by order of the national "
        "regulator. If you believe this is an error, contact your service provider.</p></body></html>"
    ),
)

BY_COUNTRY: dict[str, tuple[BlockPage, ...]] = {
    "PK": (_PTA, _PK_ISP, _PK_MOBILINK, _PK_NAYATEL),
    "IR": (_IR,),
    "RU": (_RU,),
    "TR": (_TR,),
    "ID": (_ID,),
}
ALL: tuple[BlockPage, ...] = (_PTA, _PK_ISP, _PK_MOBILINK, _PK_NAYATEL, _IR, _RU, _TR, _ID, _GENERIC)


def blockpages_for(cc: str) -> tuple[BlockPage, ...]:
    """The block pages networks of this country serve (a generic regulator's page when we know none)."""
    return BY_COUNTRY.get(cc, (_GENERIC,))
