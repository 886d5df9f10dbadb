//! Searches: queries whose cost the caller's filter decides, run a bounded number at
//! once, within the statement timeout, and on PostgreSQL on connections of their own.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool};

use crate::{Backend, Db, StorageError};

impl Db {
    /// The pool searches run on ([`Db::search`]): their own on PostgreSQL, the
    /// readers on SQLite.
    pub fn searcher(&self) -> &AnyPool {
        &self.search
    }

    /// Runs a search (a query whose cost the caller's filter decides): at most
    /// [`Db::search_slots`] at once, within the statement timeout.
    ///
    /// On PostgreSQL searches have connections of their own (`application_name`
    /// `mlops-search` in `pg_stat_activity`), where each statement is prepared once
    /// per connection (no parse and no describe round trip after the first) and
    /// planned for every search's own values (`plan_cache_mode =
    /// force_custom_plan`): a generic plan cannot know how selective
    /// `params.p0 = 'a'` is. A search whose caller goes away (the future is
    /// dropped) is cancelled on the server by its backend's pid and its connection
    /// closed, so an abandoned search does not keep a connection busy.
    ///
    /// SQLite cannot be interrupted through sqlx: there the timeout stops the wait
    /// and answers `DEADLINE_EXCEEDED`, and the statement finishes on its reader
    /// connection (filters are bounded by `mlops_filter`'s limits, so it is short).
    pub async fn search<'q>(
        &self,
        query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<Vec<AnyRow>, StorageError> {
        let _slot = tokio::time::timeout(self.acquire_timeout, self.search_slots.acquire())
            .await
            .map_err(|_| StorageError::SearchesBusy(self.search_slot_count))?
            .map_err(|_| StorageError::Unavailable("the database is shutting down".into()))?;
        match self.backend {
            Backend::Sqlite => {
                let rows = query.fetch_all(&self.search);
                let rows = match self.statement_timeout {
                    Some(limit) => tokio::time::timeout(limit, rows)
                        .await
                        .map_err(|_| StorageError::TimedOut(Some(limit)))?,
                    None => rows.await,
                };
                rows.map_err(|e| self.classify(e))
            }
            Backend::Postgres => {
                let mut conn = self.search.acquire().await.map_err(|e| self.classify(e))?;
                // A round trip that cancelling needs: sqlx does not tell a
                // connection's backend pid.
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| self.classify(e))?;
                let mut guard = CancelOnDrop {
                    pool: Some(self.read.clone()),
                    pid,
                    conn,
                };
                let rows = query.fetch_all(&mut *guard.conn).await;
                guard.pool = None;
                rows.map_err(|e| self.classify(e))
            }
        }
    }

    /// How many searches may run at once (see [`Db::search`]).
    pub fn search_slots(&self) -> usize {
        self.search_slot_count
    }
}

/// Cancels, on the server, the search running on `conn` (backend `pid`) if it is
/// dropped while armed (`pool` set): the caller went away mid-query. Without it
/// PostgreSQL would run the abandoned statement to its end. The connection, left
/// in the middle of a statement, is closed rather than returned to the pool.
struct CancelOnDrop {
    pool: Option<AnyPool>,
    pid: i32,
    conn: sqlx::pool::PoolConnection<Any>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else { return };
        self.conn.close_on_drop();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pid = self.pid;
        // Best effort and bounded by the pool's acquire timeout: nothing awaits it
        // because the future that would is the one being dropped.
        rt.spawn(async move {
            let cancelled = sqlx::query("SELECT pg_cancel_backend($1)")
                .bind(pid)
                .execute(&pool)
                .await;
            match cancelled {
                Ok(_) => tracing::debug!(pid, "abandoned search cancelled"),
                Err(e) => tracing::warn!(error = %e, "cancelling an abandoned search failed"),
            }
        });
    }
}
