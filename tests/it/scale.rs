//! A hosting farm's configuration: 10,000 certificates and 10,000 routes,
//! 1,000 of them wildcards, in one proxy. Sampled names (fixed seed) get
//! the certificate and the route a small configuration would give them:
//! real handshakes for the certificate, the listener's route table and
//! real requests for the route, the 421 check for a Host the certificate
//! does not cover; and again after a reload. Correctness only: how fast it
//! loads and serves is benches/scale-10k.sh's question.

use std::collections::HashMap;
use std::time::Duration;

use rcgen::KeyPair;
use snigate::route::RouteMatch;
use snigate::server::Proxy;

use crate::common::*;

const EXACT: usize = 9_000;
const WILDCARDS: usize = 1_000;
const BACKENDS: usize = 4;

/// Minting, loading and checking 10,000 certificates on a busy machine.
const LIMIT: Duration = Duration::from_secs(180);

fn exact_name(i: usize) -> String {
    format!("site{i}.sp.test")
}

/// The parent domain of wildcard `j`; every tenth lies below the one
/// before it (`*.n9.t8.apps.test` below `*.t8.apps.test`).
fn wildcard_parent(j: usize) -> String {
    match j % 10 {
        9 => format!("n{j}.t{}.apps.test", j - 1),
        _ => format!("t{j}.apps.test"),
    }
}

/// Deterministic samples: xorshift64 from a fixed seed.
struct Samples(u64);

impl Samples {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

struct Farm {
    _tmp: tempfile::TempDir,
    proxy: Proxy,
    ca: rustls::pki_types::CertificateDer<'static>,
    /// The DER served for exact name `i` and wildcard `j`.
    exact: Vec<rustls::pki_types::CertificateDer<'static>>,
    wildcard: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// Certificate `i` and route `i` for each exact name, then certificate and
/// route for each wildcard; route `k` goes to backend `k % BACKENDS`.
async fn farm() -> Farm {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let kp = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key_file = tmp.path().join("shared.key");
    write_secret(&key_file, kp.serialize_pem().as_bytes());
    let mut backends = Vec::new();
    for b in 0..BACKENDS {
        backends.push(backend(&format!("b{b}")).await);
    }
    let mut toml = String::new();
    let mut exact = Vec::new();
    for i in 0..EXACT {
        let leaf = pki.leaf_with_key(&format!("c{i}"), &[&exact_name(i)], &kp, &key_file);
        toml += &cert_toml(&format!("c{i}"), &leaf);
        exact.push(leaf.der);
    }
    let mut wildcard = Vec::new();
    for j in 0..WILDCARDS {
        let name = format!("*.{}", wildcard_parent(j));
        let leaf = pki.leaf_with_key(&format!("w{j}"), &[&name], &kp, &key_file);
        toml += &cert_toml(&format!("w{j}"), &leaf);
        wildcard.push(leaf.der);
    }
    toml += "[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\n\
             fallback_certificate = \"c0\"\ndefault_upstream = \"u0\"\n\n";
    let hosts = (0..EXACT)
        .map(exact_name)
        .chain((0..WILDCARDS).map(|j| format!("*.{}", wildcard_parent(j))));
    for (k, host) in hosts.enumerate() {
        toml += &format!(
            "[[route]]\nname = \"r{k}\"\nhosts = [\"{host}\"]\nupstream = \"u{}\"\n\n",
            k % BACKENDS
        );
    }
    for (b, be) in backends.iter().enumerate() {
        toml += &format!(
            "[[upstream]]\nname = \"u{b}\"\nservers = [\"{}\"]\n\n",
            be.addr
        );
    }
    let proxy = start_proxy(tmp.path(), &toml).await;
    Farm {
        ca: pki.ca_der.clone(),
        _tmp: tmp,
        proxy,
        exact,
        wildcard,
    }
}

fn write_secret(path: &std::path::Path, bytes: &[u8]) {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).unwrap().write_all(bytes).unwrap();
}

/// The route a host should take: its own exact route, else the wildcard
/// with the longest parent it lies below, else the default (`None`).
fn expected_route(host: &str) -> Option<usize> {
    let parents: HashMap<String, usize> = (0..WILDCARDS)
        .map(|j| (wildcard_parent(j), EXACT + j))
        .collect();
    if let Some(i) = host
        .strip_prefix("site")
        .and_then(|rest| rest.strip_suffix(".sp.test"))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&i| i < EXACT)
    {
        return Some(i);
    }
    host.match_indices('.')
        .filter(|&(at, _)| at > 0)
        .find_map(|(at, _)| parents.get(&host[at + 1..]).copied())
}

