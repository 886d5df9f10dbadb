//! Storage: metadata on SQLite (embedded default) or PostgreSQL (cluster), through
//! sqlx's `Any` driver so one set of queries serves both, and files ([`blob`]) on a
//! local directory or S3.
//!
//! - [`Db`]: the pools. SQLite gets one writer connection (writes are serialized
//!   in-process, so they never meet `SQLITE_BUSY` or a lock upgrade deadlock) and
//!   a pool of readers; PostgreSQL gets one bounded pool.
//! - [`Migration`]: schema changes embedded in the binary, run at start, recorded
//!   per component in `mlops_migrations`.
//! - [`StorageError`]: what went wrong, classified for gRPC (a saturated pool is
//!   `RESOURCE_EXHAUSTED`, an unreachable database `UNAVAILABLE`).
//! - [`Db::search`]: searches, a bounded number at once, within the statement
//!   timeout, and on PostgreSQL on connections of their own, planned for each
//!   search's values and cancelled when their caller goes away.
//! - [`blob`]: artifacts and model files, the path rules applied before touching
//!   them, and writes that never leave a partial file where a reader could see it.
//!
//! Queries use `$1`-style placeholders, which both backends accept.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use mlops_runtime::{ErrorCode, ServiceError};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use tokio::sync::Semaphore;

pub mod blob;
mod search;

pub use sqlx;

/// Which database is behind the pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// `sqlite://path/to/file.db` or `postgres://user:pass@host:port/db`.
    pub url: String,
    /// The most connections open at once (readers, for SQLite).
    pub max_connections: u32,
    /// How long a request waits for a free connection before `RESOURCE_EXHAUSTED`.
    pub acquire_timeout: Duration,
    /// The longest a single statement may run before it is cancelled
    /// (`DEADLINE_EXCEEDED`); zero for no limit. On PostgreSQL this is the server's
    /// `statement_timeout` on every connection; on SQLite, which cannot interrupt a
    /// statement through sqlx, searches stop waiting for it (see [`Db::search`]).
    pub statement_timeout: Duration,
}

/// The database settings every service with a database shares, flattened into its
/// config; the service gives `database_url` its default with
/// `#[command(mut_arg("database_url", |a| a.default_value("sqlite://data/NAME.db")))]`.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// Metadata database: sqlite://PATH (created if missing) or postgres://USER:PASS@HOST:PORT/DB.
    #[arg(long, required = false)]
    pub database_url: String,
    /// Most database connections open at once.
    #[arg(long, default_value_t = 16)]
    pub db_max_connections: u32,
    /// How long a request waits for a database connection before RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 2000)]
    pub db_acquire_timeout_ms: u64,
    /// The longest one database statement may run, in milliseconds, before it is
    /// cancelled with DEADLINE_EXCEEDED (0: no limit). On SQLite only searches are
    /// bounded, and the answer stops waiting rather than the statement stopping.
    #[arg(long, default_value_t = 30_000)]
    pub db_statement_timeout_ms: u64,
}

