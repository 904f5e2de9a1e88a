//! The classic IIS layout on one port: a wildcard listener whose fallback
//! certificate serves the whole port, beside a listener on one address for
//! one web application. Linux accepts both binds only with SO_REUSEPORT,
//! and then gives each connection to the most specific address.

use crate::common;

use crate::common::{
    bounded, cert_toml, dead_addr, second_start_error, start_proxy_on, tls_connect, ClientOpts,
    Key, Pki,
};

#[tokio::test]
async fn a_wildcard_and_an_address_listener_share_a_port() {
    wildcard_and_address_share_a_port(None).await;
}

/// The same with two worker threads, each with its own socket on both
/// addresses.
#[tokio::test]
async fn a_wildcard_and_an_address_listener_share_a_port_on_worker_threads() {
    wildcard_and_address_share_a_port(Some(2)).await;
}

async fn wildcard_and_address_share_a_port(workers: Option<usize>) {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let all = pki.leaf("all", &["portal.test"], Key::Ecdsa);
        let app = pki.leaf("app", &["mysites.test"], Key::Ecdsa);
        let farm = common::backend("farm").await;
        let port = dead_addr().await.port();
        let text = format!(
            r#"{}{}
[[listener]]
name = "all"
bind = ["0.0.0.0:{port}"]
fallback_certificate = "all"
default_upstream = "farm"

[[listener]]
name = "mysites"
bind = ["127.0.0.2:{port}"]
fallback_certificate = "app"
default_upstream = "farm"

[[upstream]]
name = "farm"
servers = ["{}"]
"#,
            cert_toml("all", &all),
            cert_toml("app", &app),
            farm.addr
        );
        let proxy = start_proxy_on(dir.path(), &text, workers).await;

        // Without SNI, the address the client connected to decides.
        let to = |ip: &str| format!("{ip}:{port}").parse().unwrap();
        let tls = tls_connect(
            to("127.0.0.2"),
            &pki.ca_der,
            &ClientOpts::no_sni("mysites.test"),
        )
        .await
        .expect("handshake on the application's address");
        assert_eq!(pki.which(&tls.leaf), "app");
        for ip in ["127.0.0.1", "127.0.0.3"] {
            let tls = tls_connect(to(ip), &pki.ca_der, &ClientOpts::no_sni("portal.test"))
                .await
                .expect("handshake on another address");
            assert_eq!(pki.which(&tls.leaf), "all", "{ip}");
        }

        // A second instance on the same configuration is refused, not
        // handed half of the connections.
        let err = second_start_error(dir.path(), &text, workers).await;
        assert!(err.contains("cannot listen on"), "{err}");
        assert!(err.contains(&format!(":{port}")), "{err}");
        proxy.shutdown().await;
    })
    .await;
}
