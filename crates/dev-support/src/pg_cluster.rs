//! For fault tests: a PostgreSQL cluster of the test's own (`initdb` in a temporary folder,
//! trust access on 127.0.0.1 only, a free port), which the test may stop and start again — never
//! the machine's shared server. The same recipe as `scripts/ensure-postgres.sh`: the installed
//! server binaries (`/usr/lib/postgresql/<newest>/bin`), run as the `postgres` system user when
//! the test runs as root (initdb refuses root), the socket in the cluster's own folder. Errors
//! say what to install: tests fail, never skip. The cluster is stopped and deleted on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

/// How [`PgCluster::stop`] stops the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// `-m fast`: sessions are ended (their transactions rolled back), then a clean shutdown —
    /// an operator's restart.
    Fast,
    /// `-m immediate`: every process killed, no checkpoint — a crash.
    Immediate,
}

/// A running (or stopped) private cluster; its database `postgres` is reached by [`PgCluster::url`].
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .finish()
    }
}

/// The newest installed `/usr/lib/postgresql/<version>/bin` holding `pg_ctl`.
pub fn postgres_bin() -> Result<PathBuf, String> {
    const HINT: &str = "install the PostgreSQL server (scripts/install-test-deps.sh)";
    let entries = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("no /usr/lib/postgresql ({e}): {HINT}"))?;
    let mut found: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| format!("no /usr/lib/postgresql/*/bin/pg_ctl: {HINT}"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn id_of_postgres(flag: &str) -> Result<u32, String> {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .map_err(|e| format!("id: {e}"))?;
    if !out.status.success() {
        return Err("running as root needs the `postgres` OS user to run PostgreSQL \
                    (Debian's postgresql package creates it)"
            .into());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("id {flag} postgres: {e}"))
}

/// A loopback port nothing listens on, below Linux's ephemeral range (32768 and up), so that
/// no outgoing connection takes it while the server is stopped.
pub fn free_port() -> Result<u16, String> {
    for _ in 0..200 {
        let r = uuid::Uuid::new_v4().as_u128();
        let port = 20_000 + (r % 10_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free TCP port in 20000-29999 for PostgreSQL".into())
}

fn utf8(p: &Path) -> Result<&str, String> {
    p.to_str().ok_or_else(|| format!("{} is not UTF-8", p.display()))
}

impl PgCluster {
    /// `initdb` a new cluster in a temporary folder and start it on a free port.
    pub fn start_new() -> Result<PgCluster, String> {
        let cluster = PgCluster::init_new()?;
        cluster.start()?;
        Ok(cluster)
    }

    /// `initdb` a new cluster in a temporary folder, not started (files can be installed with
    /// [`PgCluster::install_private_file`] first; then [`PgCluster::start_with`]).
    pub fn init_new() -> Result<PgCluster, String> {
        let bin = postgres_bin()?;
        let dir = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
        let as_postgres = is_root();
        if as_postgres {
            std::os::unix::fs::chown(
                dir.path(),
                Some(id_of_postgres("-u")?),
                Some(id_of_postgres("-g")?),
            )
            .map_err(|e| format!("chown {} to postgres: {e}", dir.path().display()))?;
        }
        let cluster = PgCluster {
            dir,
            bin,
            port: free_port()?,
            as_postgres,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                utf8(&data)?,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                // The cluster dies with the test: no need to flush initdb's files.
                "--no-sync",
            ],
        )?;
        Ok(cluster)
    }

    /// Copies `from` into the cluster's folder as `name`, readable by the server only
    /// (PostgreSQL refuses a key file others can read); answers its path.
    pub fn install_private_file(&self, from: &Path, name: &str) -> Result<String, String> {
        use std::os::unix::fs::PermissionsExt;
        let to = self.dir.path().join(name);
        std::fs::copy(from, &to).map_err(|e| format!("copy {} to {}: {e}", from.display(), to.display()))?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("chmod {}: {e}", to.display()))?;
        if self.as_postgres {
            std::os::unix::fs::chown(&to, Some(id_of_postgres("-u")?), Some(id_of_postgres("-g")?))
                .map_err(|e| format!("chown {} to postgres: {e}", to.display()))?;
        }
        Ok(utf8(&to)?.to_owned())
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server on 127.0.0.1; returns once it accepts connections.
    pub fn start(&self) -> Result<(), String> {
        self.start_with("-c listen_addresses=127.0.0.1")
    }

    /// Starts the server with `options` (`-c name=value ...`, `listen_addresses` among them);
    /// returns once it accepts connections.
    pub fn start_with(&self, options: &str) -> Result<(), String> {
        let options = format!("-p {} -k {} {options}", self.port, utf8(self.dir.path())?);
        let (data, log) = (self.data(), self.log());
        self.run(
            "pg_ctl",
            &[
                "-D",
                utf8(&data)?,
                "-l",
                utf8(&log)?,
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// Stops the server; returns once it is down.
    pub fn stop(&self, mode: StopMode) -> Result<(), String> {
        let mode = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        let data = self.data();
        self.run("pg_ctl", &["-D", utf8(&data)?, "-m", mode, "-w", "stop"])
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let out = self
            .command(tool)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("cannot run {tool}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{tool} {args:?} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.log()).unwrap_or_default()
        ))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(data) = self.data().to_str() {
            let _ = self
                .command("pg_ctl")
                .args(["-D", data, "-m", "immediate", "stop"])
                .output();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_private_cluster_stops_and_starts_again() {
        use sqlx::Connection;
        let cluster = PgCluster::start_new().expect("a throwaway cluster");
        let one = || async {
            let mut c = sqlx::PgConnection::connect(&cluster.url()).await?;
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut c).await
        };
        assert_eq!(one().await.expect("up"), 1);
        cluster.stop(StopMode::Fast).expect("stop");
        assert!(one().await.is_err(), "down");
        cluster.start().expect("start again");
        assert_eq!(one().await.expect("up again"), 1);
        cluster.stop(StopMode::Immediate).expect("crash");
        assert!(one().await.is_err(), "down");
    }
}
