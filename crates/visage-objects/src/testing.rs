//! S3 buckets for tests (feature `test-support`): each test creates a bucket of its own on the
//! S3 server at `VISAGE_TEST_S3_ENDPOINT` (default `http://127.0.0.1:9000`, the moto server
//! `scripts/services/s3.sh` starts), emptied and removed when it goes out of scope. The bucket is
//! read here with a client of its own, independent of the code under test.

use std::time::Duration;

use futures::TryStreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore as _, ObjectStoreExt as _};
use uuid::Uuid;

use crate::S3Options;

/// moto takes any credentials; these are only there to sign with.
const ACCESS_KEY_ID: &str = "visage-test";
const SECRET_ACCESS_KEY: &str = "visage-test-secret";

pub fn endpoint() -> String {
    std::env::var("VISAGE_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".to_owned())
}

pub struct TestBucket {
    pub name: String,
}

impl TestBucket {
    /// Creates a uniquely named bucket.
    pub async fn create() -> Self {
        let name = format!("visage-test-{}", Uuid::new_v4().simple());
        let response = reqwest::Client::new()
            .put(format!("{}/{name}", endpoint()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("no S3 server at {} (scripts/services/s3.sh): {e}", endpoint()));
        assert!(response.status().is_success(), "creating bucket {name}: {}", response.status());
        Self { name }
    }

    /// Options for the code under test.
    pub fn options(&self) -> S3Options {
        Self::options_for(&self.name)
    }

    /// Options for a bucket of this name on the test server (which may not exist).
    pub fn options_for(bucket: &str) -> S3Options {
        S3Options {
            endpoint: Some(endpoint()),
            bucket: bucket.to_owned(),
            region: "us-east-1".into(),
            access_key_id: Some(ACCESS_KEY_ID.into()),
            secret_access_key: Some(SECRET_ACCESS_KEY.into()),
            timeout: Duration::from_secs(10),
        }
    }

    fn client(&self) -> AmazonS3 {
        client_for(&self.name)
    }

    /// Every object in the bucket: name and bytes.
    pub async fn objects(&self) -> Vec<(String, Vec<u8>)> {
        let client = self.client();
        let listed: Vec<_> = client.list(None).try_collect().await.expect("listing the test bucket");
        let mut objects = Vec::new();
        for meta in listed {
            let bytes = client.get(&meta.location).await.unwrap().bytes().await.unwrap();
            objects.push((meta.location.to_string(), bytes.to_vec()));
        }
        objects.sort();
        objects
    }

    /// Puts an object directly, bypassing the code under test.
    pub async fn put_raw(&self, name: &str, bytes: Vec<u8>) {
        self.client().put(&Path::from(name), bytes.into()).await.expect("writing to the test bucket");
    }
}

fn client_for(bucket: &str) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(endpoint())
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY_ID)
        .with_secret_access_key(SECRET_ACCESS_KEY)
        .build()
        .expect("a test S3 client")
}

impl Drop for TestBucket {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A runtime of its own: Drop cannot await, and the test's runtime may be shutting down.
        let emptied = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let client = client_for(&name);
                let listed: Vec<_> = client.list(None).try_collect().await.map_err(|e| e.to_string())?;
                for meta in listed {
                    client.delete(&meta.location).await.map_err(|e| e.to_string())?;
                }
                let response = reqwest::Client::new()
                    .delete(format!("{}/{name}", endpoint()))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if response.status().is_success() { Ok(()) } else { Err(response.status().to_string()) }
            })
        })
        .join();
        if !matches!(emptied, Ok(Ok(()))) {
            eprintln!("could not remove the test bucket {}", self.name);
        }
    }
}
