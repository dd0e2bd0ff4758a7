//! The gateway's OpenAPI document, generated from the handlers and wire types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, catalog, health, live, queue, queue_stream};

#[derive(OpenApi)]
#[openapi(
    info(title = "Ticketing gateway", description = "Catalog, waiting room and admin API."),
    paths(
        health::ready,
        catalog::list,
        catalog::show,
        catalog::frontend_config,
        queue::join,
        queue::poll,
        queue::leave,
        queue::set_wish,
        queue::alive,
        queue_stream::events,
        admin::create_event,
        admin::show_waiting_room,
        admin::change_waiting_room,
        live::show,
    ),
    components(schemas(ticketing::envelope::ErrorEnvelope, ticketing::envelope::ErrorDetail)),
    modifiers(&AdminAuth)
)]
pub struct GatewayApi;

struct AdminAuth;

impl Modify for AdminAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "admin",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(GatewayApi::openapi())
}
