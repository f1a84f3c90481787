//! `ehealth-audit`: the operators' view of the audit log (SPEC.md §4 "Operators can read the log
//! by correlation id or patient from a CLI"): `list` and `export` read, `verify` checks the
//! append-only guarantees, `migrate` (the one command that writes) installs or upgrades the schema
//! and grants the services' role its privileges.
//!
//! The database is `--sqlite PATH`, else `--database-url URL`, else `DATABASE_URL`, else the
//! embedded default `.local/audit.sqlite`. Prefer `DATABASE_URL` over `--database-url` for URLs
//! with a password: command lines are visible to other users of the machine.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use audit_log::{AuditBackend, AuditReader, AuditSettings, EventFilter, StoredEvent, time};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "ehealth-audit",
    version,
    about = "Read, export, verify and migrate the eHealth gateway suite's audit log"
)]
struct Cli {
    /// Accept a PostgreSQL server reached over the network without sslmode=verify-full or
    /// verify-ca (e.g. behind a TLS sidecar).
    #[arg(long, global = true)]
    allow_unverified_transport: bool,
    /// PostgreSQL URL (default: the DATABASE_URL environment variable).
    #[arg(long, value_name = "URL", conflicts_with = "sqlite")]
    database_url: Option<String>,
    /// SQLite audit file (default when no PostgreSQL URL is given: .local/audit.sqlite).
    #[arg(long, value_name = "PATH")]
    sqlite: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List events, oldest first.
    List(ListArgs),
    /// Write every event of a time range (and service) as JSON lines, oldest first, to stdout.
    Export(ExportArgs),
    /// Check that the append-only guarantees hold (exit 1 when one does not).
    Verify(VerifyArgs),
    /// Apply the schema migrations (run as the role that owns the tables) and grant the
    /// services' role its privileges.
    Migrate(MigrateArgs),
}

#[derive(clap::Args)]
struct ExportArgs {
    /// Only this service's events (cps-relay, dmp-gateway, twiin-authz).
    #[arg(long)]
    service: Option<String>,
    /// Events at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = time::parse_rfc3339)]
    since: Option<SystemTime>,
    /// Events before this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = time::parse_rfc3339)]
    until: Option<SystemTime>,
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// Also check that this role (the services' login) has the services' privileges and no more.
    #[arg(long, value_name = "ROLE")]
    service_role: Option<String>,
}

#[derive(clap::Args)]
struct MigrateArgs {
    /// Role the services connect with; gets SELECT, INSERT, DELETE on audit_events and SELECT,
    /// INSERT, UPDATE, DELETE on audit_jti (earlier grants revoked). Repeatable.
    #[arg(long, value_name = "ROLE")]
    grant_to: Vec<String>,
}

