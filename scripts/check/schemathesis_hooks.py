"""The schemathesis check that takes the place of `positive_data_acceptance` in
scripts/check/schemathesis.sh (loaded through schemathesis.toml beside it).

The built-in check asks that every schema-valid request be accepted. It runs unchanged here,
except in two cases where the request is not valid in fact although schemathesis takes it to
be, and the document cannot say so:

- Image content. OpenAPI can say that an image is bytes or base64 text, not that the bytes
  are a photograph with one good face, so every image schemathesis generates is noise. On the
  operations that take an image, a refusal for the image's content (400 image_decode_failed,
  422 no_face_detected, ...) is allowed; any other refusal (400 invalid_request,
  image_missing: the server refusing what the document allows) still fails. So does one
  more: in a JSON body an image is base64 text, which the one schema for both encodings
  (file bytes in multipart) cannot say, so 400 "is not valid base64" counts as image content.
- A reused Idempotency-Key. Schemathesis draws header values from a small pool, so it sends
  the same key with different requests, which the service refuses by design (422
  idempotency_key_reused; 409 idempotency_in_progress while the first runs). The document
  describes the header; the protocol over several requests is beyond what it can say.
- Verify's claim. The document says a verification names exactly one of `subject_id` and
  `reference_image` (a `oneOf` on VerifyRequest), which schemathesis does not apply when it
  builds a multipart form; a form with both or neither is not schema-valid, so there is
  nothing to accept.
- A consent that has already ended. A consent record's `expires_at` must lie in the future
  (an ended consent is no ground to enrol), which a date-time schema cannot say; 400
  invalid_request naming `consent.expires_at` is that refusal.
- A link that carried nothing. The stateful phase feeds values from one answer into the next
  request; when the value is null (an audit event without a subject) it sends the text "None"
  as a UUID path parameter, which the parameter's own schema refuses. Such a request is not
  schema-valid, so there is nothing to accept.
"""

import os

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance as builtin_positive_data_acceptance

IMAGE_OPERATIONS = {
    "POST /v1/detect",
    "POST /v1/liveness",
    "POST /v1/verify",
    "POST /v1/identify",
    "POST /v1/subjects/{id}/faces",
}
# Refusals of a reused Idempotency-Key (see above), on the operations that take the header.
IDEMPOTENCY_CODES = {"idempotency_key_reused", "idempotency_in_progress"}
# Refusals about what the image holds, which the document cannot describe.
IMAGE_CONTENT_CODES = {
    "image_decode_failed",
    "unsupported_media_type",
    "image_too_large",
    "no_face_detected",
    "multiple_faces",
    "low_quality",
    "spoof_detected",
    "liveness_inconclusive",
}


def _error_code(response):
    try:
        body = response.json()
    except Exception:  # noqa: BLE001 - not JSON: no code
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def _not_base64(case, response):
    """An image field of a JSON body that is not base64: one schema describes the image for
    both encodings (file bytes in multipart, base64 text in JSON) and cannot say both."""
    if case.media_type != "application/json" or _error_code(response) != "invalid_request":
        return False
    try:
        message = response.json()["error"]["message"]
    except Exception:  # noqa: BLE001 - no message: not this refusal
        return False
    return "is not valid base64" in message


def _consent_ended(case, response):
    """A subject whose consent record ends in the past: refused, and rightly."""
    if case.operation.label != "POST /v1/subjects" or _error_code(response) != "invalid_request":
        return False
    try:
        return "consent.expires_at" in response.json()["error"]["message"]
    except Exception:  # noqa: BLE001 - no message: not this refusal
        return False


def _path_parameters_invalid(case):
    values = case.path_parameters or {}
    return any(
        parameter.name in values and not parameter.is_valid(values[parameter.name])
        for parameter in case.operation.path_parameters
    )


def _verify_claim_invalid(case):
    if case.operation.label != "POST /v1/verify" or not isinstance(case.body, dict):
        return False
    named = [field for field in ("subject_id", "reference_image") if field in case.body]
    return len(named) != 1


@schemathesis.check
def positive_data_acceptance_but_image_content(ctx, response, case):
    """Schema-valid data is accepted, or refused only for the content of its image."""
    if _path_parameters_invalid(case) or _verify_claim_invalid(case) or _consent_ended(case, response):
        return None
    if (
        case.headers
        and any(name.lower() == "idempotency-key" for name in case.headers)
        and _error_code(response) in IDEMPOTENCY_CODES
    ):
        return None
    if (
        case.operation.label in IMAGE_OPERATIONS
        and 400 <= response.status_code < 500
        and (_error_code(response) in IMAGE_CONTENT_CODES or _not_base64(case, response))
    ):
        return None
    return builtin_positive_data_acceptance(ctx, response, case)


# The run's own key (its public id, from the script). The stateful phase feeds ids from one
# answer into the next request, so it finds `GET /v1/keys/me` -> `DELETE /v1/keys/{id}` and
# revokes the key it runs with; every request after that is 401, and the operations it had not
# reached yet go untested. Revoking a key is tested by the API suite; here it aims elsewhere.
OWN_KEY_ID = os.environ.get("SCHEMATHESIS_OWN_KEY_ID")


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if (
        OWN_KEY_ID
        and case.operation.label == "DELETE /v1/keys/{id}"
        and (case.path_parameters or {}).get("id") == OWN_KEY_ID
    ):
        case.path_parameters["id"] = "0" * len(OWN_KEY_ID)
