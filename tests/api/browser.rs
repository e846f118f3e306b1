//! The pages behind emailed links, in a real headless Chromium driven over WebDriver.
//! Needs `CHROMEDRIVER` (scripts/test installs Debian's chromium and chromium-driver and sets
//! it); without it they fail, unless opted out with `IDENTITY_TESTS_WITHOUT_BROWSER=1`.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, required_tool};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A Chromium session through chromedriver, closed on drop.
pub(crate) struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn start() -> Option<Self> {
        let chromedriver = required_tool("CHROMEDRIVER", "IDENTITY_TESTS_WITHOUT_BROWSER")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": binary, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=900,700", format!("--user-data-dir={}", profile.path().display()),
            ]},
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"));
        Some(Self {
            driver,
            http,
            session: format!("{base}/session/{session}"),
            _profile: profile,
        })
    }

    pub(crate) async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply: Value = request.send().await.unwrap().json().await.unwrap();
        reply["value"].clone()
    }

    pub(crate) async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub(crate) async fn title(&self) -> String {
        self.command(reqwest::Method::GET, "/title", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The title, once it is `expected` or 10 s have passed: a click that submits a form
    /// returns before the next page has loaded.
    pub(crate) async fn title_once_it_is(&self, expected: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let title = self.title().await;
            if title == expected || tokio::time::Instant::now() >= deadline {
                return title;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn text(&self, css: &str) -> String {
        let element = self.element(css).await;
        self.command(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
    }

    pub(crate) async fn element(&self, css: &str) -> String {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no {css}: {found}"))
            .to_owned()
    }

    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub(crate) async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// A PNG of the viewport, also saved under `target/screenshots/` for a person to look at.
    pub(crate) async fn screenshot(&self, name: &str) -> Vec<u8> {
        let encoded = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let png = STANDARD.decode(encoded.as_str().unwrap()).unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        png
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A rendered page compresses far worse than an empty one: text, colours and a card.
fn assert_rendered(page: &[u8], blank: &[u8]) {
    assert_eq!(&page[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert!(
        page.len() > blank.len() * 2,
        "the page looks blank ({} vs {} bytes)",
        page.len(),
        blank.len()
    );
}

async fn a_person_activates_from_the_emailed_link_in_a_browser(backend: Backend) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn(backend).await;
    app.register("clicker@example.com", PASSWORD).await.unwrap();
    let link = app
        .smtp
        .nth_with_subject("clicker@example.com", "Activate", 1)
        .await
        .link("/activate/");
    browser.open("about:blank").await;
    let blank = browser.screenshot("blank").await;

    browser.open(&app.local(&link)).await;
    assert_eq!(
        browser.title_once_it_is("Activate your account").await,
        "Activate your account"
    );
    assert_rendered(&browser.screenshot("activation-confirm").await, &blank);
    assert!(!app.user("clicker@example.com").await.unwrap().is_verified);
    browser.click("button[type=submit]").await;

    assert_eq!(
        browser.title_once_it_is("Account activated").await,
        "Account activated"
    );
    assert!(browser.text("main").await.contains("account is active"));
    assert_rendered(&browser.screenshot("activation").await, &blank);
    assert!(app.user("clicker@example.com").await.unwrap().is_verified);
}

async fn a_person_resets_their_password_with_the_emailed_form(backend: Backend) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn(backend).await;
    app.verified_user("forgetful@example.com").await;
    app.client
        .clone()
        .password_reset(identity::pb::PasswordResetRequest {
            email: "forgetful@example.com".into(),
        })
        .await
        .unwrap();
    let link = app
        .smtp
        .nth_with_subject("forgetful@example.com", "Reset", 1)
        .await
        .link("/password-reset-confirm/");
    browser.open("about:blank").await;
    let blank = browser.screenshot("blank").await;

    browser.open(&app.local(&link)).await;
    assert_eq!(
        browser.title_once_it_is("Choose a new password").await,
        "Choose a new password"
    );
    assert_rendered(&browser.screenshot("reset-form").await, &blank);
    browser
        .type_into("#new_password", "a-browser-chosen-passphrase")
        .await;
    browser.click("button[type=submit]").await;

    assert_eq!(
        browser.title_once_it_is("Password changed").await,
        "Password changed"
    );
    assert_rendered(&browser.screenshot("reset-done").await, &blank);
    assert!(
        app.login("forgetful@example.com", "a-browser-chosen-passphrase")
            .await
            .is_ok()
    );
    assert!(app.login("forgetful@example.com", PASSWORD).await.is_err());
}

crate::on_both_backends!(
    a_person_activates_from_the_emailed_link_in_a_browser,
    a_person_resets_their_password_with_the_emailed_form,
);
