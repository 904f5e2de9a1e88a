//! The deployment files stay true to the program: the Kubernetes ConfigMap's
//! `snigate.toml` is a configuration that starts, the Deployment probes and
//! mounts what that configuration names, the systemd unit and the Dockerfile
//! call subcommands and flags that exist, the metric names in the Kubernetes
//! README are exported, and `snigate health` answers 0 for a live admin
//! endpoint and 1, in bounded time, for anything else.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::*;
use serde::Deserialize;
use serde_json::Value;
use snigate::config::{CertificateSource, ListenerMode, Settings};
use snigate::tools::gen_certs::{generate, KeyAlgorithm};

/// Where the Deployment mounts the projected configuration volume.
const ETC: &str = "/etc/snigate";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every document of a YAML file, as JSON values.
fn yaml_docs(path: &str) -> Vec<Value> {
    let text = read(path);
    yaml_serde::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// The one document of a YAML file.
fn yaml(path: &str) -> Value {
    let mut docs = yaml_docs(path);
    assert_eq!(docs.len(), 1, "{path}: expected one document");
    docs.remove(0)
}

fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer).unwrap_or_else(|| {
        panic!(
            "no {pointer} in {}",
            serde_json::to_string_pretty(v).unwrap()
        )
    })
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    at(v, pointer)
        .as_str()
        .unwrap_or_else(|| panic!("{pointer} is not a string"))
}

/// The `snigate.toml` embedded in the ConfigMap.
fn configmap_toml() -> String {
    let cm = yaml("deploy/kubernetes/configmap.yaml");
    assert_eq!(str_at(&cm, "/kind"), "ConfigMap");
    str_at(&cm, "/data/snigate.toml").to_string()
}

/// The ConfigMap's configuration as the pod reads it (paths resolved
/// against the mount point).
fn configmap_settings() -> Settings {
    let path = Path::new(ETC).join("snigate.toml");
    Settings::parse(&path, &configmap_toml())
        .unwrap_or_else(|e| panic!("configmap.yaml snigate.toml:\n{e}"))
}

fn deployment() -> Value {
    let d = yaml("deploy/kubernetes/deployment.yaml");
    assert_eq!(str_at(&d, "/kind"), "Deployment");
    d
}

fn container(d: &Value) -> &Value {
    let containers = at(d, "/spec/template/spec/containers")
        .as_array()
        .expect("containers");
    containers
        .iter()
        .find(|c| c["name"] == "snigate")
        .expect("a container named snigate")
}

/// The containerPort of a named port of the container.
fn container_port(c: &Value, name: &str) -> u16 {
    c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {name}")) as u16
}

/// A probe's port: a number, or the name of a container port.
fn probe_port(c: &Value, port: &Value) -> u16 {
    match port {
        Value::String(name) => container_port(c, name),
        Value::Number(n) => n.as_u64().expect("port") as u16,
        other => panic!("probe port {other}"),
    }
}

/// The volume mounted at `path` in the container.
fn volume_at<'a>(d: &'a Value, c: &Value, path: &str) -> Option<&'a Value> {
    let mount = c["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["mountPath"] == path)?;
    at(d, "/spec/template/spec/volumes")
        .as_array()?
        .iter()
        .find(|v| v["name"] == mount["name"])
}

/// Runs the real binary with `args`.
fn snigate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snigate"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run snigate")
}

/// Whether the command line `args` (subcommand first) parses: run with
/// `--help` appended, which clap honours only after every earlier argument
/// was accepted.
fn parses(args: &[&str]) -> bool {
    let mut with_help = args.to_vec();
    with_help.push("--help");
    snigate(&with_help).status.success()
}

#[test]
fn argument_check_tells_real_flags_from_invented_ones() {
    assert!(parses(&["run", "-c", "/x.toml"]));
    assert!(parses(&["health", "--url", "http://127.0.0.1:1/"]));
    assert!(!parses(&["run", "--cfg", "/x.toml"]));
    assert!(!parses(&["restart", "-c", "/x.toml"]));
}

// ---------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------