#[derive(clap::Args)]
struct ListArgs {
    /// Trace id, AORTA-ID initialRequestID or requestID.
    #[arg(long, value_name = "ID")]
    correlation_id: Option<String>,
    /// Patient BSN or INS.
    #[arg(long, value_name = "BSN_OR_INS")]
    patient: Option<String>,
    /// Professional / user id (RPPS, UZI, ...).
    #[arg(long, value_name = "ID")]
    professional: Option<String>,
    /// Service name (cps-relay, dmp-gateway, twiin-authz).
    #[arg(long)]
    service: Option<String>,
    /// Events at or after this time (RFC 3339, e.g. 2026-11-24T08:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = time::parse_rfc3339)]
    since: Option<SystemTime>,
    /// Events before this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = time::parse_rfc3339)]
    until: Option<SystemTime>,
    /// At most this many events.
    #[arg(long, default_value_t = 1000)]
    limit: u32,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON object per line, every column.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ehealth-audit: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ehealth-audit: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Err (exit code 1, the reason on stderr): the command could not run, or `verify` found a
/// guarantee broken.
async fn run(cli: Cli) -> Result<(), String> {
    let settings = AuditSettings::default();
    let backend = match (cli.sqlite, cli.database_url) {
        (Some(path), _) => AuditBackend::Sqlite { path },
        (None, Some(url)) => AuditBackend::from_url(&url)?.check_transport(cli.allow_unverified_transport)?,
        (None, None) => AuditSettings {
            allow_unverified_transport: cli.allow_unverified_transport,
            ..settings.clone()
        }
        .backend()?,
    };
    let args = match cli.command {
        Command::List(args) => args,
        Command::Export(args) => return export(&backend, &settings, args).await,
        Command::Verify(args) => return verify(&backend, args).await,
        Command::Migrate(args) => {
            for line in audit_log::migrate(&backend, &args.grant_to)
                .await
                .map_err(|e| e.to_string())?
            {
                println!("{line}");
            }
            return Ok(());
        }
    };
    let reader = AuditReader::open(&backend, &settings)
        .await
        .map_err(|e| e.to_string())?;
    let filter = EventFilter {
        correlation_id: args.correlation_id,
        patient: args.patient,
        professional: args.professional,
        service: args.service,
        since: args.since,
        until: args.until,
        // One more than asked, to tell the operator when the list is cut.
        limit: Some(args.limit.saturating_add(1)),
    };
    let mut events = reader.list(&filter).await.map_err(|e| e.to_string())?;
    let cut = events.len() > args.limit as usize;
    events.truncate(args.limit as usize);
    let mut out = std::io::stdout().lock();
    let written = match args.format {
        Format::Json => events.iter().try_for_each(|e| writeln!(out, "{}", e.to_json())),
        Format::Table => write_table(&mut out, &events),
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write the output: {e}"))?;
    if cut {
        eprintln!(
            "ehealth-audit: showing the first {} events; more match (raise --limit or narrow the filter)",
            args.limit
        );
    }
    Ok(())
}

/// JSON lines, streamed: the whole range never sits in memory.
async fn export(backend: &AuditBackend, settings: &AuditSettings, args: ExportArgs) -> Result<(), String> {
    let reader = AuditReader::open(backend, settings)
        .await
        .map_err(|e| e.to_string())?;
    let filter = EventFilter {
        service: args.service,
        since: args.since,
        until: args.until,
        ..EventFilter::default()
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let count = reader
        .export(&filter, |e| writeln!(out, "{}", e.to_json()))
        .await
        .map_err(|e| e.to_string())?;
    out.flush().map_err(|e| format!("cannot write the output: {e}"))?;
    eprintln!("ehealth-audit: exported {count} events");
    Ok(())
}

async fn verify(backend: &AuditBackend, args: VerifyArgs) -> Result<(), String> {
    let checks = audit_log::verify(backend, args.service_role.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let mut failed = 0;
    for check in &checks {
        match &check.outcome {
            Ok(what) => println!("ok    {}: {what}", check.name),
            Err(why) => {
                failed += 1;
                println!("FAIL  {}: {why}", check.name);
            }
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {} checks failed ({backend})", checks.len()));
    }
    println!("all {} checks hold ({backend})", checks.len());
    Ok(())
}

const HEADERS: [&str; 11] = [
    "ID",
    "TIME",
    "SERVICE",
    "USE CASE",
    "DIRECTION",
    "STATUS",
    "ERROR",
    "USER",
    "PATIENT",
    "CLIENT",
    "CORRELATION",
];

/// Longest cell shown; full values are in `--format json`.
const MAX_CELL: usize = 40;

fn write_table(out: &mut impl Write, events: &[StoredEvent]) -> std::io::Result<()> {
    let rows: Vec<[String; 11]> = events.iter().map(row).collect();
    let mut widths = HEADERS.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &[String]| -> std::io::Result<()> {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", padded.join("  ").trim_end())
    };
    line(out, &HEADERS.map(String::from))?;
    for r in &rows {
        line(out, r)?;
    }
    Ok(())
}

fn row(s: &StoredEvent) -> [String; 11] {
    let e = &s.event;
    let opt = |v: &Option<String>| cell(v.as_deref().unwrap_or("-"));
    let patient = e.patient_bsn.as_ref().or(e.patient_ins.as_ref()).cloned();
    let correlation = e
        .initial_request_id
        .as_ref()
        .or(e.request_id.as_ref())
        .or(e.trace_id.as_ref())
        .cloned();
    [
        s.id.to_string(),
        time::rfc3339(e.time),
        cell(&e.service),
        cell(&e.use_case),
        e.direction.as_str().to_owned(),
        opt(&e.status),
        opt(&e.error_code),
        opt(&e.user_id),
        opt(&patient),
        opt(&e.client_id),
        opt(&correlation),
    ]
}

/// A value made safe for a terminal (no control characters: a hostile peer string must not
/// drive the operator's terminal) and cut to `MAX_CELL` characters.
fn cell(v: &str) -> String {
    let mut s: String = v
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(MAX_CELL + 1)
        .collect();
    if s.chars().count() > MAX_CELL {
        s = s.chars().take(MAX_CELL - 1).collect();
        s.push('…');
    }
    s
}
