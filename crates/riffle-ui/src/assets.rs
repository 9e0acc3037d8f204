//! The page: HTML, CSS and JavaScript written by hand, compiled into the binary.
//!
//! There is no build step and nothing to install: `include_str!` puts the files of
//! `assets/` into the executable, and these routes serve them. The page is a small
//! single-page app that reads only the JSON API (see [`crate::api`]) and builds every
//! element with `textContent` and `createElementNS`, so no stored text is ever parsed
//! as markup.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::Dashboard;

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/assets/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/app.css"),
    },
    Asset {
        path: "/assets/dom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/dom.js"),
    },
    Asset {
        path: "/assets/layout.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/layout.js"),
    },
    Asset {
        path: "/assets/graph.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/graph.js"),
    },
    Asset {
        path: "/assets/chart.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/chart.js"),
    },
    Asset {
        path: "/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/app.js"),
    },
];

const INDEX: &str = include_str!("../assets/index.html");
const FAVICON: &str = include_str!("../assets/favicon.svg");

/// The page's routes: `/`, `/favicon.svg` and `/assets/*`.
pub fn routes() -> Router<Dashboard> {
    let mut router = Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    INDEX,
                )
            }),
        )
        .route(
            "/favicon.svg",
            get(|| async { ([(header::CONTENT_TYPE, "image/svg+xml")], FAVICON) }),
        );
    for asset in ASSETS {
        let (content_type, body) = (asset.content_type, asset.body);
        router = router.route(
            asset.path,
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, content_type),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    body,
                )
                    .into_response()
            }),
        );
    }
    router
}
