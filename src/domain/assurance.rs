//! How well a session's user proved who they are: the kinds of factor the session used, and
//! what they give: an authenticator assurance level (NIST SP 800-63B: `aal1`, `aal2`) and the
//! `amr` values of the access token (RFC 8176). The level comes from the distinct kinds of
//! factor used, never from which call was made.

/// One way of proving who one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuthMethod {
    /// The account's password.
    Password,
    /// A Google sign-in.
    Google,
    /// A refresh token the Django deployment issued, exchanged once.
    DjangoToken,
    /// A code or link mailed to the account's address, used once.
    EmailCode,
    /// A passkey that did not verify its user: something one has.
    Passkey,
    /// A passkey that verified its user (a PIN or biometric on the device): something one
    /// has and something one knows or is, two factors by itself.
    VerifiedPasskey,
    /// A code of an authenticator app.
    Totp,
    /// A recovery code.
    RecoveryCode,
}

impl AuthMethod {
    const ALL: [Self; 8] = [
        Self::Password,
        Self::Google,
        Self::DjangoToken,
        Self::EmailCode,
        Self::Passkey,
        Self::VerifiedPasskey,
        Self::Totp,
        Self::RecoveryCode,
    ];

    /// The method a stored name stands for.
    #[must_use]
    pub fn from_stored(stored: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|method| method.as_str() == stored)
    }

    /// The name stored with a session.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Google => "google",
            Self::DjangoToken => "django",
            Self::EmailCode => "email_code",
            Self::Totp => "totp",
            Self::RecoveryCode => "recovery_code",
            Self::Passkey => "passkey",
            Self::VerifiedPasskey => "passkey_verified",
        }
    }

    /// Its RFC 8176 value: `pwd` (a password), `otp` (a code mailed, an authenticator app's,
    /// or a recovery code), `fed` (a credential of another system: Google, or Django's token),
    /// `hwk` (a passkey: proof of a key the device holds).
    #[must_use]
    pub fn amr(self) -> &'static str {
        match self {
            Self::Password => "pwd",
            Self::Google | Self::DjangoToken => "fed",
            Self::EmailCode | Self::Totp | Self::RecoveryCode => "otp",
            Self::Passkey | Self::VerifiedPasskey => "hwk",
        }
    }

    /// Whether it can open a session by itself (every kind but the codes that only ever
    /// follow a first factor).
    #[must_use]
    pub fn is_first_factor(self) -> bool {
        !matches!(self, Self::Totp | Self::RecoveryCode)
    }

    /// Whether it can count as the second kind of factor beside a first.
    #[must_use]
    pub fn is_second_factor(self) -> bool {
        matches!(
            self,
            Self::Totp | Self::RecoveryCode | Self::Passkey | Self::VerifiedPasskey
        )
    }

    /// Whether it is two factors by itself.
    #[must_use]
    pub fn is_multi_factor(self) -> bool {
        self == Self::VerifiedPasskey
    }
}

/// An authenticator assurance level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Aal {
    /// One factor.
    Aal1,
    /// Two factors of different kinds.
    Aal2,
}

impl Aal {
    /// The claim's value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aal1 => "aal1",
            Self::Aal2 => "aal2",
        }
    }
}

/// The distinct kinds of factor a session used, in a fixed order (first factors first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthMethods(Vec<AuthMethod>);

impl AuthMethods {
    /// The methods `used`, each once.
    #[must_use]
    pub fn of(used: &[AuthMethod]) -> Self {
        let mut methods = used.to_vec();
        methods.sort();
        methods.dedup();
        Self(methods)
    }

    /// The methods as a session stores them (`password,totp`); a name this build does not
    /// know is dropped, so it never raises the level.
    #[must_use]
    pub fn from_stored(stored: &str) -> Self {
        let used: Vec<AuthMethod> = stored
            .split(',')
            .filter_map(AuthMethod::from_stored)
            .collect();
        Self::of(&used)
    }

