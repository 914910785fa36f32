//! Several replicas on one database, as behind a load balancer: each keeps its own in-memory
//! index in step with the others' writes. Also the read replica setting and a start-up while
//! the database is still down.

use super::*;

/// Another replica of `app`: the same database and keys, its own index, data dir and port.
pub(crate) async fn replica_of(app: &TestApp) -> TestApp {
    let mut config = app.config.clone();
    if app.db.is_some() {
        // Only the embedded database lives in the data dir; PostgreSQL replicas share nothing else.
        config.storage.data_dir = app._dir.as_ref().unwrap().path().join("replica");
    }
    TestApp::start(config).await
}

/// Polls `check` until it holds; fails after `limit`. Returns how long it took.
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn identified(candidates: &[(String, f64)], external_id: &str) -> bool {
    candidates.iter().any(|(id, _)| id == external_id)
}

#[tokio::test]
async fn an_enrolment_on_one_replica_is_found_on_another_and_an_erasure_is_gone_from_both() {
    let first = TestApp::spawn().await;
    let second = replica_of(&first).await;
    // The first replica finds its own enrolment at once.
    let bob = first.enrol("bob", "Bob_Graham_0001").await;
    assert!(identified(&first.identify(lfw("Bob_Graham_0005")).await, "bob"));
    // The other one within its poll interval (1 s), or sooner when PostgreSQL notifies it. The
    // limit is generous for a loaded test machine; the HA script reports the real delay.
    let delay = within(Duration::from_secs(10), "enrolment seen by the other replica", || async {
        identified(&second.identify(lfw("Bob_Graham_0005")).await, "bob")
    })
    .await;
    eprintln!("enrolment reached the other replica after {delay:?}");

    expect(second.delete(&format!("/v1/subjects/{bob}"), &second.admin).await, StatusCode::NO_CONTENT).await;
    assert!(!identified(&second.identify(lfw("Bob_Graham_0005")).await, "bob"));
    within(Duration::from_secs(10), "erasure seen by the first replica", || async {
        !identified(&first.identify(lfw("Bob_Graham_0005")).await, "bob")
    })
    .await;
    // Both have applied the same change log, and index the same (now empty) gallery.
    within(Duration::from_secs(10), "equal index versions", || async {
        first.state.gallery.version() == second.state.gallery.version()
    })
    .await;
    let default = CollectionId::default_collection();
    assert_eq!(first.state.gallery.len(&default), 0);
    assert_eq!(second.state.gallery.len(&default), 0);
}

#[tokio::test]
async fn a_replica_started_later_loads_everything_and_follows_face_deletions() {
    let first = TestApp::spawn().await;
    let bob = first.enrol("bob", "Bob_Graham_0001").await;
    let second = replica_of(&first).await;
    assert!(identified(&second.identify(lfw("Bob_Graham_0005")).await, "bob"));
    // A second face, then the first one deleted on the other replica.
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005")));
    let faces = expect(
        first.post_form(&format!("/v1/subjects/{bob}/faces"), &first.admin, form).await,
        StatusCode::CREATED,
    )
    .await;
    let new_face = faces["faces"][0]["id"].as_str().unwrap().parse::<Uuid>().unwrap();
    let default = CollectionId::default_collection();
    within(Duration::from_secs(10), "second face indexed", || async {
        second.state.gallery.len(&default) == 2
    })
    .await;
    expect(
        second.delete(&format!("/v1/subjects/{bob}/faces/{new_face}"), &second.admin).await,
        StatusCode::NO_CONTENT,
    )
    .await;
    within(Duration::from_secs(10), "face deletion seen", || async {
        !first.state.gallery.contains(new_face) && first.state.gallery.len(&default) == 1
    })
    .await;
}

/// PostgreSQL only: listings go to the read replica, and to the primary when it is down.
#[tokio::test]
async fn listings_use_the_read_replica_and_fall_back_to_the_primary() {
    if !on_postgres() {
        eprintln!("skipped: needs VISAGE_TEST_BACKEND=postgres");
        return;
    }
    // The same database stands in for a streaming replica (the HA script runs a real one).
    let app = TestApp::spawn_with(|c| c.database.read_url = c.database.url.clone()).await;
    let bob = app.enrol("bob", "Bob_Graham_0001").await;
    // Reads through `read_url` come from connections named visage-read: the listing must be
    // the last thing one of them ran (were read_url ignored, none would exist). The gallery's
    // background reads use them too, so a listing they overtook is asked for again.
    let mut conn = sqlx::PgConnection::connect(&app.db.as_ref().unwrap().url()).await.unwrap();
    let mut reader_queries: Vec<String> = Vec::new();
    for _ in 0..10 {
        let page = expect(app.get("/v1/subjects", &app.admin).await, StatusCode::OK).await;
        assert_eq!(page["items"][0]["id"], bob.to_string(), "{page}");
        reader_queries = sqlx::query_scalar(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'visage-read'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        if reader_queries.iter().any(|q| q.contains("FROM subjects")) {
            break;
        }
    }
    assert!(
        reader_queries.iter().any(|q| q.contains("FROM subjects")),
        "the listing did not go to the read connection: {reader_queries:?}"
    );

    // A replica nobody listens on: the primary answers instead.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let down = TestApp::spawn_with(|c| {
        c.database.read_url = Some(DatabaseUrl::new(format!("postgres://postgres@127.0.0.1:{dead}/none")));
    })
    .await;
    let bob = down.enrol("bob", "Bob_Graham_0001").await;
    let page = expect(down.get("/v1/subjects", &down.admin).await, StatusCode::OK).await;
    assert_eq!(page["items"][0]["id"], bob.to_string(), "{page}");
    expect(down.get("/v1/audit", &down.admin).await, StatusCode::OK).await;
}

/// PostgreSQL only: replicas often start before their database; start-up waits for it.
#[tokio::test]
async fn start_up_waits_for_a_database_that_is_not_accepting_connections_yet() {
    if !on_postgres() {
        eprintln!("skipped: needs VISAGE_TEST_BACKEND=postgres");
        return;
    }
    let db = TestDatabase::create().await;
    let name = db.name.clone();
    db.admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.database.url = Some(DatabaseUrl::new(db.url()));
    config.database.startup_timeout_seconds = 60;
    let starting = tokio::spawn(TestApp::start(config.clone()));
    // Let it try (and fail) a few times before the database opens.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!starting.is_finished(), "started although the database refused connections");
    db.admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
    let mut app = starting.await.unwrap();
    let ready = app.client.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(expect(ready, StatusCode::OK).await["checks"]["storage"], "ok");
    app.shut_down().await;

    // A database that never comes: start-up gives up with the reason.
    db.admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
    config.database.startup_timeout_seconds = 1;
    let err = Application::build(config).await.err().expect("no database, no service");
    assert!(format!("{err:#}").contains("cannot open the PostgreSQL database"), "{err:#}");
    db.admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
}
