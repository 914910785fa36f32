//! What can go wrong in the store, and which failures are worth retrying.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot serve requests now: it cannot be reached, is starting or shutting
    /// down, is out of resources, or gave up on the request under contention. The same request
    /// may succeed when retried.
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database answered, and retrying will not change the answer: a query that does not
    /// fit the schema, a value that does not decode, a constraint the store did not expect.
    /// A bug, or a database changed beneath the service.
    #[error("storage failed: {0}")]
    Database(#[source] sqlx::Error),
    #[error("{0} already exists")]
    Conflict(Entity),
    #[error("{0} does not exist")]
    Missing(Entity),
    /// Stored data that cannot be read back (a bug or tampering).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the same request may succeed when retried.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// An error opening a PostgreSQL connection. At that moment one more SQLSTATE means "not
    /// now": object_not_in_prerequisite_state (55000), the answer of a database that does not
    /// accept connections (`ALTER DATABASE ... ALLOW_CONNECTIONS false`, during maintenance).
    /// In a query the same code means the query is wrong for the state it found.
    pub(crate) fn from_connect(err: sqlx::Error) -> Self {
        let refused = err
            .as_database_error()
            .and_then(|db| db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
            .is_some_and(|pg| postgres_refuses_connections_now(pg.code()));
        if refused { Self::Unavailable(err) } else { err.into() }
    }

    /// A write's error, with the constraints read for what they mean here: a unique key
    /// already held is a conflict over `taken`, a reference to no row is `referenced` missing.
    pub(crate) fn from_write(err: sqlx::Error, taken: Option<Entity>, referenced: Option<Entity>) -> Self {
        if let Some(db) = err.as_database_error() {
            if let Some(entity) = taken.filter(|_| db.is_unique_violation()) {
                return Self::Conflict(entity);
            }
            if let Some(entity) = referenced.filter(|_| db.is_foreign_key_violation()) {
                return Self::Missing(entity);
            }
        }
        err.into()
    }
}

/// What a [`StoreError::Conflict`] or [`StoreError::Missing`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entity {
    Subject,
    Collection,
    ApiKey,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Collection => "collection",
            Self::ApiKey => "api key",
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if unavailable(&err) { Self::Unavailable(err) } else { Self::Database(err) }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    /// Classified by the database error that stopped a migration, when there was one (see
    /// [`unavailable`]): a history that does not match the migrations is not retryable.
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        sqlx::Error::from(err).into()
    }
}

/// Whether `err` means the database cannot serve the request now (rather than that the
/// request is wrong for it). Each variant is named so that a new one is a decision, not a
/// default: `sqlx::Error` is `#[non_exhaustive]`, so only variants added after sqlx 0.9 reach
/// the last arm.
fn unavailable(err: &sqlx::Error) -> bool {
    use sqlx::Error;
    match err {
        // The connection: it could not be made, broke, or its TLS failed. A new connection,
        // later, may work.
        Error::Io(_) | Error::Tls(_) => true,
        // Garbage on the wire means a broken connection (or a broken driver); the pool
        // replaces the connection, so a retry gets a fresh one.
        Error::Protocol(_) => true,
        // No connection became free within the acquire timeout (all busy, or the database
        // refuses new ones), or the pool is closing with the service.
        Error::PoolTimedOut | Error::PoolClosed => true,
        // SQLite runs each connection on a worker thread; a crashed one is replaced.
        Error::WorkerCrashed => true,
        Error::Database(db) => database_unavailable(db.as_ref()),
        Error::Migrate(migration) => match migration.as_ref() {
            sqlx::migrate::MigrateError::Execute(cause)
            | sqlx::migrate::MigrateError::ExecuteMigration(cause, _) => unavailable(cause),
            _ => false,
        },
        // The service asked for something wrong: a bad URL or option, a query that does not
        // fit the schema, a value that does not encode or decode, a transaction misused.
        // Asking again gives the same answer.
        Error::Configuration(_)
        | Error::ConfigFile(_)
        | Error::InvalidArgument(_)
        | Error::RowNotFound
        | Error::TypeNotFound { .. }
        | Error::ColumnIndexOutOfBounds { .. }
        | Error::ColumnNotFound(_)
        | Error::ColumnDecode { .. }
        | Error::Encode(_)
        | Error::Decode(_)
        | Error::AnyDriverError(_)
        | Error::InvalidSavePointStatement
        | Error::BeginFailed => false,
        // A variant newer than this list: not retried until it has been looked at.
        _ => false,
    }
}

