//! Fail closed and heal (SPEC.md §4 "Decision — fail closed"): a throwaway PostgreSQL cluster,
//! started by the test with the installed binaries, is stopped in the middle of a write load and
//! started again. While it is down every write answers `Unavailable`; no write is acknowledged
//! that is not in the table; after the restart the same `AuditLog` writes again.
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit_log::{AuditError, AuditLog, AuditReader, AuditSettings, EventFilter};
use tokio::time::Instant;

/// A PostgreSQL cluster in a temporary directory, on a free loopback port.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

fn postgres_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries are needed in /usr/lib/postgresql/*/bin (scripts/install-test-deps.sh)")
        .filter_map(|e| {
            let e = e.ok()?;
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).expect(
        "no /usr/lib/postgresql/*/bin/pg_ctl: install the PostgreSQL server (scripts/install-test-deps.sh)",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, "postgres"]).output().expect("id");
    assert!(
        out.status.success(),
        "running as root needs the `postgres` OS user to run PostgreSQL"
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric id")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Cluster {
    fn init() -> Cluster {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("tempdir");
        if is_root() {
            // initdb refuses to run as root: the cluster belongs to the postgres user.
            std::os::unix::fs::chown(dir.path(), Some(id_of("-u")), Some(id_of("-g"))).expect("chown");
        }
        let cluster = Cluster {
            dir,
            bin,
            port: free_port(),
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let data = self.data();
        let log = self.log();
        self.run(
            "pg_ctl",
            &[
                "-D",
                path(&data),
                "-l",
                path(&log),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Like a crash: no checkpoint, clients cut off.
    fn stop(&self) {
        let data = self.data();
        self.run("pg_ctl", &["-D", path(&data), "-m", "immediate", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let exe = self.bin.join("pg_ctl");
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        let _ = cmd.args(["-D", path(&data), "-m", "immediate", "stop"]).output();
    }
}

struct Outcome {
    started: Instant,
    finished: Instant,
    result: Result<(), AuditError>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_fail_closed_while_postgres_is_down_and_resume_after() {
    let cluster = Cluster::init();
    cluster.start();
    let settings = AuditSettings {
        database_url: Some(cluster.url()),
        write_timeout: Duration::from_secs(1),
        max_connections: 4,
        ..AuditSettings::default()
    };
    let log = AuditLog::connect(&settings).await.expect("connect");

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<Mutex<HashMap<String, Outcome>>> = Arc::default();
    let writers: Vec<_> = (0..16)
        .map(|t| {
            let (log, stop, outcomes) = (log.clone(), stop.clone(), outcomes.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let id = format!("w{t}-{n}");
                    n += 1;
                    let started = Instant::now();
                    let result = log.record(common::tagged(&id)).await;
                    let failed = result.is_err();
                    let outcome = Outcome {
                        started,
                        finished: Instant::now(),
                        result,
                    };
                    outcomes.lock().expect("lock").insert(id, outcome);
                    if failed {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    let count = |pred: &dyn Fn(&Outcome) -> bool| {
        outcomes
            .lock()
            .expect("lock")
            .values()
            .filter(|o| pred(o))
            .count()
    };
    let wait_for = |what: &'static str, pred: Box<dyn Fn(&Outcome) -> bool>, n: usize| {
        let count = &count;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while count(&*pred) < n {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    wait_for("writes before the outage", Box::new(|o| o.result.is_ok()), 500).await;
    cluster.stop();
    let down = Instant::now();
    // Writes started from now until the restart cannot commit.
    wait_for(
        "failed writes during the outage",
        Box::new(move |o| o.started > down && o.result.is_err()),
        50,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A write still pending when the server comes back may rightly commit: the outage window
    // ends when the restart begins, not when `pg_ctl start` returns.
    let restart_begins = Instant::now();
    cluster.start();
    let up = Instant::now();
    wait_for(
        "writes after the restart",
        Box::new(move |o| o.started > up && o.result.is_ok()),
        500,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }

    let outcomes = std::mem::take(&mut *outcomes.lock().expect("lock"));
    let during: Vec<&Outcome> = outcomes
        .values()
        .filter(|o| o.started > down && o.finished < restart_begins)
        .collect();
    assert!(!during.is_empty());
    for o in &during {
        let Err(AuditError::Unavailable(msg)) = &o.result else {
            panic!("a write while PostgreSQL was down was acknowledged");
        };
        assert!(!msg.is_empty());
        assert!(
            o.finished - o.started < Duration::from_secs(4),
            "a failing write took {:?}: callers must not hang",
            o.finished - o.started
        );
    }

    // Nothing acknowledged is missing, nothing is stored twice, nothing unknown is stored.
    let reader = AuditReader::connect(&settings).await.expect("reader");
    let stored = reader.list(&EventFilter::default()).await.expect("list");
    let mut times: HashMap<String, usize> = HashMap::new();
    for s in &stored {
        *times
            .entry(s.event.request_id.clone().expect("tagged"))
            .or_default() += 1;
    }
    assert!(times.values().all(|&n| n == 1), "an event was stored twice");
    assert!(
        times.keys().all(|id| outcomes.contains_key(id)),
        "an unknown event was stored"
    );
    let acknowledged: Vec<&String> = outcomes
        .iter()
        .filter(|(_, o)| o.result.is_ok())
        .map(|(id, _)| id)
        .collect();
    let lost: Vec<&&String> = acknowledged
        .iter()
        .filter(|id| !times.contains_key(**id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let failed = outcomes.values().filter(|o| o.result.is_err()).count();
    eprintln!(
        "{} writes: {} acknowledged, {failed} failed closed, {} stored",
        outcomes.len(),
        acknowledged.len(),
        stored.len()
    );
}