#[test]
fn configmap_is_a_farm_configuration_behind_a_proxy_protocol_balancer() {
    let s = configmap_settings();
    assert!(s.inactive.is_empty(), "inactive: {:?}", s.inactive);
    let admin = s.admin.expect("[admin]: the probes need it");
    assert!(
        admin.ip().is_unspecified(),
        "kubelet probes the pod IP: admin must bind every interface, not {admin}"
    );
    let https: Vec<_> = s
        .listeners
        .iter()
        .filter(|l| l.mode == ListenerMode::Https)
        .collect();
    assert!(!https.is_empty(), "no https listener");
    for l in &https {
        assert!(l.fallback_certificate.is_some(), "{}: no fallback", l.name);
        assert!(l.proxy_protocol, "{}: proxy_protocol off", l.name);
        assert!(
            l.session_ticket_keys.is_some(),
            "{}: replicas need shared ticket keys",
            l.name
        );
        for b in &l.bind {
            assert!(b.ip().is_unspecified(), "{}: binds {b}", l.name);
        }
    }
}

#[test]
fn deployment_probes_ports_and_mounts_match_the_configuration() {
    let s = configmap_settings();
    let d = deployment();
    let c = container(&d);

    // The admin endpoint: probes, Prometheus annotations, port.
    let admin_port = s.admin.expect("admin").port();
    assert_eq!(container_port(c, "admin"), admin_port);
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], "/healthz", "{probe}");
        assert_eq!(probe_port(c, &get["port"]), admin_port, "{probe}");
    }
    let annotations = at(&d, "/spec/template/metadata/annotations");
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(
        annotations["prometheus.io/port"],
        admin_port.to_string().as_str()
    );

    // The listener's port is the one the Service sends to.
    let listener_port = s.listeners[0].bind[0].port();
    assert_eq!(container_port(c, "https"), listener_port);
    let svc = yaml("deploy/kubernetes/service.yaml");
    assert_eq!(str_at(&svc, "/spec/type"), "LoadBalancer");
    assert_eq!(str_at(&svc, "/spec/externalTrafficPolicy"), "Local");
    let port = &at(&svc, "/spec/ports").as_array().expect("ports")[0];
    assert_eq!(port["port"], 443);
    assert_eq!(probe_port(c, &port["targetPort"]), listener_port);

    // Selectors select the pods.
    let pod_labels = at(&d, "/spec/template/metadata/labels");
    let selects = |selector: &Value, what: &str| {
        for (k, v) in selector.as_object().expect("selector") {
            assert_eq!(&pod_labels[k], v, "{what} selects {k}={v}");
        }
    };
    selects(at(&d, "/spec/selector/matchLabels"), "the Deployment");
    selects(at(&svc, "/spec/selector"), "the Service");
    let pdb = yaml("deploy/kubernetes/poddisruptionbudget.yaml");
    selects(
        at(&pdb, "/spec/selector/matchLabels"),
        "the PodDisruptionBudget",
    );

    // Several replicas, non-root, read-only root file system.
    assert!(at(&d, "/spec/replicas").as_u64().expect("replicas") >= 3);
    assert_eq!(
        *at(&d, "/spec/template/spec/securityContext/runAsNonRoot"),
        true
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);

    // The command reads the mounted configuration.
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg"))
        .collect();
    assert_eq!(args, ["run", "-c", "/etc/snigate/snigate.toml"]);
    assert!(parses(&args));

    // Every file the configuration reads is an item of the projected volume
    // at /etc/snigate, from the ConfigMap and Secrets that exist.
    let etc = volume_at(&d, c, ETC).expect("a volume at /etc/snigate");
    let mut items = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for source in etc["projected"]["sources"].as_array().expect("projected") {
        let (kind, body) = source
            .as_object()
            .and_then(|o| o.iter().next())
            .expect("a source");
        match kind.as_str() {
            "configMap" => assert_eq!(
                body["name"],
                str_at(&yaml("deploy/kubernetes/configmap.yaml"), "/metadata/name")
            ),
            "secret" => {
                secrets.insert(body["name"].as_str().expect("secret name").to_string());
            }
            other => panic!("unexpected projected source {other}"),
        }
        for item in body["items"].as_array().expect("items") {
            items.insert(Path::new(ETC).join(item["path"].as_str().expect("path")));
        }
    }
    let mut wanted: Vec<PathBuf> = vec![Path::new(ETC).join("snigate.toml")];
    for cert in &s.certificates {
        wanted.extend(cert.source.files().into_iter().map(Path::to_path_buf));
    }
    for l in &s.listeners {
        wanted.extend(l.session_ticket_keys.clone());
    }
    for path in wanted {
        assert!(
            items.contains(&path),
            "{} is not mounted: {items:?}",
            path.display()
        );
    }
    let declared: BTreeSet<String> = yaml_docs("deploy/kubernetes/secret.yaml")
        .iter()
        .map(|s| str_at(s, "/metadata/name").to_string())
        .collect();
    assert_eq!(
        secrets, declared,
        "Secrets mounted and Secrets in secret.yaml"
    );

    // Writable paths the configuration names are on emptyDir volumes (the
    // root file system is read-only). Not the container's output: uid 10001
    // cannot reopen /dev/stdout, a pipe that belongs to root.
    let writable = |path: &Path, what: &str| {
        assert!(
            !path.starts_with("/dev") && !path.starts_with("/proc"),
            "{what} {}: the unprivileged user cannot reopen it",
            path.display()
        );
        let dir = path.parent().expect("a folder").to_str().expect("utf-8");
        let v =
            volume_at(&d, c, dir).unwrap_or_else(|| panic!("{what} {}: no volume", path.display()));
        assert!(
            v.get("emptyDir").is_some(),
            "{what}: {dir} is not an emptyDir"
        );
    };
    writable(
        s.pid_file.as_deref().expect("pid_file, for snigate reload"),
        "pid_file",
    );
    // "-" is the process's own standard output: nothing to open.
    for log in [&s.log.handshake_log, &s.log.access_log]
        .into_iter()
        .flatten()
        .filter(|p| p.as_os_str() != snigate::config::STDOUT)
    {
        writable(log, "log");
    }

    // Stopping: preStop pause plus shutdown_grace fit in the grace period.
    let pre_stop: Vec<&str> = c["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .expect("preStop exec")
        .iter()
        .map(|a| a.as_str().expect("arg"))
        .collect();
    assert_eq!(pre_stop[0], "/bin/sleep");
    let pause: u64 = pre_stop[1].parse().expect("seconds");
    let grace = at(&d, "/spec/template/spec/terminationGracePeriodSeconds")
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > pause + s.timeouts.shutdown_grace.as_secs(),
        "terminationGracePeriodSeconds {grace} <= preStop {pause} + shutdown_grace {:?}",
        s.timeouts.shutdown_grace
    );
}

