//! The one source of "now" for every time rule, so tests can move time instead of sleeping.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use chrono::{DateTime, Duration, NaiveDateTime, Utc};

/// Wall-clock time plus an offset that starts at zero; tests advance it to expire things.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_millis: Arc<AtomicI64>,
}

impl Clock {
    /// The current instant.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.offset_millis.load(Ordering::Relaxed))
    }

    /// The current instant as the naive UTC value the database stores.
    #[must_use]
    pub fn now_naive(&self) -> NaiveDateTime {
        self.now().naive_utc()
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: std::time::Duration) {
        let millis = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_millis.fetch_add(millis, Ordering::Relaxed);
    }
}

/// The longest span a time rule adds to or takes from an instant: far beyond any setting,
/// and far inside the range of dates, so arithmetic with it never overflows.
const LONGEST_SPAN: Duration = Duration::days(365 * 1000);

/// A configured span (a lifetime, a cooldown, a retention) as the span instants are moved
/// by; one too long to represent is the longest (never zero, which would expire at once).
#[must_use]
pub fn span(std: std::time::Duration) -> Duration {
    Duration::from_std(std).map_or(LONGEST_SPAN, |span| span.min(LONGEST_SPAN))
}

#[cfg(test)]
mod tests {
    use super::{LONGEST_SPAN, span};

    #[test]
    fn spans_convert_and_saturate_rather_than_vanish() {
        assert_eq!(span(std::time::Duration::from_secs(90)).num_seconds(), 90);
        assert_eq!(span(std::time::Duration::MAX), LONGEST_SPAN);
        let now = chrono::Utc::now().naive_utc();
        assert!(now + span(std::time::Duration::MAX) > now, "no overflow");
    }
}