    /// How a session stores them.
    #[must_use]
    pub fn to_stored(&self) -> String {
        self.0
            .iter()
            .map(|method| method.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The same, with `method` added.
    #[must_use]
    pub fn with(&self, method: AuthMethod) -> Self {
        let mut used = self.0.clone();
        used.push(method);
        Self::of(&used)
    }

    /// `aal2` when a multi-factor method, or a first and a different second factor, were
    /// used; `aal1` otherwise.
    #[must_use]
    pub fn aal(&self) -> Aal {
        let multi = self.0.iter().any(|m| m.is_multi_factor());
        let two = self.0.iter().any(|first| {
            first.is_first_factor()
                && self
                    .0
                    .iter()
                    .any(|second| second != first && second.is_second_factor())
        });
        if multi || two { Aal::Aal2 } else { Aal::Aal1 }
    }

    /// The token's `amr`: each method's RFC 8176 value once, and `mfa` at `aal2`.
    #[must_use]
    pub fn amr(&self) -> Vec<String> {
        let mut amr: Vec<String> = Vec::new();
        for method in &self.0 {
            let value = method.amr().to_owned();
            if !amr.contains(&value) {
                amr.push(value);
            }
        }
        if self.aal() == Aal::Aal2 {
            amr.push("mfa".to_owned());
        }
        amr
    }
}

#[cfg(test)]
mod tests {
    use super::{Aal, AuthMethod, AuthMethods};

    #[test]
    fn the_level_comes_from_the_kinds_of_factor_used() {
        let password = AuthMethods::of(&[AuthMethod::Password]);
        assert_eq!(password.aal(), Aal::Aal1);
        assert_eq!(password.amr(), ["pwd"]);
        let both = password.with(AuthMethod::Totp);
        assert_eq!(both.aal(), Aal::Aal2);
        assert_eq!(both.amr(), ["pwd", "otp", "mfa"]);
        assert_eq!(
            AuthMethods::of(&[AuthMethod::Google, AuthMethod::RecoveryCode]).aal(),
            Aal::Aal2
        );
        // An emailed code is a first factor: alone `aal1`, with an app's code `aal2`, though
        // both are `otp`.
        let mailed = AuthMethods::of(&[AuthMethod::EmailCode]);
        assert_eq!(
            (mailed.aal(), mailed.amr()),
            (Aal::Aal1, vec!["otp".into()])
        );
        let mailed_and_app = mailed.with(AuthMethod::Totp);
        assert_eq!(mailed_and_app.aal(), Aal::Aal2);
        assert_eq!(mailed_and_app.amr(), ["otp", "mfa"]);
        // A passkey that verified its user is two factors; one that did not is one, which a
        // password or a code completes.
        let verified = AuthMethods::of(&[AuthMethod::VerifiedPasskey]);
        assert_eq!(
            (verified.aal(), verified.amr()),
            (Aal::Aal2, vec!["hwk".into(), "mfa".into()])
        );
        let unverified = AuthMethods::of(&[AuthMethod::Passkey]);
        assert_eq!(
            (unverified.aal(), unverified.amr()),
            (Aal::Aal1, vec!["hwk".into()])
        );
        assert_eq!(unverified.with(AuthMethod::Totp).aal(), Aal::Aal2);
        assert_eq!(password.with(AuthMethod::Passkey).aal(), Aal::Aal2);
        // A second factor alone, or two first factors, are one factor's worth.
        assert_eq!(AuthMethods::of(&[AuthMethod::Totp]).aal(), Aal::Aal1);
        assert_eq!(
            AuthMethods::of(&[AuthMethod::Password, AuthMethod::Google]).aal(),
            Aal::Aal1
        );
    }

    #[test]
    fn methods_round_trip_through_storage_and_unknown_names_never_count() {
        let both = AuthMethods::of(&[AuthMethod::Totp, AuthMethod::Password, AuthMethod::Totp]);
        assert_eq!(both.to_stored(), "password,totp");
        assert_eq!(AuthMethods::from_stored("password,totp"), both);
        assert_eq!(
            AuthMethods::from_stored("password,passkey-from-the-future").aal(),
            Aal::Aal1
        );
        assert_eq!(AuthMethods::from_stored("").aal(), Aal::Aal1);
    }
}
