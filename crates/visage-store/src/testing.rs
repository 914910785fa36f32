//! Throwaway PostgreSQL databases for tests (feature `test-support`): each test gets a
//! database of its own on the server at `VISAGE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped with its connections at the end.

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

pub fn admin_url() -> String {
    std::env::var("VISAGE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A PostgreSQL database of one test, dropped (connections and all) when it goes out of
/// scope, also when the test panics.
pub struct TestDatabase {
    pub name: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let name = format!("visage_test_{}", Uuid::new_v4().simple());
        Self::admin_sql(format!("CREATE DATABASE {name}")).await;
        Self { name }
    }

    pub fn url(&self) -> String {
        let admin = admin_url();
        format!("{}/{}", admin.rsplit_once('/').expect("a database URL").0, self.name)
    }

    /// Runs statements as the administrator, outside any pool of the code under test.
    pub async fn admin(&self, sql: String) {
        Self::admin_sql(sql).await;
    }

    async fn admin_sql(sql: String) {
        let mut admin = PgConnection::connect(&admin_url()).await.expect("PostgreSQL is reachable");
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut admin).await.unwrap();
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // A runtime of its own: Drop cannot await, and the test's runtime may be shutting down.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url()).await?;
                sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut admin).await.map(drop)
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}
