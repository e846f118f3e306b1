//! Email templates: HTML and plain text for each message, built in, overridable from a directory.
//!
//! A template is plain text with `{{ name }}` placeholders; the `.txt` file starts with a
//! `Subject:` line. Values are HTML-escaped in the HTML part.

use std::{collections::HashMap, path::Path};

use crate::text::escape_html;

/// The messages the service sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateName {
    /// The verification code.
    Otp,
    /// The activation link.
    Activation,
    /// The password reset link.
    PasswordReset,
    /// A notice to the owner: someone tried to sign up with their address.
    SignupAttempt,
    /// A notice to the owner: the password changed.
    PasswordChanged,
    /// A notice to the owner: a Google account was linked.
    GoogleLinked,
    /// A notice to the owner: a Google account was linked, and a password never used since
    /// the address was proven was removed.
    GoogleLinkedPasswordRemoved,
    /// A notice to the owner: a re-run of the Django import changed the account.
    ImportChanged,
    /// A notice to the owner: a reused refresh token ended a session.
    SessionRevoked,
    /// The code that confirms a new address, sent to it.
    EmailChange,
    /// A notice to the old address: the account moved to a new one.
    EmailChanged,
    /// A link to choose the first password of an account an administrator made.
    Welcome,
    /// One sign-up's verification code and activation link, in one message.
    Verification,
    /// A link to choose a password, after sign-ups that competed for the address.
    ChoosePassword,
    /// A notice to the owner: a second factor was added.
    FactorAdded,
    /// A notice to the owner: a recovery code was used, and how many are left.
    RecoveryCodeUsed,
    /// A notice to the owner: a second factor was removed.
    FactorRemoved,
    /// A notice to the owner: new recovery codes replaced the old.
    RecoveryCodesRegenerated,
    /// A notice to the owner: an administrator removed every second factor.
    FactorsReset,
    /// A sign-in code and link, for signing in without a password.
    EmailSignIn,
    /// A notice to the owner: a passkey's signature counter went back (perhaps a copy).
    PasskeyCounterWentBack,
}

impl TemplateName {
    const ALL: [Self; 21] = [
        Self::Otp,
        Self::Activation,
        Self::PasswordReset,
        Self::SignupAttempt,
        Self::PasswordChanged,
        Self::GoogleLinked,
        Self::GoogleLinkedPasswordRemoved,
        Self::ImportChanged,
        Self::SessionRevoked,
        Self::EmailChange,
        Self::EmailChanged,
        Self::Welcome,
        Self::Verification,
        Self::ChoosePassword,
        Self::FactorAdded,
        Self::RecoveryCodeUsed,
        Self::FactorRemoved,
        Self::RecoveryCodesRegenerated,
        Self::FactorsReset,
        Self::EmailSignIn,
        Self::PasskeyCounterWentBack,
    ];

    fn file_stem(self) -> &'static str {
        match self {
            Self::Otp => "otp",
            Self::Activation => "activation",
            Self::PasswordReset => "password_reset",
            Self::SignupAttempt => "signup_attempt",
            Self::PasswordChanged => "password_changed",
            Self::GoogleLinked => "google_linked",
            Self::GoogleLinkedPasswordRemoved => "google_linked_password_removed",
            Self::ImportChanged => "import_changed",
            Self::SessionRevoked => "session_revoked",
            Self::EmailChange => "email_change",
            Self::EmailChanged => "email_changed",
            Self::Welcome => "welcome",
            Self::Verification => "verification",
            Self::ChoosePassword => "choose_password",
            Self::FactorAdded => "factor_added",
            Self::RecoveryCodeUsed => "recovery_code_used",
            Self::FactorRemoved => "factor_removed",
            Self::RecoveryCodesRegenerated => "recovery_codes_regenerated",
            Self::FactorsReset => "factors_reset",
            Self::EmailSignIn => "email_sign_in",
            Self::PasskeyCounterWentBack => "passkey_counter_went_back",
        }
    }

    fn built_in(self) -> (&'static str, &'static str) {
        match self {
            Self::Otp => (
                include_str!("templates/otp.txt"),
                include_str!("templates/otp.html"),
            ),
            Self::Activation => (
                include_str!("templates/activation.txt"),
                include_str!("templates/activation.html"),
            ),
            Self::PasswordReset => (
                include_str!("templates/password_reset.txt"),
                include_str!("templates/password_reset.html"),
            ),
            Self::SignupAttempt => (
                include_str!("templates/signup_attempt.txt"),
                include_str!("templates/signup_attempt.html"),
            ),
            Self::PasswordChanged => (
                include_str!("templates/password_changed.txt"),
                include_str!("templates/password_changed.html"),
            ),
            Self::GoogleLinked => (
                include_str!("templates/google_linked.txt"),
                include_str!("templates/google_linked.html"),
            ),
            Self::GoogleLinkedPasswordRemoved => (
                include_str!("templates/google_linked_password_removed.txt"),
                include_str!("templates/google_linked_password_removed.html"),
            ),
            Self::ImportChanged => (
                include_str!("templates/import_changed.txt"),
                include_str!("templates/import_changed.html"),
            ),
            Self::SessionRevoked => (
                include_str!("templates/session_revoked.txt"),
                include_str!("templates/session_revoked.html"),
            ),
            Self::EmailChange => (
                include_str!("templates/email_change.txt"),
                include_str!("templates/email_change.html"),
            ),
            Self::EmailChanged => (
                include_str!("templates/email_changed.txt"),
                include_str!("templates/email_changed.html"),
            ),
            Self::Welcome => (
                include_str!("templates/welcome.txt"),
                include_str!("templates/welcome.html"),
            ),
            Self::Verification => (
                include_str!("templates/verification.txt"),
                include_str!("templates/verification.html"),
            ),
            Self::ChoosePassword => (
                include_str!("templates/choose_password.txt"),
                include_str!("templates/choose_password.html"),
            ),
            Self::FactorAdded => (
                include_str!("templates/factor_added.txt"),
                include_str!("templates/factor_added.html"),
            ),
            Self::RecoveryCodeUsed => (
                include_str!("templates/recovery_code_used.txt"),
                include_str!("templates/recovery_code_used.html"),
            ),
            Self::FactorRemoved => (
                include_str!("templates/factor_removed.txt"),
                include_str!("templates/factor_removed.html"),
            ),
            Self::RecoveryCodesRegenerated => (
                include_str!("templates/recovery_codes_regenerated.txt"),
                include_str!("templates/recovery_codes_regenerated.html"),
            ),
            Self::FactorsReset => (
                include_str!("templates/factors_reset.txt"),
                include_str!("templates/factors_reset.html"),
            ),
            Self::EmailSignIn => (
                include_str!("templates/email_sign_in.txt"),
                include_str!("templates/email_sign_in.html"),
            ),
            Self::PasskeyCounterWentBack => (
                include_str!("templates/passkey_counter_went_back.txt"),
                include_str!("templates/passkey_counter_went_back.html"),
            ),
        }
    }
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