/// An error the database itself returned, by backend.
fn database_unavailable(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        // FATAL ends the session: the pool opening a connection for a query was refused (the
        // database does not accept connections now), which a connection later may not be.
        let refused_connection =
            pg.severity() == sqlx::postgres::PgSeverity::Fatal && postgres_refuses_connections_now(pg.code());
        refused_connection || postgres_unavailable(pg.code())
    } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        db.code().and_then(|code| code.parse().ok()).is_some_and(sqlite_unavailable)
    } else {
        false
    }
}

/// PostgreSQL SQLSTATEs (appendix A of its manual) that mean "not now" rather than "not this".
fn postgres_unavailable(sqlstate: &str) -> bool {
    let class = sqlstate.get(..2).unwrap_or_default();
    match class {
        // connection_exception: the connection failed or was refused.
        "08" => true,
        // insufficient_resources: too_many_connections, disk_full, out_of_memory.
        "53" => true,
        // system_error and io_error: the database's own files or disk.
        "58" => matches!(sqlstate, "58000" | "58030"),
        // operator_intervention: admin_shutdown (57P01), crash_shutdown (57P02),
        // cannot_connect_now (57P03: starting up, shutting down, in recovery),
        // idle_session_timeout (57P05), query_canceled (57014: statement_timeout under load, or
        // an operator). Not database_dropped (57P04): that database is not coming back.
        "57" => sqlstate != "57P04",
        // transaction_rollback: serialization_failure and deadlock_detected are contention:
        // the same transaction succeeds when run again.
        "40" => matches!(sqlstate, "40001" | "40P01"),
        // lock_not_available (lock_timeout): contention too.
        "55" => sqlstate == "55P03",
        // read_only_sql_transaction: a write reached a standby, as during a failover before
        // the service's URL leads to the new primary.
        "25" => sqlstate == "25006",
        // Everything else (syntax, undefined objects, constraint and data exceptions, raised
        // exceptions, privileges, internal errors) is about the request or the schema.
        _ => false,
    }
}

/// A connection attempt answered with `sqlstate` may succeed later.
fn postgres_refuses_connections_now(sqlstate: &str) -> bool {
    sqlstate == "55000" || postgres_unavailable(sqlstate)
}

/// SQLite result codes (extended; the primary code is the low byte) that mean "not now".
fn sqlite_unavailable(code: i32) -> bool {
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const NOMEM: i32 = 7;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    const PROTOCOL: i32 = 15;
    // Another connection held the lock past the busy timeout (contention); the file cannot be
    // opened, read or written now (I/O, disk full, memory, file locking). Not: SQL errors,
    // constraints, read-only or corrupt files, which stay as they are.
    matches!(code & 0xff, BUSY | LOCKED | NOMEM | IOERR | FULL | CANTOPEN | PROTOCOL)
}

#[cfg(test)]
mod tests {
    use std::io;

    use sqlx::Connection;

    use super::*;

    fn io_error(kind: io::ErrorKind) -> sqlx::Error {
        sqlx::Error::Io(io::Error::from(kind))
    }

