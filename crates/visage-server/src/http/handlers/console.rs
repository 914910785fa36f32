//! `/console`: the operators' web console, its files compiled into the binary (nothing is
//! fetched at run time), served with a Content-Security-Policy that allows no inline script,
//! no other origin and no framing.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::http::error::ApiError;
use crate::state::AppState;

/// The console's own script and styles only; camera frames and captured images as blob: URLs;
/// API calls to this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob: data:; media-src 'self' blob: mediastream:; connect-src 'self'; \
     font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

macro_rules! assets {
    ($($path:literal => $mime:literal),* $(,)?) => {
        /// Every file of `crates/visage-server/console/`, with its media type.
        pub const ASSETS: &[(&str, &str, &[u8])] = &[
            $(($path, $mime, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $path)))),*
        ];
    };
}

assets! {
    "index.html" => "text/html; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "js/app.js" => "text/javascript; charset=utf-8",
    "js/api.js" => "text/javascript; charset=utf-8",
    "js/dom.js" => "text/javascript; charset=utf-8",
    "js/i18n.js" => "text/javascript; charset=utf-8",
    "js/camera.js" => "text/javascript; charset=utf-8",
    "js/faces.js" => "text/javascript; charset=utf-8",
    "js/pages/signin.js" => "text/javascript; charset=utf-8",
    "js/pages/overview.js" => "text/javascript; charset=utf-8",
    "js/pages/subjects.js" => "text/javascript; charset=utf-8",
    "js/pages/subject.js" => "text/javascript; charset=utf-8",
    "js/pages/enrol.js" => "text/javascript; charset=utf-8",
    "js/pages/match.js" => "text/javascript; charset=utf-8",
    "js/pages/review.js" => "text/javascript; charset=utf-8",
    "js/pages/keys.js" => "text/javascript; charset=utf-8",
    "js/pages/audit.js" => "text/javascript; charset=utf-8",
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .route("/console/", get(|| async { asset("index.html") }))
        .route("/console/{*path}", get(|Path(path): Path<String>| async move { asset(&path) }))
}

fn asset(path: &str) -> Response {
    let Some((_, mime, body)) = ASSETS.iter().find(|(name, _, _)| *name == path) else {
        return ApiError::NotFound.into_response();
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert("permissions-policy", HeaderValue::from_static("camera=(self), microphone=()"));
    // Revalidate every time: a new binary serves new files under the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    #[test]
    fn every_file_of_the_console_folder_is_served_and_nothing_else() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut on_disk = Vec::new();
        let mut folders = vec![root.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    on_disk.push(path.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/"));
                }
            }
        }
        on_disk.sort();
        let mut served: Vec<String> = ASSETS.iter().map(|(name, _, _)| (*name).to_owned()).collect();
        served.sort();
        assert_eq!(on_disk, served);
    }
}
