//! The OpenAPI 3.1 document, generated from the handlers and DTOs, and the Swagger UI page
//! that the binary serves itself (vendored: no CDN).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::app::AppState;
use crate::error::ERROR_CODES;
use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "visage",
        description = "Self-hosted face verification and identification.\n\n\
            Authenticate with an API key (`visage keys create`), as `Authorization: Bearer <key>` or \
            `X-API-Key: <key>`. Images go as multipart/form-data file parts, a raw image/* body, or \
            base64 text in JSON.\n\nEvery error has the shape \
            `{\"error\": {\"code\", \"message\", \"request_id\", \"details\"?}}`; see the ErrorDetail schema \
            for the codes."
    ),
    paths(
        routes::live,
        routes::ready,
        routes::detect,
        routes::liveness,
        routes::verify,
        routes::identify,
        routes::create_collection,
        routes::list_collections,
        routes::create_subject,
        routes::list_subjects,
        routes::get_subject,
        routes::erase_subject,
        routes::enrol_faces,
        routes::list_faces,
        routes::delete_face,
        routes::list_audit,
        routes::feedback,
        routes::prometheus_metrics,
    ),
    components(schemas(crate::calibration::OperatingPoint, crate::config::LivenessMode)),
    modifiers(&Security, &ErrorCodes),
    tags(
        (name = "analysis", description = "Detection, quality and liveness"),
        (name = "matching", description = "1:1 verification and 1:N identification"),
        (name = "subjects", description = "Enrolment and erasure"),
        (name = "collections", description = "Separate galleries"),
        (name = "audit", description = "Who did what, when"),
        (name = "health", description = "Liveness and readiness probes (no key needed)"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// Lists every stable error code in the ErrorDetail schema.
struct ErrorCodes;

impl Modify for ErrorCodes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let codes = ERROR_CODES.join(", ");
        if let Some(info) = openapi.info.description.as_mut() {
            info.push_str(&format!("\n\nError codes: {codes}."));
        }
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `/docs` (Swagger UI) and `/openapi.json`.
pub fn docs() -> axum::Router<AppState> {
    SwaggerUi::new("/docs").url("/openapi.json", document()).into()
}
