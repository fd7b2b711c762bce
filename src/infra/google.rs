//! Google OAuth 2.0 client: authorisation URL, code exchange (PKCE) and
//! userinfo. Off until `GOOGLE_CLIENT_ID` is set. Endpoints come from config
//! so tests can point them at a local fake.

use std::time::Duration;

use serde::Deserialize;

use crate::config::GoogleConfig;

/// Google failures, split by what the caller should answer.
#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    #[error("google sign-in is not configured")]
    Disabled,
    #[error("code exchange failed: {0}")]
    Exchange(String),
    #[error("userinfo request failed: {0}")]
    UserInfo(String),
}

/// The profile fields AtoiTalk uses.
#[derive(Debug, Clone, Deserialize)]
pub struct GoogleUser {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub verified_email: bool,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub picture: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

/// The OAuth client.
#[derive(Clone)]
pub struct GoogleClient {
    cfg: GoogleConfig,
    http: reqwest::Client,
}

impl GoogleClient {
    pub fn new(cfg: GoogleConfig, http: reqwest::Client) -> Self {
        Self { cfg, http }
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled()
    }

    /// The consent-page URL (query keys sorted, as the reference builds it).
    pub fn auth_url(&self, state: &str, code_challenge: &str) -> String {
        let mut url = match url::Url::parse(&self.cfg.auth_url) {
            Ok(u) => u,
            Err(_) => return String::new(),
        };
        url.query_pairs_mut()
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("redirect_uri", &self.cfg.redirect_url)
            .append_pair("response_type", "code")
            .append_pair(
                "scope",
                "https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile",
            )
            .append_pair("state", state);
        url.to_string()
    }

    /// Exchanges an authorisation code for an access token.
    pub async fn exchange_code(&self, code: &str, verifier: &str) -> Result<String, GoogleError> {
        if !self.enabled() {
            return Err(GoogleError::Disabled);
        }
        let res = self
            .http
            .post(&self.cfg.token_url)
            .timeout(Duration::from_secs(15))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", verifier),
                ("client_id", &self.cfg.client_id),
                ("client_secret", &self.cfg.client_secret),
                ("redirect_uri", &self.cfg.redirect_url),
            ])
            .send()
            .await
            .map_err(|e| GoogleError::Exchange(e.to_string()))?;
        if !res.status().is_success() {
            return Err(GoogleError::Exchange(format!(
                "token endpoint answered {}",
                res.status()
            )));
        }
        let body: TokenResponse = res
            .json()
            .await
            .map_err(|e| GoogleError::Exchange(e.to_string()))?;
        Ok(body.access_token)
    }

    /// Reads the signed-in user's profile.
    pub async fn user_info(&self, access_token: &str) -> Result<GoogleUser, GoogleError> {
        let res = self
            .http
            .get(&self.cfg.userinfo_url)
            .timeout(Duration::from_secs(15))
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| GoogleError::UserInfo(e.to_string()))?;
        if !res.status().is_success() {
            return Err(GoogleError::UserInfo(format!(
                "userinfo answered {}",
                res.status()
            )));
        }
        res.json()
            .await
            .map_err(|e| GoogleError::UserInfo(e.to_string()))
    }
}
