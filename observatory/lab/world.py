"""The lab's "rest of the internet": authoritative DNS, the platforms' web servers, a CA, the control helper.

Real servers: dnsmasq answers for every catalog domain (and subdomain) with its platform's address; nginx
serves HTTP and HTTPS for all of them with one certificate from the lab's own CA (the probes and the helper
are told to trust it). Every platform's server also answers for any other name (a shared front end), which
is what lets a test show that the censor's SNI match spares another name on the same address.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from observatory import catalog

DOWNLOAD_PATH = "/lab-download.bin"
DOWNLOAD_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CertFiles:
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "observatory lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def make_ca(directory: Path, cn: str) -> tuple[CertFiles, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    files = CertFiles(directory / f"{cn.replace(' ', '-')}.pem", directory / f"{cn.replace(' ', '-')}.key")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, files.key)
    return files, key, cert


def issue_cert(directory: Path, stem: str, names: list[str], ips: list[str],
               ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate) -> CertFiles:
    """A server certificate for `names` (and their subdomains) signed by the given CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = []
    for n in names:
        sans += [x509.DNSName(n), x509.DNSName(f"*.{n}")]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(_name(names[0] if names else stem))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = CertFiles(directory / f"{stem}.pem", directory / f"{stem}.key")
    # nginx wants the chain in the certificate file: leaf first, then the CA.
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                           + ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, files.key)
    return files


def all_domains() -> list[str]:
    return [d for p in catalog.platforms().values() for d in p.domains]


def dnsmasq_argv(*, listen: str, pid_file: Path, log_file: Path, addresses: dict[str, str | None],
                 upstream: str | None = None) -> list[str]:
    """A dnsmasq of our own (never the system's config): `addresses` maps a domain to an answer, or to
    None for NXDOMAIN; `upstream` makes it a forwarding resolver. No cache, so every answer is fresh."""
    argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-hosts", "--no-resolv",
            "--bind-interfaces", f"--listen-address={listen}", f"--pid-file={pid_file}",
            f"--log-facility={log_file}", "--log-queries", "--cache-size=0", "--user=root",
            "--dns-forward-max=500"]
    if upstream:
        argv.append(f"--server={upstream}")
    for domain, answer in addresses.items():
        argv.append(f"--address=/{domain}/{answer or ''}")
    return argv


def world_dns_addresses() -> dict[str, str | None]:
    from observatory.lab.plan import platform_address

    return {d: platform_address(p.id) for p in catalog.platforms().values() for d in p.domains}


def nginx_conf(*, prefix: Path, cert: CertFiles, listen: list[str], sites: dict[str, str],
               default_root: str) -> str:
    """An nginx configuration of our own: its own pid, logs and temp paths under `prefix`.

    `sites` maps a server_name list (nginx syntax, e.g. ".facebook.com .fb.com") to a document root."""
    temp = "\n".join(f"    {k}_temp_path {prefix}/{k};" for k in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    listens = "\n".join(f"        listen {a}:80;\n        listen {a}:443 ssl;" for a in listen)
    default_listens = "\n".join(f"        listen {a}:80 default_server;\n"
                                f"        listen {a}:443 ssl default_server;" for a in listen)
    servers = []
    for names, root in sites.items():
        servers.append(f"""    server {{
{listens}
        server_name {names};
        root {root};
        location / {{ try_files $uri /index.html; }}
    }}""")
    server_blocks = "\n".join(servers)
    return f"""# written by observatory lab: one instance, nothing shared with the system's nginx
daemon off;
user root;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
{temp}
    types {{ text/html html; application/octet-stream bin; image/x-icon ico; }}
    default_type text/html;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate {cert.cert};
    ssl_certificate_key {cert.key};
    sendfile on;
    keepalive_timeout 5;
    server {{
{default_listens}
        server_name _;
        root {default_root};
        location / {{ try_files $uri /index.html; }}
    }}
{server_blocks}
}}
"""


PAGE_BYTES = 64 * 1024


def write_site(directory: Path, title: str, body: str) -> Path:
    """A page of realistic weight (the probe's throughput download fetches the page itself: a tiny page
    would fit in one burst of any shaper and hide throttling)."""
    import os

    directory.mkdir(parents=True, exist_ok=True)
    pad = os.urandom(PAGE_BYTES * 3 // 4).hex()[:PAGE_BYTES]
    (directory / "index.html").write_text(
        f"<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>{body}"
        f"<div hidden data-pad=\"{pad}\"></div></body></html>\n")
    return directory


def write_platform_sites(base: Path) -> dict[str, str]:
    """One document root per platform, each with its page and the download that measures throughput."""
    base.mkdir(parents=True, exist_ok=True)
    blob = base / "download.bin"
    if not blob.exists():
        # Incompressible, so a throttled link cannot be outrun by compression.
        import os

        blob.write_bytes(os.urandom(DOWNLOAD_BYTES))
    sites: dict[str, str] = {}
    for p in catalog.platforms().values():
        root = write_site(base / p.id, f"{p.name} (lab)", f"<p>The lab's {p.name}.</p>")
        link = root / DOWNLOAD_PATH.lstrip("/")
        if not link.exists():
            link.symlink_to(blob)
        sites[" ".join(f".{d}" for d in p.domains)] = str(root)
    return sites
