//! The `snigate` command line. Thin: every command is a call into the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use snigate::config::{LogFormat, Settings};
use snigate::tools::gen_certs::KeyAlgorithm;

/// TLS-terminating, SNI-aware reverse proxy for web farms with clients that send no SNI.
#[derive(Parser)]
#[command(name = "snigate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (SIGHUP reloads; SIGTERM/SIGINT drain and exit).
    Run {
        #[arg(short, long, default_value = "config/snigate.toml")]
        config: PathBuf,
    },
    /// Ask the running proxy to reload its configuration and certificates
    /// (SIGHUP to the PID in [runtime] pid_file).
    Reload {
        #[arg(short, long, default_value = "config/snigate.toml")]
        config: PathBuf,
    },
    /// Validate configuration and certificates.
    Check {
        #[arg(short, long, default_value = "config/snigate.toml")]
        config: PathBuf,
    },
    /// Start a self-contained demo: lab certificates, two sample web applications, the proxy.
    Demo {
        /// Where the lab certificates go.
        #[arg(long, default_value = "certs/demo")]
        dir: PathBuf,
    },
    /// Create a lab CA, one leaf per name and a fallback certificate covering all names.
    GenCerts {
        #[arg(long)]
        dir: PathBuf,
        /// Comma-separated host names, e.g. portal.contoso.test,*.apps.contoso.test
        #[arg(long, value_delimiter = ',', required = true)]
        names: Vec<String>,
        #[arg(long, default_value = "ecdsa")]
        key: KeyAlgorithm,
    },
    /// Decode a captured ClientHello and show what the configuration would do with it.
    Explain {
        /// The ClientHello: hex (whitespace ignored) or raw bytes, from the TLS record
        /// header (16 03 ..) or an SSLv2-compatible header (80 ..).
        hello: PathBuf,
        /// Configuration to evaluate [default: config/snigate.toml, if it exists].
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Also show the route a request for this path (and the SNI host) takes.
        #[arg(long)]
        path: Option<String>,
    },
    /// Compatibility report from handshake and access logs (JSON lines).
    Report {
        /// Log files, in any order; default: the handshake_log and access_log of the configuration.
        /// With --against, documents saved from GET /report/hellos too.
        logs: Vec<PathBuf>,
        /// Print the report as JSON (the same document as GET /report).
        #[arg(long, conflicts_with = "html")]
        json: bool,
        /// Print the report as a self-contained HTML page (as GET /report.html).
        #[arg(long)]
        html: bool,
        /// What-if: replay every client kind the handshake logs saw through this
        /// configuration's decision (no network) and print, per listener, today's
        /// outcome and the outcome under it.
        #[arg(long, value_name = "NEW.toml", conflicts_with_all = ["html", "csv"])]
        against: Option<PathBuf>,
        /// Print the kinds table as CSV, one row per client kind (as GET /report.csv).
        #[arg(long, conflicts_with_all = ["json", "html"])]
        csv: bool,
        /// Per-address rows in --json and --html (as ?clients=N).
        #[arg(long, value_name = "N", default_value_t = snigate::observe::report::DEFAULT_CLIENTS)]
        clients: usize,
        /// Configuration whose log files are read when no LOG is given.
        #[arg(short, long, default_value = "config/snigate.toml")]
        config: PathBuf,
    },
    /// Probe the admin endpoint's GET /healthz (container health checks): print
    /// the answer, exit 0 on 200 and 1 otherwise.
    Health {
        /// Configuration whose [admin] bind is probed [default: config/snigate.toml
        /// if it exists, else 127.0.0.1:9900].
        #[arg(short, long, conflicts_with = "url")]
        config: Option<PathBuf>,
        /// URL to probe instead, e.g. http://127.0.0.1:9900/healthz.
        #[arg(long)]
        url: Option<String>,
        /// Give up after this long: connecting, asking and reading together.
        #[arg(long, default_value = "3s", value_parser = snigate::config::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Write a snigate configuration from an IIS server's HTTPS bindings
    /// (netsh http show sslcert and/or applicationHost.config).
    ImportIis {
        /// Output of `netsh http show sslcert` (UTF-8 or UTF-16; `-` for stdin).
        #[arg(long, value_name = "FILE", required_unless_present = "config")]
        netsh: Option<PathBuf>,
        /// IIS applicationHost.config (`-` for stdin).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The IIS servers the sites run on (names or addresses, no port),
        /// repeated or comma-separated [default: a TODO placeholder].
        #[arg(long, value_name = "HOST", value_delimiter = ',')]
        backend: Vec<String>,
        /// Write the configuration here instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Write a commented starting configuration for an Exchange, SharePoint
    /// or IIS farm.
    Init {
        /// exchange, sharepoint or iis.
        #[arg(long)]
        profile: snigate::tools::init::Profile,
        /// The names clients use, comma-separated or repeated (exchange: the
        /// namespace first, e.g. mail.contoso.com,autodiscover.contoso.com).
        #[arg(long, value_name = "NAME", value_delimiter = ',', required = true)]
        host: Vec<String>,
        /// The servers, HOST:PORT, comma-separated or repeated.
        #[arg(long, value_name = "HOST:PORT", value_delimiter = ',', required = true)]
        backend: Vec<String>,
        /// Reach the servers over TLS (HTTPS backends).
        #[arg(long)]
        tls_backend: bool,
        /// Write the configuration here instead of stdout; an existing file
        /// is kept unless --force.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Replace an existing -o FILE.
        #[arg(long, requires = "output")]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run(config),
        Command::Reload { config } => reload(config),
        Command::Check { config } => check(config),
        Command::Demo { dir } => demo(dir),
        Command::GenCerts { dir, names, key } => gen_certs(dir, names, key),
        Command::Explain {
            hello,
            config,
            json,
            path,
        } => explain(&hello, config.as_deref(), path.as_deref(), json),
        Command::Report {
            logs,
            json,
            html,
            against,
            csv,
            clients,
            config,
        } => match against {
            Some(new) => report_against(&new, logs, json, config),
            None => report(logs, ReportFormat::new(json, html, csv, clients), config),
        },
        Command::Health {
            config,
            url,
            timeout,
        } => health(config.as_deref(), url.as_deref(), timeout),
        Command::ImportIis {
            netsh,
            config,
            backend,
            output,
        } => import_iis(snigate::tools::import_iis::Options {
            netsh,
            site_config: config,
            backends: backend,
            output,
        }),
        Command::Init {
            profile,
            host,
            backend,
            tls_backend,
            output,
            force,
        } => init(snigate::tools::init::Options {
            profile,
            hosts: host,
            backends: backend,
            tls_backend,
            output,
            force,
        }),
    }
}

fn load(config: &Path) -> Result<Settings, ExitCode> {
    Settings::load(config).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::FAILURE
    })
}

