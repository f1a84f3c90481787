//! For tests of any crate: a PostgreSQL database of its own on the server named by `DATABASE_URL`
//! (`CREATE DATABASE audit_<uuid>`), dropped with the value, even when the test panics.
//! Without `DATABASE_URL` the error says how to get one: tests must fail, never skip.

/// A fresh, empty database; the audit tables appear when an audit log first connects to it.
pub struct TestDatabase {
    admin: String,
    name: String,
    url: String,
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase").field("name", &self.name).finish()
    }
}

/// `DATABASE_URL`, or an error that tells how to set it.
pub fn database_url() -> Result<String, String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Ok(url),
        _ => Err(
            "DATABASE_URL is not set: this test needs PostgreSQL. Run `make test`, or \
                  export DATABASE_URL=\"$(scripts/ensure-postgres.sh)\""
                .into(),
        ),
    }
}

/// `url` naming database `name` instead of its own.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}

async fn connect(url: &str) -> Result<sqlx::PgConnection, String> {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        // The URL is not repeated: it may hold a password.
        .map_err(|e| format!("cannot connect to DATABASE_URL: {e}"))
}

async fn admin(url: &str, sql: String) -> Result<(), String> {
    let mut conn = connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
        .execute(&mut conn)
        .await
        .map_err(|e| format!("`{sql}` failed: {e}"))?;
    Ok(())
}

impl TestDatabase {
    /// Creates the database on the server of `DATABASE_URL`.
    pub async fn create() -> Result<TestDatabase, String> {
        let admin_url = database_url()?;
        // A uuid in simple form is a valid unquoted identifier after the prefix.
        let name = format!("audit_{}", uuid::Uuid::new_v4().simple());
        admin(&admin_url, format!("CREATE DATABASE {name}")).await?;
        Ok(TestDatabase {
            url: with_database(&admin_url, &name),
            admin: admin_url,
            name,
        })
    }

    /// Its URL (with the credentials of `DATABASE_URL`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name, `audit_<uuid>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's next transaction id (cluster-wide): the difference between two readings is
    /// the number of write transactions in between, on every database of the server.
    pub async fn next_transaction_id(&self) -> Result<i64, String> {
        let mut conn = connect(&self.admin).await?;
        sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| format!("reading the next transaction id failed: {e}"))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop may run inside a runtime (which cannot block): use a thread with its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let _ = rt.block_on(admin(&admin_url, sql));
            }
        })
        .join();
    }
}
