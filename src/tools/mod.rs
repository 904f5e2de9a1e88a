//! Commands besides `run`: explain, report --against, probe, gen-certs, demo,
//! import-iis, init.

pub mod against;
pub mod demo;
pub mod explain;
pub mod gen_certs;
pub mod import_iis;
pub mod init;
pub mod probe;
