//! `aosm-emulator`: a local stand-in for the Azure parts of AOSM artifact transfers —
//! Entra ID tokens, ARM `Microsoft.HybridNetwork` (publishers, artifact stores, artifact
//! manifests, listCredential, updateState) and an ACR-style token server for a real
//! `docker-registry` it runs in token-auth mode, so the registry itself enforces the
//! repository scope of a manifest's credential.

mod acr;
mod acr_front;
mod admin;
mod app;
mod arm;
mod cli;
mod config;
mod credentials;
mod duration;
mod endpoints;
mod entra;
mod faults;
mod federation;
mod files;
mod jwt;
mod metadata;
mod operations;
mod pki;
mod registry;
mod resources;
mod secret;
mod seed;
mod server;
mod stats;
mod time_fmt;

use clap::Parser as _;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    jwt::install_crypto_provider();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aosm-emulator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        cli::Command::Serve(args) => runtime.block_on(server::run(*args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("aosm-emulator: {e}");
            ExitCode::FAILURE
        }
    }
}