impl DbArgs {
    /// Checks values that the types alone do not.
    pub fn validate(&self) -> Result<(), mlops_runtime::config::ConfigError> {
        use mlops_runtime::config::ConfigError;
        if self.database_url.trim().is_empty() {
            return Err(ConfigError::Invalid {
                setting: "database_url",
                message: "must be sqlite://PATH or postgres://USER:PASS@HOST:PORT/DB".into(),
            });
        }
        if self.db_max_connections == 0 {
            return Err(ConfigError::Invalid {
                setting: "db_max_connections",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// The pool options these settings describe.
    pub fn options(&self) -> DbOptions {
        DbOptions {
            url: self.database_url.clone(),
            max_connections: self.db_max_connections,
            acquire_timeout: Duration::from_millis(self.db_acquire_timeout_ms),
            statement_timeout: Duration::from_millis(self.db_statement_timeout_ms),
        }
    }
}

/// The conversions every service's error type needs, written once: from a
/// database error (through the type's `Storage(StorageError)` variant) and into a
/// gRPC status (through its `mlops_runtime::ServiceError` code). The crate using it
/// depends on `tonic` and `mlops-runtime`.
#[macro_export]
macro_rules! service_error {
    ($error:ident) => {
        impl From<$crate::sqlx::Error> for $error {
            fn from(e: $crate::sqlx::Error) -> Self {
                $error::Storage($crate::StorageError::from(e))
            }
        }

        impl From<$error> for ::tonic::Status {
            fn from(e: $error) -> Self {
                ::mlops_runtime::to_status(&e)
            }
        }
    };
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Every connection is busy and none freed up in time (the pool's acquire
    /// timeout, when known where the error was classified).
    #[error("the database is overloaded: no connection came free within {}; retry with backoff", within(.0, "db_acquire_timeout_ms"))]
    Exhausted(Option<Duration>),
    /// Too many searches are running at once; writes keep the rest of the pool.
    #[error(
        "too many searches are running at once (at most {0} on this server); retry with backoff"
    )]
    SearchesBusy(usize),
    /// A statement ran past the statement timeout and was cancelled.
    #[error("the query ran longer than {} and was cancelled; narrow the request (fewer clauses, a smaller page) or raise the limit", within(.0, "db_statement_timeout_ms"))]
    TimedOut(Option<Duration>),
    /// The database cannot be reached.
    #[error("the database is unreachable: {0}")]
    Unavailable(String),
    /// The URL is not one we support.
    #[error("unsupported database url `{0}`: expected sqlite://PATH or postgres://USER@HOST/DB")]
    BadUrl(String),
    /// A migration failed.
    #[error("migration {component} v{version} ({name}) failed: {source}")]
    Migration {
        /// The component whose schema it is.
        component: String,
        /// Its version.
        version: i64,
        /// Its name.
        name: String,
        /// The database's error.
        source: sqlx::Error,
    },
    /// Any other database error (a bug or a broken database).
    #[error("database error: {0}")]
    Other(sqlx::Error),
}

impl ServiceError for StorageError {
    fn code(&self) -> ErrorCode {
        match self {
            StorageError::Exhausted(_) | StorageError::SearchesBusy(_) => {
                ErrorCode::ResourceExhausted
            }
            StorageError::TimedOut(_) => ErrorCode::DeadlineExceeded,
            StorageError::Unavailable(_) => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut => StorageError::Exhausted(None),
            // query_canceled: the statement timeout, or a search cancelled because its
            // caller went away.
            sqlx::Error::Database(d) if d.code().as_deref() == Some("57014") => {
                StorageError::TimedOut(None)
            }
            sqlx::Error::Io(io) => StorageError::Unavailable(io.to_string()),
            sqlx::Error::PoolClosed => {
                StorageError::Unavailable("the connection pool is closed".into())
            }
            sqlx::Error::Tls(t) => StorageError::Unavailable(t.to_string()),
            other => StorageError::Other(other),
        }
    }
}

/// `"2s"` for a known duration, else the setting that holds it.
fn within(d: &Option<Duration>, setting: &str) -> String {
    match d {
        Some(d) => format!("{d:?}"),
        None => format!("the configured limit ({setting})"),
    }
}

/// Whether `e` is a unique-constraint violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// One schema change of a component, in both dialects.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Strictly increasing within the component.
    pub version: i64,
    /// What it does.
    pub name: Cow<'static, str>,
    /// The SQLite statements.
    pub sqlite: Cow<'static, str>,
    /// The PostgreSQL statements.
    pub postgres: Cow<'static, str>,
}

/// The pools of one service.
#[derive(Clone, Debug)]
pub struct Db {
    backend: Backend,
    read: AnyPool,
    write: AnyPool,
    /// Where searches run: on PostgreSQL a pool of its own (see [`Db::search`]), on
    /// SQLite the readers.
    search: AnyPool,
    acquire_timeout: Duration,
    statement_timeout: Option<Duration>,
    /// Searches running at once. On PostgreSQL searches get half of
    /// `max_connections` as a pool of their own and reads and writes the other half,
    /// so a burst of slow searches cannot take the connections writes need; on
    /// SQLite writes have their own connection anyway.
    search_slots: Arc<Semaphore>,
    search_slot_count: usize,
}

/// How long a service starting waits for its database's first connection, at least.
const STARTUP_WAIT: Duration = Duration::from_secs(10);

/// Opens a pool on `url`. Its first connection may take longer than the
/// per-request `acquire_timeout` (a loaded machine, a database still starting):
/// a timed-out attempt is retried until [`STARTUP_WAIT`] (or the acquire timeout,
/// when longer) has passed, so a service waits for its database instead of failing
/// at start on a limit meant for requests. Other errors return at once.
async fn open_pool(
    url: &str,
    opts: &DbOptions,
    make: impl Fn() -> AnyPoolOptions,
) -> Result<AnyPool, sqlx::Error> {
    let deadline = std::time::Instant::now() + STARTUP_WAIT.max(opts.acquire_timeout);
    loop {
        match make().connect(url).await {
            Err(sqlx::Error::PoolTimedOut) if std::time::Instant::now() < deadline => {
                tracing::info!("the database's first connection timed out; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

impl Db {
    /// Opens the pools (creating a SQLite file and its directory if needed).
    pub async fn connect(opts: &DbOptions) -> Result<Db, StorageError> {
        sqlx::any::install_default_drivers();
        let url = opts.url.trim();
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            let (path, query) = path.split_once('?').unwrap_or((path, ""));
            if path.is_empty() || path.starts_with(":memory:") {
                return Err(StorageError::BadUrl(url.to_owned()));
            }
            if let Some(dir) = std::path::Path::new(path).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StorageError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
            }
            let query = if query.is_empty() {
                "mode=rwc".to_owned()
            } else {
                query.to_owned()
            };
            let full = format!("sqlite://{path}?{query}");
            // The writer is opened first so it creates the file and switches it to WAL.
            let write = open_pool(&full, opts, || {
                pool_options()
                    .max_connections(1)
                    .acquire_timeout(opts.acquire_timeout)
                    .after_connect(|conn, _meta| sqlite_pragmas(conn))
            })
            .await?;
            let read = open_pool(&full, opts, || {
                pool_options()
                    .max_connections(opts.max_connections.max(1))
                    .acquire_timeout(opts.acquire_timeout)
                    .after_connect(|conn, _meta| sqlite_pragmas(conn))
            })
            .await?;
            return Ok(Db::new(Backend::Sqlite, read.clone(), write, read, opts));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let timeout_ms = opts.statement_timeout.as_millis();
            // Half of the connections serve searches, the other half everything else.
            let slots = (opts.max_connections.max(1) / 2).max(1);
            let pool = open_pool(url, opts, || {
                pool_options()
                    .max_connections((opts.max_connections.max(1) - slots).max(1))
                    .acquire_timeout(opts.acquire_timeout)
                    .after_connect(move |conn, _meta| postgres_settings(conn, timeout_ms, false))
            })
            .await?;
            // Connected on the first search: the first connection above proved the URL.
            let search = pool_options()
                .max_connections(slots)
                .acquire_timeout(opts.acquire_timeout)
                .after_connect(move |conn, _meta| postgres_settings(conn, timeout_ms, true))
                .connect_lazy(url)?;
            return Ok(Db::new(Backend::Postgres, pool.clone(), pool, search, opts));
        }
        Err(StorageError::BadUrl(url.to_owned()))
    }

    fn new(
        backend: Backend,
        read: AnyPool,
        write: AnyPool,
        search: AnyPool,
        opts: &DbOptions,
    ) -> Db {
        // As many searches at once as their pool has connections.
        let search_slot_count = search.options().get_max_connections() as usize;
        Db {
            backend,
            read,
            write,
            search,
            acquire_timeout: opts.acquire_timeout,
            statement_timeout: (!opts.statement_timeout.is_zero())
                .then_some(opts.statement_timeout),
            search_slots: Arc::new(Semaphore::new(search_slot_count)),
            search_slot_count,
        }
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for reads.
    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// The pool for writes (a single connection on SQLite).
    pub fn writer(&self) -> &AnyPool {
        &self.write
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Transaction<'static, Any>, StorageError> {
        self.write.begin().await.map_err(|e| self.classify(e))
    }

    /// A write transaction whose commit does not wait for its WAL flush on PostgreSQL
    /// (`SET LOCAL synchronous_commit = off`, sent with the `BEGIN` in one round trip):
    /// for a commit that a later synchronous one makes durable before anyone is
    /// answered, or whose loss in a crash is harmless. SQLite: [`Db::begin`].
    pub async fn begin_unsynced(&self) -> Result<Transaction<'static, Any>, StorageError> {
        match self.backend {
            Backend::Postgres => self
                .write
                .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
                .await
                .map_err(|e| self.classify(e)),
            Backend::Sqlite => self.begin().await,
        }
    }

    /// Turns a sqlx error into a [`StorageError`], with this pool's limits in the message.
    pub fn classify(&self, e: sqlx::Error) -> StorageError {
        match StorageError::from(e) {
            StorageError::Exhausted(_) => StorageError::Exhausted(Some(self.acquire_timeout)),
            StorageError::TimedOut(_) => StorageError::TimedOut(self.statement_timeout),
            other => other,
        }
    }

    /// Checks the database answers (for readiness).
    pub async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1")
            .fetch_one(&self.read)
            .await
            .map_err(|e| self.classify(e))?;
        Ok(())
    }

    /// Connections open and idle, for the pool gauge.
    pub fn pool_stats(&self) -> (u32, usize) {
        // SQLite: readers (which serve searches too) and the writer; PostgreSQL: the
        // shared pool and the searches' own.
        let other = match self.backend {
            Backend::Sqlite => &self.write,
            Backend::Postgres => &self.search,
        };
        let size = self.read.size() + other.size();
        let idle = self.read.num_idle() + other.num_idle();
        (size, idle)
    }

    /// Applies the migrations of `component` not applied yet, each in its own transaction.
    pub async fn migrate(
        &self,
        component: &str,
        migrations: &[Migration],
    ) -> Result<(), StorageError> {
        let mut conn = self.write.acquire().await.map_err(|e| self.classify(e))?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS mlops_migrations (component TEXT NOT NULL, version BIGINT NOT NULL, \
             name TEXT NOT NULL, applied_at BIGINT NOT NULL, PRIMARY KEY (component, version))",
        )
        .await?;
        if self.backend == Backend::Postgres {
            // Replicas starting together take turns.
            sqlx::query("SELECT pg_advisory_lock(7243001)")
                .execute(&mut *conn)
                .await?;
        }
        let result = self.apply(&mut conn, component, migrations).await;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(7243001)")
                .execute(&mut *conn)
                .await?;
        }
        result
    }

    async fn apply(
        &self,
        conn: &mut sqlx::AnyConnection,
        component: &str,
        migrations: &[Migration],
    ) -> Result<(), StorageError> {
        let rows: Vec<AnyRow> =
            sqlx::query("SELECT version FROM mlops_migrations WHERE component = $1")
                .bind(component)
                .fetch_all(&mut *conn)
                .await?;
        let applied: Vec<i64> = rows.iter().map(|r| r.get::<i64, _>(0)).collect();
        for m in migrations.iter().filter(|m| !applied.contains(&m.version)) {
            let sql = match self.backend {
                Backend::Sqlite => &m.sqlite,
                Backend::Postgres => &m.postgres,
            };
            let err = |source| StorageError::Migration {
                component: component.to_owned(),
                version: m.version,
                name: m.name.to_string(),
                source,
            };
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            if self.backend == Backend::Postgres {
                // A migration may rewrite a big table: the per-query limit is for requests.
                sqlx::raw_sql("SET LOCAL statement_timeout = 0")
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
            sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(err)?;
            sqlx::query("INSERT INTO mlops_migrations (component, version, name, applied_at) VALUES ($1, $2, $3, $4)")
                .bind(component)
                .bind(m.version)
                .bind(m.name.as_ref())
                .bind(now_millis())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)?;
            tracing::info!(component, version = m.version, name = %m.name, "migration applied");
        }
        Ok(())
    }
}

type BoxFut<'c> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c>>;

/// Per-connection SQLite settings: WAL so readers never block the writer; reads
/// through a memory map (and a 16 MiB page cache) rather than a `read` per page, which
/// halved search latency; case-sensitive LIKE as MLflow's grammar means it (ILIKE is
/// lowered explicitly).
fn sqlite_pragmas(conn: &mut sqlx::AnyConnection) -> BoxFut<'_> {
    Box::pin(async move {
        conn.execute(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000; \
             PRAGMA mmap_size=268435456; PRAGMA cache_size=-16384; \
             PRAGMA foreign_keys=ON; PRAGMA case_sensitive_like=ON;",
        )
        .await?;
        Ok(())
    })
}

/// Per-connection PostgreSQL settings: the statement timeout, and no JIT. JIT
/// compiles any plan whose estimated cost passes `jit_above_cost`, which a search with
/// a dozen clauses does: it then spends most of a second (several with 100 clauses)
/// compiling a plan that runs in milliseconds.
fn postgres_settings(
    conn: &mut sqlx::AnyConnection,
    statement_timeout_ms: u128,
    searches: bool,
) -> BoxFut<'_> {
    Box::pin(async move {
        let searches = if searches {
            " SET plan_cache_mode = force_custom_plan; SET application_name = 'mlops-search';"
        } else {
            ""
        };
        conn.execute(
            format!("SET statement_timeout = {statement_timeout_ms}; SET jit = off;{searches}")
                .as_str(),
        )
        .await?;
        Ok(())
    })
}

