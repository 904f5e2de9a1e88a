#!/usr/bin/env python3
"""A large snigate configuration for benches/scale-10k.sh and bench-scale.sh.

A hosting farm's shape: N certificates and N routes, of which W are
wildcards.  Certificates are minted fast: one lab CA (ECDSA P-256) signs
every leaf, and every leaf has the same key (ECDSA P-256, or RSA 2048 with
--key rsa) (python3-cryptography; about 2 s for 10,000
on one core), and are cached in --dir (made again only when the counts
change).  Names:

  site00001.sp.contoso.test ...      exact names, one certificate and one
                                     route each
  *.t0001.apps.contoso.test ...      W wildcards, one certificate (one
                                     label deep, as TLS allows) and one
                                     route (any depth, as routes allow) each

When --bench-certs names the folder of ../shared/bench/run.sh
($BENCH_CERT_DIR), its three certificates (a.test RSA, b.test ECDSA, the
fallback) are declared first and count towards N, and a.test and b.test
get a route each: the harness's SNI checks and load run unchanged on top of
the large table.

Subcommands
  certs    mint (or keep) the certificates in --dir
  config   certs, then write the configuration to --out
  sample   print K (name, route host) pairs to try, one per line, as JSON
"""
import argparse
import datetime
import json
import os
import random
import sys

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # pragma: no cover
    sys.exit("scale_config.py needs python3-cryptography (apt-get install python3-cryptography)")

SEED = 15  # issue 15: fixed, so every run draws the same samples
MANIFEST = "manifest.json"
UPSTREAMS = 10


def exact_name(i):
    return f"site{i:05d}.sp.contoso.test"


def wildcard_suffix(j):
    return f"t{j:04d}.apps.contoso.test"


def plan(total, wildcards, harness):
    """(certificate names, route hosts): `total` of each, harness first."""
    exact = total - wildcards - (3 if harness else 0)
    if exact < 0:
        sys.exit("more wildcards (and harness certificates) than certificates")
    return exact, wildcards


def mint(d, exact, wildcards, key="ecdsa"):
    """Writes ca.crt, leaf.key (mode 0600) and one chain per name into d
    (kept when the manifest says the same counts and key type)."""
    os.makedirs(d, exist_ok=True)
    want = {"exact": exact, "wildcards": wildcards, "key": key, "version": 1}
    mpath = os.path.join(d, MANIFEST)
    try:
        with open(mpath) as f:
            if json.load(f) == want:
                return
    except (OSError, ValueError):
        pass
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "snigate scale lab CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    if key == "rsa":
        leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        leaf_key = ec.generate_private_key(ec.SECP256R1())
    with open(os.path.join(d, "ca.crt"), "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(os.open(os.path.join(d, "leaf.key"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(
            leaf_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    names = [exact_name(i) for i in range(exact)] + ["*." + wildcard_suffix(j) for j in range(wildcards)]
    for serial, name in enumerate(names, start=2):
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(leaf_key.public_key())
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=800))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(eku, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        with open(os.path.join(d, file_stem(name) + ".crt"), "wb") as f:
            f.write(leaf.public_bytes(serialization.Encoding.PEM) + ca_pem)
    with open(mpath, "w") as f:
        json.dump(want, f)


def file_stem(name):
    return name.replace("*", "_wildcard")


def config(a):
    harness = a.bench_certs
    exact, wildcards = plan(a.certs, a.wildcards, harness)
    mint(a.dir, exact, wildcards, a.key)
    out = []
    w = out.append
    w("[runtime]\nworkers = 1\n")
    w(f'[log]\nlevel = "{a.log_level}"\n')
    w('[timeouts]\nclient_idle = "300s"\n')
    if harness:
        for name in ("rsa", "ecdsa", "fallback"):
            w(f'[[certificate]]\nname = "{name}"\nchain = "{harness}/{name}.crt"\nkey = "{harness}/{name}.key"\n')
        fallback = "fallback"
    else:
        fallback = "c00000"
    key = os.path.join(a.dir, "leaf.key")
    names = [exact_name(i) for i in range(exact)] + ["*." + wildcard_suffix(j) for j in range(wildcards)]
    for i, name in enumerate(names):
        chain = os.path.join(a.dir, file_stem(name) + ".crt")
        w(f'[[certificate]]\nname = "c{i:05d}"\nchain = "{chain}"\nkey = "{key}"\n')
    w(
        f'[[listener]]\nname = "main"\nbind = ["{a.listen}"]\nfallback_certificate = "{fallback}"\n'
        f'default_upstream = "u0"\nalpn = ["http/1.1"]\nmax_connections_per_ip = 0\n'
    )
    hosts = (["a.test", "b.test"] if harness else []) + [exact_name(i) for i in range(exact)]
    hosts += ["*." + wildcard_suffix(j) for j in range(wildcards)]
    # Route count = certificate count: top up with exact names past the certificates'.
    extra = a.certs - len(hosts)
    hosts += [exact_name(exact + i) for i in range(max(extra, 0))]
    for i, host in enumerate(hosts):
        w(f'[[route]]\nname = "r{i:05d}"\nhosts = ["{host}"]\nupstream = "u{i % UPSTREAMS}"\n')
    for u in range(UPSTREAMS):
        w(f'[[upstream]]\nname = "u{u}"\nservers = ["{a.backend}"]\n')
    with open(a.out, "w") as f:
        f.write("\n".join(out))
    print(f"{a.out}: {a.certs} certificates, {len(hosts)} routes ({wildcards} wildcards)", file=sys.stderr)


def sample(a):
    """K names to try: exact names, and names one and two labels below a
    wildcard, drawn with a fixed seed."""
    exact, wildcards = plan(a.certs, a.wildcards, a.bench_certs)
    rng = random.Random(SEED)
    for _ in range(a.k):
        if rng.random() < 0.5 or not wildcards:
            print(json.dumps({"sni": exact_name(rng.randrange(exact)), "certificate": "exact"}))
        else:
            print(json.dumps({"sni": f"x{rng.randrange(1000)}." + wildcard_suffix(rng.randrange(wildcards)),
                              "certificate": "wildcard"}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", required=True, help="certificate cache folder")
    common.add_argument("--certs", type=int, default=10000)
    common.add_argument("--wildcards", type=int, default=1000)
    common.add_argument("--key", choices=["ecdsa", "rsa"], default="ecdsa", help="the leaves' shared key")
    common.add_argument("--bench-certs", help="run.sh's $BENCH_CERT_DIR: declare its three certificates first")
    sub.add_parser("certs", parents=[common])
    c = sub.add_parser("config", parents=[common])
    c.add_argument("--out", required=True)
    c.add_argument("--listen", default="127.0.0.1:8443")
    c.add_argument("--backend", default="127.0.0.1:8080")
    c.add_argument("--log-level", default="info")
    s = sub.add_parser("sample", parents=[common])
    s.add_argument("-k", type=int, default=50)
    a = p.parse_args()
    if a.cmd == "certs":
        mint(a.dir, *plan(a.certs, a.wildcards, a.bench_certs), a.key)
    elif a.cmd == "config":
        config(a)
    else:
        sample(a)


if __name__ == "__main__":
    main()
