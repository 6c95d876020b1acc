//! The node explorer: a read-only web page every node serves at `/` on its API address. It is
//! three embedded files (no CDN, no build step) whose script reads the API's read endpoints
//! and refreshes every two seconds. Everything it shows comes from the network, so the script
//! only ever sets text (never HTML), and the content security policy allows nothing but this
//! node's own script, style and API.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("explorer/index.html");
const SCRIPT: &str = include_str!("explorer/explorer.js");
const STYLE: &str = include_str!("explorer/explorer.css");

/// Scripts, styles and requests only from this origin; no frames, forms, plugins or inline code.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// `GET /`: the explorer's page.
pub async fn page() -> impl IntoResponse {
    asset("text/html; charset=utf-8", PAGE)
}

/// `GET /explorer.js`: its script.
pub async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /explorer.css`: its style.
pub async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Network strings reach the page only as text: the script uses no HTML or code sink.
    #[test]
    fn the_script_never_turns_strings_into_html_or_code() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setAttribute(\"on",
        ] {
            assert!(!SCRIPT.contains(sink), "explorer.js uses {sink}");
        }
        assert!(!PAGE.contains("<script>"), "no inline script in the page");
        assert!(!PAGE.contains("style="), "no inline style in the page");
        assert!(
            !PAGE.contains("http://") && !PAGE.contains("https://"),
            "no other origin"
        );
    }

    #[tokio::test]
    async fn every_asset_is_served_under_the_content_security_policy() {
        for response in [
            page().await.into_response(),
            script().await.into_response(),
            style().await.into_response(),
        ] {
            let headers = response.headers();
            assert_eq!(
                headers
                    .get(header::CONTENT_SECURITY_POLICY)
                    .and_then(|v| v.to_str().ok()),
                Some(CONTENT_SECURITY_POLICY)
            );
            assert_eq!(
                headers
                    .get(header::X_CONTENT_TYPE_OPTIONS)
                    .and_then(|v| v.to_str().ok()),
                Some("nosniff")
            );
        }
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }
}