    #[test]
    fn unreachable_databases_are_unavailable_and_wrong_requests_are_not() {
        let unavailable = [
            io_error(io::ErrorKind::ConnectionRefused),
            io_error(io::ErrorKind::ConnectionReset),
            io_error(io::ErrorKind::UnexpectedEof),
            sqlx::Error::Tls("handshake failed".into()),
            sqlx::Error::Protocol("unexpected message".into()),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
            sqlx::migrate::MigrateError::Execute(sqlx::Error::PoolTimedOut).into(),
        ];
        for err in unavailable {
            let shown = err.to_string();
            assert!(StoreError::from(err).is_retryable(), "{shown}");
        }
        let failed = [
            sqlx::Error::Configuration("bad url".into()),
            sqlx::Error::InvalidArgument("bad argument".into()),
            sqlx::Error::RowNotFound,
            sqlx::Error::TypeNotFound { type_name: "vector".into() },
            sqlx::Error::ColumnIndexOutOfBounds { index: 3, len: 2 },
            sqlx::Error::ColumnNotFound("nope".into()),
            sqlx::Error::ColumnDecode { index: "seq".into(), source: "not an integer".into() },
            sqlx::Error::Encode("too long".into()),
            sqlx::Error::Decode("not utf-8".into()),
            sqlx::Error::InvalidSavePointStatement,
            sqlx::Error::BeginFailed,
            sqlx::migrate::MigrateError::VersionMismatch(1).into(),
            sqlx::migrate::MigrateError::Execute(sqlx::Error::RowNotFound).into(),
        ];
        for err in failed {
            let shown = err.to_string();
            assert!(matches!(StoreError::from(err), StoreError::Database(_)), "{shown}");
        }
        let migration = StoreError::from(sqlx::migrate::MigrateError::ExecuteMigration(
            io_error(io::ErrorKind::BrokenPipe),
            2,
        ));
        assert!(migration.is_retryable(), "{migration}");
    }

    #[test]
    fn postgres_outages_are_told_from_bad_requests() {
        for sqlstate in [
            "08000", "08001", "08003", "08006", "08P01", "53000", "53100", "53200", "53300", "57P01",
            "57P02", "57P03", "57P05", "57014", "58000", "58030", "40001", "40P01", "55P03", "25006",
        ] {
            assert!(postgres_unavailable(sqlstate), "{sqlstate}");
        }
        for sqlstate in [
            "23505", "23503", "23502", "42601", "42P01", "42703", "22P02", "P0001", "28P01", "3D000",
            "57P04", "40002", "XX000", "XX001", "58P01", "25P02", "",
        ] {
            assert!(!postgres_unavailable(sqlstate), "{sqlstate}");
        }
        // Refused connections: not accepting connections, starting up, too many clients.
        for sqlstate in ["55000", "57P03", "53300", "08006"] {
            assert!(postgres_refuses_connections_now(sqlstate), "{sqlstate}");
        }
        // Wrong credentials or database are not fixed by waiting.
        for sqlstate in ["28P01", "28000", "3D000"] {
            assert!(!postgres_refuses_connections_now(sqlstate), "{sqlstate}");
        }
        assert!(!postgres_unavailable("55000"), "in a query, a state the query did not expect");
    }

    #[test]
    fn sqlite_outages_are_told_from_bad_requests() {
        // SQLITE_BUSY, SQLITE_BUSY_SNAPSHOT, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_IOERR_READ,
        // SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOMEM, SQLITE_PROTOCOL.
        for code in [5, 517, 6, 10, 266, 13, 14, 7, 15] {
            assert!(sqlite_unavailable(code), "{code}");
        }
        // SQLITE_ERROR, SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_TRIGGER, SQLITE_READONLY,
        // SQLITE_CORRUPT, SQLITE_MISMATCH, SQLITE_NOTADB.
        for code in [1, 2067, 1811, 8, 11, 20, 26] {
            assert!(!sqlite_unavailable(code), "{code}");
        }
    }

    #[tokio::test]
    async fn errors_from_a_real_sqlite_database_are_classified() {
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let syntax = sqlx::query("SELEC 1").execute(&mut conn).await.unwrap_err();
        assert!(matches!(StoreError::from(syntax), StoreError::Database(_)));
        let decode = sqlx::query_scalar::<_, i64>("SELECT 'text'").fetch_one(&mut conn).await.unwrap_err();
        assert!(matches!(StoreError::from(decode), StoreError::Database(_)));
        let missing =
            sqlx::SqliteConnection::connect("sqlite:///nonexistent-dir/visage.db").await.unwrap_err();
        assert!(StoreError::from(missing).is_retryable(), "a database file that cannot be opened");
    }
}
