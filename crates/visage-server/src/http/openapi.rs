//! The OpenAPI 3.1 document, generated from the handlers and DTOs, and the Swagger UI page
//! that the binary serves itself (vendored: no CDN).

use serde_json::json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;
use visage_store::{AuditAction, AuditOutcome};

use super::handlers::{
    analysis, audit, collections, destruction, health, keys, matching, metrics, overview, review, subjects,
};
use super::middleware::idempotency;
use crate::service::ErrorCode;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "visage",
        description = "Self-hosted face verification and identification.\n\n\
            Authenticate with an API key (`visage keys create`), as `Authorization: Bearer <key>` or \
            `X-API-Key: <key>`. Images go as multipart/form-data file parts, a raw image/* body, or \
            base64 text in JSON.\n\nEvery error has the shape \
            `{\"error\": {\"code\", \"message\", \"request_id\", \"details\"?}}`; the ErrorCode schema \
            lists the codes.\n\nCreating a subject and enrolling faces take an optional `Idempotency-Key` header \
            (1-255 visible ASCII characters): a retry with the same key and the same request gets the first \
            2xx answer again, with `Idempotent-Replayed: true`, instead of creating or enrolling twice. The \
            same key with another request is 422 `idempotency_key_reused`, while the first still runs 409 \
            `idempotency_in_progress`; a failed request frees its key."
    ),
    paths(
        health::live,
        health::ready,
        health::read,
        analysis::detect,
        analysis::liveness,
        matching::verify,
        matching::identify,
        collections::create_collection,
        collections::list_collections,
        subjects::create_subject,
        subjects::list_subjects,
        subjects::get_subject,
        subjects::erase_subject,
        subjects::enrol_faces,
        subjects::list_faces,
        subjects::delete_face,
        subjects::export_subject,
        subjects::withdraw_consent,
        audit::list_audit,
        destruction::list_destruction_records,
        keys::create_key,
        keys::list_keys,
        keys::own_key,
        keys::revoke_key,
        matching::feedback,
        review::list_decisions,
        review::probe_image,
        overview::overview,
        metrics::prometheus_metrics,
    ),
    components(schemas(visage_calibration::OperatingPoint, crate::config::LivenessMode)),
    modifiers(&Security, &ErrorCodes, &IdempotencyKey),
    tags(
        (name = "analysis", description = "Detection, quality and liveness"),
        (name = "matching", description = "1:1 verification and 1:N identification"),
        (name = "subjects", description = "Enrolment and erasure"),
        (name = "collections", description = "Separate galleries"),
        (name = "review", description = "Past decisions for a reviewer to label (ground truth for FAR and FRR)"),
        (name = "audit", description = "Who did what, when"),
        (name = "keys", description = "API keys (admin)"),
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

/// Lists every stable error code in the description too (the ErrorCode schema is the list).
struct ErrorCodes;

impl Modify for ErrorCodes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        if let Some(info) = openapi.info.description.as_mut() {
            info.push_str(&format!("\n\nError codes: {}.", codes.join(", ")));
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
        for path in idempotency::ROUTES {
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
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(255))
                        .pattern(Some("^[!-~]+$")),
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

/// The document as this service serves it: what the code declares, plus what only the running
/// service knows or what the derive cannot say:
/// - `far_target` may only be one of the FAR targets this service has calibrated thresholds
///   for (`calibrated`), so the document lists them;
/// - a verification names exactly one of `subject_id` and `reference_image`;
/// - the audit log's `action` and `outcome` filters take the names the store knows.
pub fn document(calibrated: &[f64]) -> serde_json::Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    let schemas = &mut document["components"]["schemas"];
    for request in ["VerifyRequest", "IdentifyRequest"] {
        schemas[request]["properties"]["far_target"]["enum"] = json!(calibrated);
    }
    schemas["VerifyRequest"]["oneOf"] =
        json!([{ "required": ["subject_id"] }, { "required": ["reference_image"] }]);
    let names = |all: Vec<&'static str>| json!(all);
    let filters = [
        ("action", names(AuditAction::ALL.iter().map(|a| a.as_str()).collect())),
        ("outcome", names(AuditOutcome::ALL.iter().map(|o| o.as_str()).collect())),
    ];
    if let Some(parameters) = document["paths"]["/v1/audit"]["get"]["parameters"].as_array_mut() {
        for parameter in parameters {
            if let Some((_, values)) = filters.iter().find(|(name, _)| parameter["name"] == *name) {
                parameter["schema"]["enum"] = values.clone();
            }
        }
    }
    document
}

/// `/docs` (Swagger UI) and `/openapi.json`.
pub fn docs(calibrated: &[f64]) -> axum::Router<AppState> {
    SwaggerUi::new("/docs").external_url_unchecked("/openapi.json", document(calibrated)).into()
}
