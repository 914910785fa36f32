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
            for the codes.\n\nCreating a subject and enrolling faces take an optional `Idempotency-Key` header \
            (1-255 visible ASCII characters): a retry with the same key and the same request gets the first \
            2xx answer again, with `Idempotent-Replayed: true`, instead of creating or enrolling twice. The \
            same key with another request is 422 `idempotency_key_reused`, while the first still runs 409 \
            `idempotency_in_progress`; a failed request frees its key."
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
    components(schemas(visage_calibration::OperatingPoint, crate::config::LivenessMode)),
    modifiers(&Security, &ErrorCodes, &IdempotencyKey),
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

/// The `Idempotency-Key` request header and the `Idempotent-Replayed` response header on the
/// routes the idempotency middleware covers.
struct IdempotencyKey;

impl Modify for IdempotencyKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{HeaderBuilder, ObjectBuilder, RefOr, Required, Type};
        for path in crate::idempotency::routes() {
            let Some(operation) = openapi.paths.paths.get_mut(path).and_then(|item| item.post.as_mut())
            else {
                continue;
            };
            let key = ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some("makes a retry safe: the same key and request replay the first 2xx answer"))
                .schema(Some(
                    ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(255)),
                ))
                .build();
            operation.parameters.get_or_insert_with(Vec::new).push(RefOr::T(key));
            for (status, response) in operation.responses.responses.iter_mut() {
                if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
                    let replayed = HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .description(Some("`true` when the answer is a replay for an Idempotency-Key"))
                        .build();
                    response.headers.insert("Idempotent-Replayed".into(), replayed.into());
                }
            }
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