/// A pool's options. sqlx pings a connection each time it is taken from the pool and
/// each time it goes back: the second ping proves a connection returned a moment ago
/// still works, so the first is only worth its round trip for one idle long
/// enough to have been dropped by the server or the network.
fn pool_options() -> AnyPoolOptions {
    AnyPoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for < Duration::from_secs(1) {
                    return Ok(true);
                }
                // A broken connection is closed and another one taken.
                Ok(sqlx::Connection::ping(conn).await.is_ok())
            })
        })
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migrations() -> Vec<Migration> {
        vec![Migration {
            version: 1,
            name: "things".into(),
            sqlite: "CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
                .into(),
            postgres: "CREATE TABLE things (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
                .into(),
        }]
    }

    #[tokio::test]
    async fn sqlite_migrates_once_and_classifies_errors() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/sub/x.db", dir.path().display());
        let db = Db::connect(&DbOptions {
            url,
            max_connections: 2,
            // Generous: opening a new SQLite file on a loaded CI machine took over 1 s.
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(5),
        })
        .await
        .unwrap();
        db.migrate("test", &migrations()).await.unwrap();
        db.migrate("test", &migrations()).await.unwrap();
        sqlx::query("INSERT INTO things (name) VALUES ($1)")
            .bind("a")
            .execute(db.writer())
            .await
            .unwrap();
        let dup = sqlx::query("INSERT INTO things (name) VALUES ($1)")
            .bind("a")
            .execute(db.writer())
            .await
            .unwrap_err();
        assert!(is_unique_violation(&dup));
        db.ping().await.unwrap();
        assert!(matches!(
            Db::connect(&DbOptions {
                url: "mysql://x".into(),
                max_connections: 1,
                acquire_timeout: Duration::from_secs(1),
                statement_timeout: Duration::ZERO,
            })
            .await,
            Err(StorageError::BadUrl(_))
        ));
    }
}