#[test]
fn kustomization_lists_the_manifests_but_not_the_secret_template() {
    let k = yaml("deploy/kubernetes/kustomization.yaml");
    let resources: Vec<&str> = at(&k, "/resources")
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("resource"))
        .collect();
    for r in &resources {
        assert!(
            repo("deploy/kubernetes").join(r).is_file(),
            "{r} is missing"
        );
    }
    for wanted in ["configmap.yaml", "deployment.yaml", "service.yaml"] {
        assert!(resources.contains(&wanted), "{wanted} not listed");
    }
    assert!(
        !resources.contains(&"secret.yaml"),
        "would overwrite real keys"
    );
    assert!(k.get("namespace").is_none(), "namespace-agnostic");
}

/// The ConfigMap's configuration, with its files where the pod has them
/// (a lab certificate for every routed host, a ticket key), bound to
/// loopback port 0 and logging into the folder: it starts, and the health
/// probe and the Kubernetes README agree with what it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_configuration_starts_and_answers_the_probe() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path();
        let s = configmap_settings();
        let hosts: Vec<String> = s.routes.iter().flat_map(|r| r.hosts.clone()).collect();
        let lab = generate(&etc.join("lab"), &hosts, KeyAlgorithm::Ecdsa).expect("gen-certs");
        for cert in &s.certificates {
            let CertificateSource::Pem { chain, key, .. } = &cert.source else {
                panic!("the deployed configuration names PEM files");
            };
            for (from, to) in [(&lab.fallback.0, chain), (&lab.fallback.1, key)] {
                let to = etc.join(to.strip_prefix(ETC).expect("under /etc/snigate"));
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(from, &to).unwrap();
            }
        }
        for l in &s.listeners {
            if let Some(keys) = &l.session_ticket_keys {
                let to = etc.join(keys.strip_prefix(ETC).expect("under /etc/snigate"));
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                let key: Vec<u8> = (0..80u32).map(|i| (i * 37 + 11) as u8).collect();
                std::fs::write(&to, key).unwrap();
                // As a key should be (the Secret's files are 0440).
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
        let text = configmap_toml()
            .replace("\"0.0.0.0:9900\"", "\"127.0.0.1:0\"")
            .replace("\"0.0.0.0:8443\"", "\"127.0.0.1:0\"")
            .replace("\"/var/log/snigate/", "\"logs/");
        let path = etc.join("snigate.toml");
        std::fs::write(&path, &text).unwrap();
        let settings = Settings::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let binds = settings.listeners.iter().flat_map(|l| l.bind.iter());
        for addr in binds.chain(settings.admin.iter()) {
            assert!(
                addr.ip().is_loopback(),
                "{addr}: a bind this test did not move to loopback"
            );
        }
        let notes = snigate::state::check(&settings).unwrap_or_else(|e| panic!("{}", e.join("\n")));
        assert!(notes.is_empty(), "check notes: {notes:?}");

        let proxy = start_proxy(etc, &text).await;
        let admin = proxy.admin_addr().expect("admin");

        // --url, and -c with the container's 0.0.0.0 (probed on loopback).
        let out = health(&["--url", &format!("http://{admin}/healthz")]).await;
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let body: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
        assert_eq!(body["status"], "ok");
        let probe_config = etc.join("probe.toml");
        std::fs::write(
            &probe_config,
            format!("[admin]\nbind = \"0.0.0.0:{}\"\n", admin.port()),
        )
        .unwrap();
        let out = health(&["-c", probe_config.to_str().unwrap()]).await;
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

        // Another answer than 200 is unhealthy.
        let out = health(&["--url", &format!("http://{admin}/no-such-page")]).await;
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("answered 404"),
            "{}",
            describe(&out)
        );

        // The metric names the Kubernetes README queries are exported.
        let target =
            snigate::tools::probe::Target::parse_url(&format!("http://{admin}/metrics")).unwrap();
        let metrics = tokio::task::spawn_blocking(move || {
            snigate::tools::probe::get(&target, Duration::from_secs(5))
        })
        .await
        .unwrap()
        .expect("GET /metrics");
        let exported = metric_families(&String::from_utf8_lossy(&metrics.body));
        let readme = read("deploy/kubernetes/README.md");
        let used = metric_names(&readme);
        assert!(used.len() >= 8, "README queries: {used:?}");
        for name in &used {
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|f| exported.contains(*f)))
                .unwrap_or(name);
            assert!(
                exported.contains(family),
                "README uses {name}; /metrics has {exported:?}"
            );
        }
        proxy.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_fast_without_a_healthy_endpoint() {
    bounded(async {
        // Nothing listens.
        let dead = dead_addr().await;
        let started = Instant::now();
        let out = health(&[
            "--url",
            &format!("http://{dead}/healthz"),
            "--timeout",
            "2s",
        ])
        .await;
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
            "{}",
            describe(&out)
        );
        assert!(started.elapsed() < Duration::from_secs(10));

        // Accepts and never answers: the deadline ends it.
        let silent = silent_backend().await;
        let started = Instant::now();
        let out = health(&[
            "--url",
            &format!("http://{silent}/healthz"),
            "--timeout",
            "500ms",
        ])
        .await;
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("within"),
            "{}",
            describe(&out)
        );
        assert!(took < Duration::from_secs(8), "took {took:?}");

        // A configuration without [admin] has nothing to probe.
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("snigate.toml");
        std::fs::write(&config, "[log]\nlevel = \"info\"\n").unwrap();
        let out = health(&["-c", config.to_str().unwrap()]).await;
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no [admin] section"));
    })
    .await;
}