struct Template {
    subject: String,
    text: String,
    html: String,
}

/// All templates, loaded once at start-up.
pub struct Templates {
    by_name: HashMap<TemplateName, Template>,
}

impl Templates {
    /// The built-in templates, each replaced by `<dir>/<name>.txt` / `.html` where present.
    ///
    /// # Errors
    /// When an override cannot be read or its `.txt` has no `Subject:` line.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut by_name = HashMap::new();
        for name in TemplateName::ALL {
            let (text, html) = name.built_in();
            let read = |ext: &str, fallback: &str| -> anyhow::Result<String> {
                match dir.map(|d| d.join(format!("{}.{ext}", name.file_stem()))) {
                    Some(path) if path.exists() => std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("reading template {}: {e}", path.display())),
                    _ => Ok(fallback.to_owned()),
                }
            };
            let text = read("txt", text)?;
            let html = read("html", html)?;
            let (subject, text) = split_subject(&text).ok_or_else(|| {
                anyhow::anyhow!(
                    "template {}.txt must start with a 'Subject:' line",
                    name.file_stem()
                )
            })?;
            by_name.insert(
                name,
                Template {
                    subject,
                    text,
                    html,
                },
            );
        }
        Ok(Self { by_name })
    }

    /// Renders one message with the given values.
    #[must_use]
    pub fn render(&self, name: TemplateName, values: &[(&str, &str)]) -> Rendered {
        let Some(template) = self.by_name.get(&name) else {
            unreachable!("every TemplateName is loaded in Templates::load");
        };
        Rendered {
            subject: substitute(&template.subject, values, |v| v.to_owned()),
            text: substitute(&template.text, values, |v| v.to_owned()),
            html: substitute(&template.html, values, escape_html),
        }
    }
}

fn split_subject(text: &str) -> Option<(String, String)> {
    let (first, rest) = text.split_once('\n')?;
    let subject = first.strip_prefix("Subject:")?.trim().to_owned();
    Some((subject, rest.trim_start_matches(['\r', '\n']).to_owned()))
}

fn substitute(template: &str, values: &[(&str, &str)], escape: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let key = after[..end].trim();
        match values.iter().find(|(name, _)| *name == key) {
            Some((_, value)) => out.push_str(&escape(value)),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{TemplateName, Templates};

    #[test]
    fn renders_values_and_escapes_html() {
        let templates = Templates::load(None).unwrap();
        let mail = templates.render(
            TemplateName::Otp,
            &[("name", "<Ann>"), ("code", "123456"), ("minutes", "10")],
        );
        assert_eq!(mail.subject, "Your verification code");
        assert!(mail.text.contains("Hello <Ann>,") && mail.text.contains("123456"));
        assert!(mail.html.contains("Hello &lt;Ann&gt;,"));
        assert!(!mail.text.starts_with("Subject"));
    }

    #[test]
    fn a_directory_overrides_one_template() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("otp.txt"),
            "Subject: Code {{ code }}\n\nIt is {{ code }}.",
        )
        .unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        let mail = templates.render(TemplateName::Otp, &[("code", "654321")]);
        assert_eq!(
            (mail.subject.as_str(), mail.text.as_str()),
            ("Code 654321", "It is 654321.")
        );
        assert!(mail.html.contains("654321"), "the built-in HTML stays");
    }
}