/// Sampled hosts: exact names (some unknown), names one and several labels
/// below wildcards (some nested), and wildcard parents themselves.
fn sample_hosts(samples: &mut Samples, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| match samples.below(5) {
            0 => exact_name(samples.below(EXACT + 500)),
            1 => format!("x.{}", wildcard_parent(samples.below(WILDCARDS))),
            2 => format!("a.b.{}", wildcard_parent(samples.below(WILDCARDS))),
            3 => wildcard_parent(samples.below(WILDCARDS)),
            _ => format!(
                "y.n{}.t{}.apps.test",
                samples.below(WILDCARDS),
                samples.below(WILDCARDS)
            ),
        })
        .collect()
}

/// The listener's route table answers every sampled host as expected.
fn check_table(proxy: &Proxy, samples: &mut Samples) {
    let state = proxy.state();
    let main = state
        .find_listener(|l| l.settings.name == "main")
        .expect("listener main");
    let table = &state.listener(main).routes;
    let mut kinds = [0usize; 2];
    for host in sample_hosts(samples, 5_000) {
        let got = table.route(Some(&host), Some("/"));
        let want = match expected_route(&host) {
            Some(k) => {
                kinds[1] += 1;
                assert_eq!(state.settings.routes[k].name, format!("r{k}"));
                got.and_then(RouteMatch::route).map(|r| r.index()) == Some(k)
            }
            None => {
                kinds[0] += 1;
                matches!(got, Some(RouteMatch::Default(_)))
            }
        };
        assert!(
            want,
            "{host}: routed {got:?}, expected {:?}",
            expected_route(&host)
        );
    }
    assert!(kinds.iter().all(|&n| n > 500), "{kinds:?}");
}

/// Real handshakes: each sampled SNI gets its certificate (the fallback for
/// an unknown name), and a request for it reaches its route's backend.
async fn check_served(farm: &Farm, samples: &mut Samples) {
    let addr = farm.proxy.addr("main").unwrap();
    for _ in 0..40 {
        let (sni, der, route) = match samples.below(3) {
            0 => {
                let i = samples.below(EXACT);
                (exact_name(i), &farm.exact[i], i)
            }
            1 => {
                let j = samples.below(WILDCARDS);
                let sni = format!("h{}.{}", samples.below(100), wildcard_parent(j));
                (sni, &farm.wildcard[j], EXACT + j)
            }
            _ => {
                let sni = format!("unknown{}.test", samples.below(100));
                let opts = ClientOpts {
                    sni: Some(sni.clone()),
                    verify_as: Some(exact_name(0)),
                    ..Default::default()
                };
                let tls = tls_connect(addr, &farm.ca, &opts).await.unwrap();
                assert_eq!(tls.leaf, farm.exact[0], "{sni}: the fallback");
                continue;
            }
        };
        let tls = tls_connect(addr, &farm.ca, &ClientOpts::sni(&sni))
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert!(tls.leaf == *der, "{sni}: another certificate was served");
        let (_, mut h1) = tls.into_h1().await;
        let reply = h1.send(get(&sni, "/")).await;
        assert_eq!(reply.status, 200, "{sni}");
        let backend = format!("b{}", route % BACKENDS);
        assert_eq!(reply.backend().as_deref(), Some(backend.as_str()), "{sni}");
        // A Host the certificate does not cover: 421.
        let other = exact_name((route + 1) % EXACT);
        let reply = h1.send(get(&other, "/")).await;
        assert_eq!(reply.status, 421, "{sni} asked for {other}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_certificates_and_routes_answer_as_a_small_configuration() {
    bounded_for(LIMIT, async {
        let farm = farm().await;
        let state = farm.proxy.state();
        assert_eq!(state.certificates.all().len(), EXACT + WILDCARDS);
        assert_eq!(state.settings.routes.len(), EXACT + WILDCARDS);
        assert!(state.loaded().starts_with("configuration loaded in "));
        assert!(state
            .loaded()
            .ends_with(" ms: 10000 certificates, 10000 routes"));
        let mut samples = Samples(0x5eed_0015);
        check_table(&farm.proxy, &mut samples);
        check_served(&farm, &mut samples).await;

        assert_eq!(farm.proxy.reload().await, Ok(2));
        check_table(&farm.proxy, &mut samples);
        check_served(&farm, &mut samples).await;
    })
    .await;
}
