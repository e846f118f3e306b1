//! The pages a person reaches from an email: the activation link answers a browser with a
//! small HTML page (or a redirect to the front end), and the reset link opens a form that
//! posts the new password. Plain HTML and CSS, no scripts, no external assets.

use axum::body::Bytes;
use axum::{
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use tonic::Status;

use super::{dispatch::Rpc, error::http_status};
use crate::{
    domain::{PASSWORD_MAX_CHARS as MAX_CHARS, PASSWORD_MIN_CHARS as MIN_CHARS},
    text::{escape_html as escape, percent_encode},
};

/// Where pages send people instead, when a front end handles these flows.
#[derive(Debug, Clone, Default)]
pub struct PageRedirects {
    /// `ACTIVATION_REDIRECT_URL`: receives `?status=success` or `?status=error&reason=...`.
    pub activation: Option<String>,
    /// `PASSWORD_RESET_URL`: receives `?uidb64=...&token=...`.
    pub password_reset: Option<String>,
    /// `EMAIL_SIGN_IN_REDIRECT_URL`: receives `#access=...&refresh=...`, `#mfa_token=...` or
    /// `#error=REASON`.
    pub email_sign_in: Option<String>,
}

/// Whether the client would rather read HTML than JSON (a browser following a link or posting a form).
#[must_use]
pub fn wants_html(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    content_type.starts_with("application/x-www-form-urlencoded")
        || (accept.contains("text/html") && !accept.starts_with("application/json"))
}

/// Whether the client names JSON among what it accepts (`Accept: application/json`), as the
/// seed's API clients do. Mail scanners fetching links send `*/*` or HTML types: for them an
/// emailed link must change nothing.
#[must_use]
pub fn asks_for_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let named = parts
                .next()
                .is_some_and(|media| media.eq_ignore_ascii_case("application/json"));
            let refused = parts.any(|parameter| {
                parameter
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            named && !refused
        })
}

/// The page for the outcome of an RPC a person triggers from a browser, if it has one.
#[must_use]
pub fn outcome_page(
    rpc: Rpc,
    outcome: &Result<Bytes, Status>,
    redirects: &PageRedirects,
    params: &[(String, String)],
) -> Option<Response> {
    match rpc {
        Rpc::Activate => Some(activation_page(outcome, redirects)),
        Rpc::PasswordResetConfirm => Some(reset_outcome_page(outcome, params)),
        _ => None,
    }
}

fn activation_page(outcome: &Result<Bytes, Status>, redirects: &PageRedirects) -> Response {
    if let Some(url) = &redirects.activation {
        let query = match outcome {
            Ok(_) => "status=success".to_owned(),
            Err(status) => format!("status=error&reason={}", reason(status)),
        };
        return Redirect::to(&with_query(url, &query)).into_response();
    }
    match outcome {
        Ok(_) => page(
            StatusCode::OK,
            "Account activated",
            "<p class=\"ok\">Your email address is verified and your account is active.</p>\
             <p>You can close this page and sign in.</p>",
        ),
        Err(status) => page(
            http_status(status.code()),
            "Activation failed",
            &format!(
                "<p class=\"error\" role=\"alert\">{}</p><p>Request a new activation email from the app and try again.</p>",
                escape(status.message())
            ),
        ),
    }
}

/// What any GET of the emailed activation link sees unless it asks for JSON: a button that
/// confirms by POST. Mail scanners fetch links, so opening one changes nothing.
#[must_use]
pub fn activation_confirm_page(uidb64: &str, token: &str) -> Response {
    page(
        StatusCode::OK,
        "Activate your account",
        &format!(
            "<p>Confirm that this email address is yours to activate your account.</p>\
             <form method=\"post\" action=\"/accounts/api/activate/{uid}/{token}/\">\
             <button type=\"submit\">Activate my account</button></form>",
            uid = escape(uidb64),
            token = escape(token),
        ),
    )
}

/// What any GET of an emailed sign-in link sees unless it asks for JSON: a button that signs
/// in by POST. Mail scanners fetch links, so opening one spends nothing.
#[must_use]
pub fn email_sign_in_confirm_page(token: &str) -> Response {
    page(
        StatusCode::OK,
        "Sign in",
        &format!(
            "<p>Continue to sign in with the link from your email.</p>\
             <form method=\"post\" action=\"/accounts/email-sign-in/{token}/\">\
             <button type=\"submit\">Sign in</button></form>",
            token = escape(token),
        ),
    )
}

