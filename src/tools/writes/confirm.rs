//! Confirmation tokens: the two-step approval for a client that cannot ask its user (no MCP
//! elicitation). A dry run's reply carries a token bound to the exact change (tool, service,
//! change, override reason) and to the Deployment generation reviewed; only a call with that
//! token applies it, once, before it expires. Tokens are 128 random bits and live in this
//! process only: a restarted server has forgotten them, which fails safe.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

/// What a token was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// `tool namespace/name change` with the override reason, canonical.
    pub change: String,
    /// The one-line summary shown when a token is used for something else.
    pub summary: String,
    /// The Deployment's generation when it was reviewed.
    pub generation: Option<i64>,
}

#[derive(Debug)]
struct Issued {
    bound: Bound,
    expires: Timestamp,
    used: Option<Timestamp>,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "confirmation token {0} is not one this server issued (tokens are single-use, bound to one change, and forgotten when the server restarts); run the call with dry_run=true to review the change and get a token"
    )]
    Unknown(String),
    #[error(
        "confirmation token {token} was already used at {at}; each token applies its change once. Run the call with dry_run=true for a new review and token"
    )]
    Used { token: String, at: Timestamp },
    #[error(
        "confirmation token {token} expired at {at} (tokens last {ttl} s); run the call with dry_run=true for a new review and token"
    )]
    Expired {
        token: String,
        at: Timestamp,
        ttl: u64,
    },
    #[error(
        "confirmation token {token} was issued for another change ({issued_for}), not for this one ({this}); a token applies only the exact change it was reviewed for"
    )]
    OtherChange {
        token: String,
        issued_for: String,
        this: String,
    },
}

/// The tokens issued by this server.
#[derive(Debug)]
pub struct ConfirmationBook {
    ttl: Duration,
    tokens: Mutex<HashMap<String, Issued>>,
}

impl ConfirmationBook {
    /// How long a token is valid by default.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
    /// Tokens kept (issued ones beyond it, expired first, are forgotten).
    const MAX_TOKENS: usize = 1_000;

    pub fn new(ttl: Duration) -> ConfirmationBook {
        ConfirmationBook {
            ttl,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new token for `bound`, and when it expires.
    pub fn issue(&self, bound: Bound, now: Timestamp) -> (String, Timestamp) {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        let token = format!(
            "cf_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let expires = now
            .checked_add(jiff::SignedDuration::try_from(self.ttl).unwrap_or_default())
            .unwrap_or(Timestamp::MAX);
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= Self::MAX_TOKENS {
            tokens.retain(|_, t| t.used.is_none() && t.expires > now);
        }
        tokens.insert(
            token.clone(),
            Issued {
                bound,
                expires,
                used: None,
            },
        );
        (token, expires)
    }

    /// Accepts `token` for `bound` and marks it used; the reason otherwise. A token offered for
    /// another change stays valid for its own.
    pub fn redeem(&self, token: &str, bound: &Bound, now: Timestamp) -> Result<(), TokenError> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let shown = crate::util::quote::short(token);
        let Some(issued) = tokens.get_mut(token) else {
            return Err(TokenError::Unknown(shown));
        };
        if let Some(at) = issued.used {
            return Err(TokenError::Used { token: shown, at });
        }
        if issued.expires <= now {
            return Err(TokenError::Expired {
                token: shown,
                at: issued.expires,
                ttl: self.ttl.as_secs(),
            });
        }
        if issued.bound.change != bound.change {
            return Err(TokenError::OtherChange {
                token: shown,
                issued_for: issued.bound.summary.clone(),
                this: bound.summary.clone(),
            });
        }
        issued.used = Some(now);
        Ok(())
    }

    /// Why `token` can apply nothing at all (unknown, used, expired), whatever it is offered
    /// for; `None` for a token that is still good for its own change.
    pub fn spent(&self, token: &str, now: Timestamp) -> Option<TokenError> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let shown = crate::util::quote::short(token);
        match tokens.get(token) {
            None => Some(TokenError::Unknown(shown)),
            Some(Issued { used: Some(at), .. }) => Some(TokenError::Used {
                token: shown,
                at: *at,
            }),
            Some(issued) if issued.expires <= now => Some(TokenError::Expired {
                token: shown,
                at: issued.expires,
                ttl: self.ttl.as_secs(),
            }),
            Some(_) => None,
        }
    }

    /// The generation the token's change was reviewed at.
    pub fn reviewed_generation(&self, token: &str) -> Option<i64> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.get(token).and_then(|t| t.bound.generation)
    }
}

impl Default for ConfirmationBook {
    fn default() -> Self {
        ConfirmationBook::new(Self::DEFAULT_TTL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(change: &str) -> Bound {
        Bound {
            change: change.into(),
            summary: change.into(),
            generation: Some(3),
        }
    }

    #[test]
    fn a_token_applies_its_own_change_once_before_it_expires() {
        let book = ConfirmationBook::new(Duration::from_secs(60));
        let now = Timestamp::now();
        let (token, expires) = book.issue(bound("deploy a"), now);
        assert!(token.starts_with("cf_") && token.len() == 35, "{token}");
        assert_eq!(expires.duration_since(now).as_secs(), 60);
        assert!(matches!(
            book.redeem("cf_0000", &bound("deploy a"), now),
            Err(TokenError::Unknown(_))
        ));
        let other = book.redeem(&token, &bound("deploy b"), now).unwrap_err();
        assert!(
            other.to_string().contains("another change (deploy a)"),
            "{other}"
        );
        // Offering it for another change did not spend it.
        book.redeem(&token, &bound("deploy a"), now).unwrap();
        assert!(matches!(
            book.redeem(&token, &bound("deploy a"), now),
            Err(TokenError::Used { .. })
        ));
        let (late, expires) = book.issue(bound("deploy a"), now);
        assert!(matches!(
            book.redeem(&late, &bound("deploy a"), expires),
            Err(TokenError::Expired { .. })
        ));
        assert_eq!(book.reviewed_generation(&late), Some(3));
    }

    #[test]
    fn tokens_are_not_guessable_from_each_other() {
        let book = ConfirmationBook::default();
        let now = Timestamp::now();
        let a = book.issue(bound("x"), now).0;
        let b = book.issue(bound("x"), now).0;
        assert_ne!(a, b);
    }
}
