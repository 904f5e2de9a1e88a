//! `snigate init`: a commented starting configuration for an Exchange,
//! SharePoint or IIS farm, from the names clients use (`--host`) and the
//! servers behind snigate (`--backend`).
//!
//! [`run`] checks the inputs ([`inputs`]), has the profile write the file
//! ([`exchange`], [`sharepoint`], [`iis`], on the shared blocks of
//! [`text`]), parses the result as `snigate check` would (a file that
//! `init` writes always loads) and writes it, to stdout or to `-o FILE`
//! (never over an existing file without `--force`).

mod exchange;
mod iis;
mod inputs;
mod sharepoint;
mod text;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use inputs::{backend, host};

/// The farm a configuration is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Exchange Server 2013 and later: one route and upstream per virtual
    /// directory, each with its own health check and timeouts.
    Exchange,
    /// SharePoint: one route and upstream per web application, balanced
    /// by `X-SharePointHealthScore`.
    SharePoint,
    /// IIS sites: the three SNI workarounds (fallback SAN certificate, one
    /// address per application, snigate as the load balancer).
    Iis,
}

impl Profile {
    /// As written on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Exchange => "exchange",
            Profile::SharePoint => "sharepoint",
            Profile::Iis => "iis",
        }
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "exchange" => Ok(Profile::Exchange),
            "sharepoint" => Ok(Profile::SharePoint),
            "iis" => Ok(Profile::Iis),
            _ => Err(format!(
                "unknown profile {s:?} (expected exchange, sharepoint or iis)"
            )),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `snigate init` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub profile: Profile,
    /// `--host`: the names clients use, as typed.
    pub hosts: Vec<String>,
    /// `--backend`: `host:port` of each server, as typed.
    pub backends: Vec<String>,
    /// `--tls-backend`: reach the servers over TLS.
    pub tls_backend: bool,
    /// `-o FILE`; stdout when `None`.
    pub output: Option<PathBuf>,
    /// `--force`: replace an existing `-o FILE`.
    pub force: bool,
}

/// The checked inputs a profile writes its file from.
#[derive(Debug, Clone)]
pub struct Plan {
    pub profile: Profile,
    /// Host names, lower-cased, in the order given, no duplicates.
    pub hosts: Vec<String>,
    /// Servers as `host:port`, in the order given, no duplicates.
    pub backends: Vec<String>,
    pub tls_backend: bool,
    /// `-o FILE` as given (for the header's command line).
    pub output: Option<PathBuf>,
    /// From this file's folder to the folder `init` ran in: `""`, `"../"`,
    /// ... or an absolute path ending in `/`. The certificate and log paths
    /// in the file start with it.
    pub to_start: String,
}

impl Plan {
    /// Where `snigate gen-certs` writes this profile's lab certificates,
    /// relative to the folder `init` ran in.
    pub fn cert_dir(&self) -> String {
        format!("certs/{}", self.profile)
    }

    /// A file of [`Plan::cert_dir`], as the configuration names it.
    pub fn cert_file(&self, file: &str) -> String {
        format!("{}{}/{file}", self.to_start, self.cert_dir())
    }

    /// A log file, as the configuration names it.
    pub fn log_file(&self, file: &str) -> String {
        format!("{}logs/{}/{file}", self.to_start, self.profile)
    }

    /// The `snigate gen-certs` command that makes the lab certificates.
    pub fn gen_certs_command(&self) -> String {
        format!(
            "snigate gen-certs --dir {} --names {}",
            self.cert_dir(),
            self.hosts.join(",")
        )
    }

    /// The `snigate init` command that writes this file.
    pub fn init_command(&self) -> String {
        let mut command = format!(
            "snigate init --profile {} --host {} --backend {}",
            self.profile,
            self.hosts.join(","),
            self.backends.join(",")
        );
        if self.tls_backend {
            command.push_str(" --tls-backend");
        }
        if let Some(output) = &self.output {
            command.push_str(" -o ");
            command.push_str(&inputs::shell_word(&output.to_string_lossy()));
        }
        command
    }

    /// The `snigate check` command for the file.
    pub fn check_command(&self) -> String {
        match &self.output {
            Some(output) => format!(
                "snigate check -c {}",
                inputs::shell_word(&output.to_string_lossy())
            ),
            None => "snigate check -c FILE".to_string(),
        }
    }
}

/// The configuration for `options`, checked: every input error at once, or
/// the TOML text.
pub fn plan(options: &Options) -> Result<Plan, String> {
    let mut errors = Vec::new();
    let hosts = inputs::hosts(&options.hosts, &mut errors);
    let backends = inputs::backends(&options.backends, &mut errors);
    let to_start = match &options.output {
        Some(output) => inputs::to_start_folder(output).unwrap_or_else(|e| {
            errors.push(e);
            String::new()
        }),
        None => String::new(),
    };
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    Ok(Plan {
        profile: options.profile,
        hosts,
        backends,
        tls_backend: options.tls_backend,
        output: options.output.clone(),
        to_start,
    })
}

/// The file for a plan.
pub fn render(plan: &Plan) -> String {
    match plan.profile {
        Profile::Exchange => exchange::render(plan),
        Profile::SharePoint => sharepoint::render(plan),
        Profile::Iis => iis::render(plan),
    }
}

/// Runs the command: writes the configuration to `options.output` (else
/// `stdout`) and what to do next to `stderr`.
pub fn run(
    options: &Options,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<(), String> {
    let plan = plan(options)?;
    let toml = render(&plan);
    // A file init writes must load; anything else is a bug here.
    let name = options
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("snigate.toml"));
    let settings = crate::config::Settings::parse(&name, &toml).map_err(|e| {
        format!("internal error: the configuration written for this profile does not load:\n{e}")
    })?;
    let target = match &options.output {
        Some(path) => {
            write_new(path, &toml, options.force)?;
            path.display().to_string()
        }
        None => {
            stdout
                .write_all(toml.as_bytes())
                .and_then(|_| stdout.flush())
                .map_err(|e| format!("cannot write the configuration: {e}"))?;
            "stdout".to_string()
        }
    };
    // stderr is for the operator; a closed one is not worth failing for.
    let _ = writeln!(
        stderr,
        "snigate init: wrote {target} ({} profile): {}\nnext: {}\n      {}",
        plan.profile,
        settings.summary(),
        plan.gen_certs_command(),
        plan.check_command()
    );
    Ok(())
}

/// Writes `text` to `path`, which must not exist unless `force`.
fn write_new(path: &Path, text: &str, force: bool) -> Result<(), String> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true);
    if force {
        open.create(true).truncate(true);
    } else {
        open.create_new(true);
    }
    let mut file = open.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!(
                "{} already exists; pass --force to replace it",
                path.display()
            )
        } else {
            format!("cannot write {}: {e}", path.display())
        }
    })?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.flush())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