/// The process's runtime: single-threaded. With `[runtime] workers` above
/// one, connections are served on worker threads of their own
/// (`snigate::server::workers`); this one keeps signals, reloads, the admin
/// endpoint and health checks.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn run(config: PathBuf) -> ExitCode {
    let settings = match load(&config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    snigate::observe::telemetry::init_tracing(&settings.log.level, settings.log.format);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(snigate::server::run_until_signal(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: cannot start:\n{e}", config.display());
            ExitCode::FAILURE
        }
    }
}

fn reload(config: PathBuf) -> ExitCode {
    let settings = match load(&config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let Some(pid_file) = settings.pid_file.as_deref() else {
        eprintln!(
            "snigate reload: {} sets no [runtime] pid_file; set one (and restart), send SIGHUP yourself, or POST /reload on the admin endpoint",
            config.display()
        );
        return ExitCode::FAILURE;
    };
    #[cfg(unix)]
    match snigate::server::signal_reload(pid_file) {
        Ok(pid) => {
            println!("sent SIGHUP to snigate (pid {pid}); the outcome is in its log and on /healthz (last_reload)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("snigate reload: {e}");
            ExitCode::FAILURE
        }
    }
    #[cfg(not(unix))]
    {
        eprintln!(
            "snigate reload: signals need Unix; POST /reload on the admin endpoint instead ({})",
            pid_file.display()
        );
        ExitCode::FAILURE
    }
}

fn check(config: PathBuf) -> ExitCode {
    let settings = match load(&config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match snigate::state::check_report(&settings) {
        Ok(checked) => {
            println!("{}: ok: {}", config.display(), settings.summary());
            for n in checked.notes {
                println!("note: {n}");
            }
            for w in checked.warnings {
                println!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            // Each names the configuration file (and, for a certificate,
            // the line of its chain or key), as `load`'s errors do.
            for e in errors {
                eprintln!("{e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// With no LOG named: the handshake_log and access_log files of `config`.
fn default_logs(logs: &mut Vec<PathBuf>, config: &Path) -> Result<(), ExitCode> {
    if !logs.is_empty() {
        return Ok(());
    }
    let settings = load(config)?;
    // Logs written to standard output ("-") are not files to read back.
    let files = [&settings.log.handshake_log, &settings.log.access_log];
    logs.extend(
        files
            .into_iter()
            .flatten()
            .filter(|p| p.as_os_str() != snigate::config::STDOUT)
            .cloned(),
    );
    if logs.is_empty() {
        eprintln!(
            "snigate report: {} sets neither [log] handshake_log nor access_log as a file; name the log files (or save what snigate writes to standard output and name that)",
            config.display()
        );
        return Err(ExitCode::FAILURE);
    }
    Ok(())
}

/// `report --against NEW.toml`: the what-if table.
fn report_against(new: &Path, mut logs: Vec<PathBuf>, json: bool, config: PathBuf) -> ExitCode {
    if let Err(code) = default_logs(&mut logs, &config) {
        return code;
    }
    let stdout = std::io::stdout();
    match snigate::tools::against::run(new, &logs, json, &mut stdout.lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("snigate report --against: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What `snigate report` prints.
enum ReportFormat {
    Text,
    Json { clients: usize },
    Html { clients: usize },
    Csv,
}

impl ReportFormat {
    /// From the flags (clap keeps them exclusive).
    fn new(json: bool, html: bool, csv: bool, clients: usize) -> Self {
        match (json, html, csv) {
            (true, _, _) => ReportFormat::Json { clients },
            (_, true, _) => ReportFormat::Html { clients },
            (_, _, true) => ReportFormat::Csv,
            _ => ReportFormat::Text,
        }
    }
}

fn report(mut logs: Vec<PathBuf>, format: ReportFormat, config: PathBuf) -> ExitCode {
    if let Err(code) = default_logs(&mut logs, &config) {
        return code;
    }
    let snapshot = match snigate::observe::report::from_logs(&logs, Default::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("snigate report: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    use snigate::observe::report::{html_document, json_document, render_csv, render_text};
    let text = match format {
        ReportFormat::Json { clients } => json_document(snapshot, clients) + "\n",
        ReportFormat::Html { clients } => html_document(snapshot, clients),
        ReportFormat::Csv => render_csv(&snapshot),
        ReportFormat::Text => render_text(&snapshot),
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    ExitCode::SUCCESS
}

fn explain(hello: &Path, config: Option<&Path>, path: Option<&str>, json: bool) -> ExitCode {
    let stdout = std::io::stdout();
    match snigate::tools::explain::run(hello, config, path, json, &mut stdout.lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("snigate explain: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn gen_certs(dir: PathBuf, names: Vec<String>, key: KeyAlgorithm) -> ExitCode {
    match snigate::tools::gen_certs::generate(&dir, &names, key) {
        Ok(set) => {
            println!(
                "CA:       {} (key {})",
                set.ca_cert.display(),
                set.ca_key.display()
            );
            for (name, crt, key) in &set.leaves {
                println!("{name}: {} (key {})", crt.display(), key.display());
            }
            println!(
                "fallback: {} (key {})",
                set.fallback.0.display(),
                set.fallback.1.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen-certs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(dir: PathBuf) -> ExitCode {
    snigate::observe::telemetry::init_tracing("info", LogFormat::Text);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(snigate::tools::demo::run(&dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn health(config: Option<&Path>, url: Option<&str>, timeout: std::time::Duration) -> ExitCode {
    match snigate::tools::probe::run(config, url, timeout) {
        Ok((target, reply)) => {
            let healthy = reply.healthy();
            let mut body = reply.body;
            if !body.ends_with(b"\n") {
                body.push(b'\n');
            }
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &body);
            if healthy {
                ExitCode::SUCCESS
            } else {
                eprintln!("snigate health: {target} answered {}", reply.status);
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("snigate health: {e}");
            ExitCode::FAILURE
        }
    }
}

fn import_iis(options: snigate::tools::import_iis::Options) -> ExitCode {
    let result = snigate::tools::import_iis::run(
        &options,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("snigate import-iis: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init(options: snigate::tools::init::Options) -> ExitCode {
    let result = snigate::tools::init::run(
        &options,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Every bad input, one line each.
            for line in e.lines() {
                eprintln!("snigate init: {line}");
            }
            ExitCode::FAILURE
        }
    }
}