/// `snigate health ARGS` on a blocking thread (the proxy under test keeps
/// running on the runtime).
async fn health(args: &[&str]) -> Output {
    let mut all = vec!["health".to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        snigate(&args)
    })
    .await
    .unwrap()
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Metric family names of an OpenMetrics text (`# TYPE name kind`).
fn metric_families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Every `snigate_...` identifier in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("snigate_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

// ---------------------------------------------------------------------------
// systemd and Docker
// ---------------------------------------------------------------------------

/// `Key=value` lines of a unit file (comments and sections skipped).
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with('#') && !l.starts_with(';') && !l.starts_with('[')
        })
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn systemd_unit_runs_real_commands_in_a_sandbox() {
    let text = read("config/snigate.service");
    let settings = unit_settings(&text);
    let values = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let one = |key: &str| -> &str {
        let v = values(key);
        assert_eq!(v.len(), 1, "{key}: {v:?}");
        v[0]
    };

    let exec = |line: &str| -> Vec<String> {
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        assert!(
            words[0].starts_with('/') && words[0].ends_with("/snigate"),
            "{line}"
        );
        let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        assert!(parses(&args), "not a snigate command line: {line}");
        words[1..].to_vec()
    };
    let start = exec(one("ExecStart"));
    assert_eq!(start[0], "run");
    let reloads = values("ExecReload");
    assert!(!reloads.is_empty(), "no ExecReload");
    let reload_words: Vec<Vec<String>> = reloads.iter().map(|l| exec(l)).collect();
    assert_eq!(
        reload_words.last().unwrap()[0],
        "reload",
        "the last ExecReload signals"
    );
    let config_of = |words: &[String]| words.iter().skip_while(|w| *w != "-c").nth(1).cloned();
    for words in &reload_words {
        assert_eq!(
            config_of(words),
            config_of(&start),
            "{words:?}: another configuration"
        );
    }

    for (key, value) in [
        ("DynamicUser", "yes"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("SystemCallFilter", "@system-service"),
    ] {
        assert!(values(key).contains(&value), "{key}={value} missing");
    }
    assert!(one("RestrictAddressFamilies").contains("AF_INET6"));
    assert!(one("LimitNOFILE").parse::<u64>().expect("LimitNOFILE") >= 65536);
    let stop = humantime::parse_duration(one("TimeoutStopSec")).expect("TimeoutStopSec");
    assert!(
        stop > snigate::config::DEFAULT_SHUTDOWN_GRACE,
        "TimeoutStopSec {stop:?} must exceed shutdown_grace"
    );

    // The configuration lines the comments ask for point where the unit
    // lets the dynamic user write, and read the keys it loads.
    let commented = |key: &str| -> String {
        text.lines()
            .filter_map(|l| l.trim_start().strip_prefix('#'))
            .map(str::trim)
            .find_map(|l| l.strip_prefix(key)?.trim_start().strip_prefix('='))
            .map(|v| {
                v.split('#')
                    .next()
                    .unwrap()
                    .trim()
                    .trim_matches('"')
                    .to_string()
            })
            .unwrap_or_else(|| panic!("no `{key} = ` in the comments"))
    };
    let runtime_dir = format!("/run/{}/", one("RuntimeDirectory"));
    assert!(commented("pid_file").starts_with(&runtime_dir));
    let logs_dir = format!("/var/log/{}/", one("LogsDirectory"));
    assert!(commented("handshake_log").starts_with(&logs_dir));
    assert!(commented("access_log").starts_with(&logs_dir));
    for credential in values("LoadCredential") {
        let (id, source) = credential.split_once(':').expect("ID:PATH");
        assert!(source.starts_with('/'), "{credential}");
        let path = format!("/run/credentials/snigate.service/{id}");
        assert!(text.contains(&path), "{path} is not shown in the comments");
    }
}

#[test]
fn dockerfile_health_check_and_command_are_real_commands() {
    let text = read("Dockerfile").replace("\\\n", " ");
    let json_after = |instruction: &str| -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.starts_with(instruction))
            .unwrap_or_else(|| panic!("no {instruction}"));
        let array = &line[line.find('[').expect("exec form")..];
        serde_json::from_str(array).unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    let healthcheck = json_after("HEALTHCHECK ");
    assert_eq!(healthcheck[0], "/usr/local/bin/snigate");
    assert_eq!(healthcheck[1], "health");
    let args: Vec<&str> = healthcheck[1..].iter().map(String::as_str).collect();
    assert!(parses(&args), "{healthcheck:?}");
    let cmd = json_after("CMD ");
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    assert!(parses(&args), "{cmd:?}");
    assert_eq!(
        healthcheck.iter().skip_while(|a| *a != "-c").nth(1),
        cmd.iter().skip_while(|a| *a != "-c").nth(1),
        "the health check reads the configuration the proxy runs"
    );
    let volumes = json_after("VOLUME ");
    for wanted in ["/etc/snigate", "/var/log/snigate"] {
        assert!(volumes.iter().any(|v| v == wanted), "VOLUME {wanted}");
    }
}

#[test]
fn kubernetes_admin_bind_is_probed_on_loopback_by_the_image_health_check() {
    // The image's HEALTHCHECK with a configuration like the ConfigMap's.
    let admin: SocketAddr = configmap_settings().admin.expect("admin");
    let target = snigate::tools::probe::Target::admin(admin);
    assert_eq!(target.host, "127.0.0.1");
    assert_eq!(target.port, admin.port());
    assert_eq!(target.path, "/healthz");
}
