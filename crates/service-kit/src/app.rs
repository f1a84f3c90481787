//! The body of every service's thin `main.rs`: parse `--config`, load and validate the
//! configuration (a bad key stops start-up with its name, exit code 2), install telemetry, run
//! the service until SIGTERM or Ctrl-C, and exit non-zero on failure.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::config::{ServiceConfig, TelemetrySettings};

#[derive(Debug, Parser)]
struct Args {
    /// TOML configuration file; every key can also be set by environment variable.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Validate the configuration, print it, and exit.
    #[arg(long)]
    check_config: bool,
}

/// A configuration that carries telemetry settings.
pub trait HasTelemetry {
    /// The `[telemetry]` section.
    fn telemetry(&self) -> &TelemetrySettings;
}

/// Runs a service binary. `run` gets the validated configuration and a token cancelled on
/// SIGTERM / Ctrl-C; it returns when the service has drained.
pub fn main<C, F, Fut, E>(name: &'static str, run: F) -> ExitCode
where
    C: ServiceConfig + HasTelemetry,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let args = Args::parse();
    let config: C = match crate::config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        match toml_string(&config) {
            Ok(s) => {
                println!("{s}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("{name}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the Tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _telemetry = match crate::telemetry::init(name, config.telemetry()) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("{name}: {e}");
                return ExitCode::from(2);
            }
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(crate::server::cancel_on_signal(shutdown.clone()));
        match run(config, shutdown).await {
            Ok(()) => {
                tracing::info!("{name} stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{name} failed: {e}");
                eprintln!("{name}: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn toml_string<C: serde::Serialize>(c: &C) -> Result<String, String> {
    let value = figment::Figment::from(figment::providers::Serialized::defaults(c))
        .extract::<figment::value::Value>()
        .map_err(|e| e.to_string())?;
    serde_json::to_string_pretty(&value).map_err(|e| e.to_string())
}
