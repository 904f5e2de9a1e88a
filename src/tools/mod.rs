//! Commands besides `run`: explain, probe, gen-certs, demo, import-iis, init.

pub mod demo;
pub mod explain;
pub mod gen_certs;
pub mod import_iis;
pub mod init;
pub mod probe;
