//! The booking service's OpenAPI document, generated from the handlers and wire types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{availability, bookings, health};

#[derive(OpenApi)]
#[openapi(
    info(title = "Ticketing booking service", description = "Token-gated bookings and live availability."),
    paths(health::ready, bookings::create, bookings::show, bookings::cancel, availability::show),
    components(schemas(ticketing::envelope::ErrorEnvelope, ticketing::envelope::ErrorDetail)),
    modifiers(&BearerAuth)
)]
pub struct BookingApi;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            for name in ["entry_token", "access_code"] {
                components.add_security_scheme(
                    name,
                    SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
                );
            }
        }
    }
}

pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(BookingApi::openapi())
}
