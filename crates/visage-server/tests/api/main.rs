//! The API suite: the real service on port 0, each test with its own data directory and
//! database, real models and real face images (LFW, NUAA). The harness is in `helpers`; the
//! tests are grouped by area.
//!
//! The database is the embedded SQLite file, or with `VISAGE_TEST_BACKEND=postgres` a fresh
//! PostgreSQL database per test on `VISAGE_TEST_POSTGRES_URL`'s server (default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped when the test ends.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use reqwest::multipart::{Form, Part};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Row};
use tokio::sync::oneshot;
use uuid::Uuid;
use visage_server::config::{DatabaseUrl, Secret};
use visage_server::inference::Pick;
use visage_server::{AppState, Application, Config, Profile};
use visage_store::crypto::{SealedTemplate, TemplateKey};
use visage_store::testing::TestDatabase;
use visage_store::{ApiKeyRecord, CollectionId, CollectionScope, Role, Template};
use visage_wire::api_key;

mod helpers;
use helpers::*;

mod access;
mod audit;
mod auth;
mod backup;
mod calibration;
mod consent;
mod console;
mod destruction;
mod errors;
mod keys;
mod liveness;
mod matching;
mod monitoring;
mod objects;
mod openapi;
mod reembed;
mod replicas;
mod resilience;
mod retention;
mod rotation;
mod subjects;
mod traces;

// Not `redis`: that would shadow the redis crate.
#[path = "redis.rs"]
mod shared_redis;
