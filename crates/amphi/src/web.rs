//! HTTP: the embedded web client, the small JSON API, and the upgrade to
//! the signalling WebSocket.

use std::time::Duration;

use amphi_auth::Claims;
use amphi_protocol::{RTC_PATH, Role};
use axum::Json;
use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::signalling::{self, MAX_FRAME_BYTES, WS_READ_BUFFER};
use crate::state::AppState;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// Lifetime of tokens minted by the development landing page.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(8 * 3600);

pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route(RTC_PATH, get(rtc))
        .route("/api/info", get(info));
    if state.dev {
        router = router.route("/api/dev/token", post(dev_token));
    }
    let health = crate::metrics::health_routes(state.ops.clone());
    router
        .fallback(get(static_file))
        .with_state(state)
        .merge(health)
}

async fn rtc(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| signalling::session(socket, state))
}

#[derive(Serialize)]
struct Info {
    version: &'static str,
    dev: bool,
}

async fn info(State(state): State<AppState>) -> Json<Info> {
    Json(Info {
        version: env!("CARGO_PKG_VERSION"),
        dev: state.dev,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevTokenRequest {
    room: String,
    name: String,
    #[serde(default)]
    role: Option<Role>,
}

#[derive(Serialize)]
struct DevTokenResponse {
    token: String,
    identity: String,
}

#[derive(Serialize)]
struct ApiError {
    error: String,
}

async fn dev_token(
    State(state): State<AppState>,
    body: Result<Json<DevTokenRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(req)) = body else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"room\": \"…\", \"name\": \"…\"}",
        );
    };
    let name = req.name.trim();
    if name.is_empty() {
        return api_error(StatusCode::BAD_REQUEST, "a display name is needed");
    }
    // A fresh identity per visit: two tabs with the same name are two people.
    let identity = format!("dev-{:016x}", rand::random::<u64>());
    let mut claims = Claims::new(&req.room, &identity, DEV_TOKEN_TTL, amphi_auth::now_unix());
    claims.name = Some(name.to_owned());
    claims.role = Some(req.role.unwrap_or(Role::Teacher));
    match state.keys.mint(None, &claims) {
        Ok(token) => Json(DevTokenResponse { token, identity }).into_response(),
        Err(e) => api_error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

fn api_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(ApiError {
            error: message.to_owned(),
        }),
    )
        .into_response()
}

async fn static_file(uri: Uri) -> Response {
    let path = uri.path();
    // The room page is the app's own route; the browser keeps the fragment.
    let lookup = if path == "/" || path.starts_with("/room/") {
        "/index.html"
    } else {
        path
    };
    let Some((_, body)) = assets::ASSETS.iter().find(|(p, _)| *p == lookup) else {
        if lookup == "/index.html" {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "This Amphi binary was built without its web client. Build it with \
                 `npm --prefix web-client ci && npm --prefix web-client run build`, \
                 then rebuild amphi.\n",
            )
                .into_response();
        }
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let mut response = (*body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(lookup)),
    );
    // Hashed asset names never change content; the page itself must be fresh.
    let cache = if lookup.starts_with("/assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    secure_headers(headers);
    response
}

/// Nothing but this origin, and nothing leaks in Referer headers.
fn secure_headers(headers: &mut axum::http::HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; \
             media-src 'self' blob: mediastream:; style-src 'self'; script-src 'self'; \
             object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(self), microphone=(self), display-capture=(self)"),
    );
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "webmanifest" => "application/json",
        "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}