/// What a browser that confirmed an emailed sign-in link sees: the front end, handed the
/// session (or the second-factor challenge) in the URL's fragment, which browsers never send
/// to a server; or, without one configured, a page with the outcome.
#[must_use]
pub fn email_sign_in_outcome_page(
    outcome: &Result<Bytes, Status>,
    redirects: &PageRedirects,
) -> Response {
    match (outcome, &redirects.email_sign_in) {
        (Ok(reply), Some(url)) => {
            let answer: serde_json::Value = serde_json::from_slice(reply).unwrap_or_default();
            let text = |value: &serde_json::Value| percent_encode(value.as_str().unwrap_or(""));
            let fragment = match answer.get("mfa_required") {
                Some(challenge) if challenge.is_object() => {
                    format!("mfa_token={}", text(&challenge["mfa_token"]))
                }
                _ => format!(
                    "access={}&refresh={}",
                    text(&answer["access"]),
                    text(&answer["refresh"])
                ),
            };
            Redirect::to(&format!("{url}#{fragment}")).into_response()
        }
        (Err(status), Some(url)) => {
            Redirect::to(&format!("{url}#error={}", reason(status))).into_response()
        }
        (Ok(_), None) => page(
            StatusCode::OK,
            "Signed in",
            "<p class=\"ok\">You are signed in.</p><p>You can close this page and return to the app.</p>",
        ),
        (Err(status), None) => page(
            http_status(status.code()),
            "Sign-in failed",
            &format!(
                "<p class=\"error\" role=\"alert\">{}</p><p>Ask the app for a new sign-in email and try again.</p>",
                escape(status.message())
            ),
        ),
    }
}

/// The answer to `HEAD` on an emailed link: the page's headers, and no change.
#[must_use]
pub fn link_head() -> Response {
    page(StatusCode::OK, "", "")
}

/// The form the emailed reset link opens, or a redirect to the front end that handles it.
#[must_use]
pub fn reset_form_page(uidb64: &str, token: &str, redirects: &PageRedirects) -> Response {
    if let Some(url) = &redirects.password_reset {
        let query = format!(
            "uidb64={}&token={}",
            percent_encode(uidb64),
            percent_encode(token)
        );
        return Redirect::to(&with_query(url, &query)).into_response();
    }
    page(
        StatusCode::OK,
        "Choose a new password",
        &reset_form(uidb64, token, None),
    )
}

fn reset_outcome_page(outcome: &Result<Bytes, Status>, params: &[(String, String)]) -> Response {
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    match outcome {
        Ok(_) => page(
            StatusCode::OK,
            "Password changed",
            "<p class=\"ok\">Your password has been changed and every session signed out.</p>\
             <p>Sign in again with the new password.</p>",
        ),
        // A bad password can be corrected on the same form; a bad link cannot.
        Err(status) if reason(status) == "INVALID_ARGUMENT" => page(
            http_status(status.code()),
            "Choose a new password",
            &reset_form(param("uidb64"), param("token"), Some(status.message())),
        ),
        Err(status) => page(
            http_status(status.code()),
            "Password not changed",
            &format!(
                "<p class=\"error\" role=\"alert\">{}</p><p>Request a new reset email and try again.</p>",
                escape(status.message())
            ),
        ),
    }
}

fn reset_form(uidb64: &str, token: &str, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |message| {
        format!(
            "<p class=\"error\" role=\"alert\" id=\"error\">{}</p>",
            escape(message)
        )
    });
    format!(
        "{error}<form method=\"post\" action=\"/accounts/password-reset-confirm/{uid}/{token}/\">\
         <label for=\"new_password\">New password</label>\
         <input id=\"new_password\" name=\"new_password\" type=\"password\" autocomplete=\"new-password\" \
         required minlength=\"{MIN_CHARS}\" maxlength=\"{MAX_CHARS}\" aria-describedby=\"hint\">\
         <p id=\"hint\" class=\"hint\">{MIN_CHARS} to {MAX_CHARS} characters. A long phrase is easy to remember and hard to guess.</p>\
         <button type=\"submit\">Change password</button></form>",
        uid = escape(uidb64),
        token = escape(token),
    )
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{title}</title><style>{STYLE}</style></head>\
         <body><main><h1>{title}</h1>{body}</main></body></html>",
        title = escape(title),
    );
    let mut response = (status, Html(html)).into_response();
    // The URL holds a one-time token: keep it out of caches and other sites' logs.
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    response
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1f2937;margin:0}\
main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:12px;box-shadow:0 1px 4px rgba(0,0,0,.12)}\
h1{font-size:1.4rem;margin-top:0}label{display:block;font-weight:600;margin-bottom:.4rem}\
input{width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;border:1px solid #9ca3af;border-radius:6px}\
button{margin-top:1rem;padding:.6rem 1.2rem;font-size:1rem;border:0;border-radius:6px;background:#1d4ed8;color:#fff;cursor:pointer}\
.hint{font-size:.85rem;color:#4b5563}.ok{color:#166534}.error{color:#b91c1c}";

fn reason(status: &Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .error_info()
        .map_or_else(|| "UNKNOWN".to_owned(), |info| info.reason.clone())
}

fn with_query(url: &str, query: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{query}")
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::asks_for_json;

    #[test]
    fn only_a_client_naming_json_asks_for_it() {
        let with = |accept: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in accept {
                headers.append(header::ACCEPT, HeaderValue::from_str(value).unwrap());
            }
            asks_for_json(&headers)
        };
        assert!(with(&["application/json"]));
        assert!(with(&["text/html, Application/JSON;q=0.5"]));
        assert!(with(&["text/html", "application/json"]));
        assert!(!with(&[]));
        assert!(!with(&["*/*"]));
        assert!(!with(&["application/*"]));
        assert!(!with(&["text/html,application/xhtml+xml,*/*;q=0.8"]));
        assert!(!with(&["application/json;q=0"]));
        assert!(!with(&["application/jsonx"]));
    }
}
