//! Model aliases and their fallback chains.

use std::collections::HashMap;

use serde::Deserialize;

use crate::error::GatewayError;

/// The wire API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    Openai,
    Anthropic,
    /// Azure OpenAI: OpenAI's wire format on a deployment path, `api-key` auth.
    Azure,
    /// Google Gemini API (`generateContent`), `x-goog-api-key` auth.
    Gemini,
    /// AWS Bedrock Runtime Converse, SigV4 auth.
    Bedrock,
}

impl Api {
    /// Whether the provider's answer is received whole and translated (a streaming call gets it
    /// back as one stream).
    pub fn answers_whole(self) -> bool {
        matches!(self, Api::Gemini | Api::Bedrock)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub api: Api,
    /// `max_tokens` sent to providers that require it when the caller gave none.
    #[serde(default = "default_max_tokens")]
    pub max_tokens_default: u64,
    /// Azure: the `api-version` query parameter.
    #[serde(default = "default_azure_version")]
    pub api_version: String,
}

fn default_azure_version() -> String {
    "2024-10-21".into()
}

fn default_max_tokens() -> u64 {
    4096
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub provider: String,
    pub model: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alias {
    /// The aggregate cluster that carries this alias's fallback chain.
    pub chain: String,
    /// The chain's steps, in order; each names a provider (the `provider` value in its
    /// endpoint metadata) and the concrete model to ask it for.
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub aliases: HashMap<String, Alias>,
    pub providers: HashMap<String, ProviderConfig>,
}

impl RouteConfig {
    /// Checks references once, at configuration time.
    pub fn validate(&self) -> Result<(), String> {
        if self.aliases.is_empty() {
            return Err("route-select: no model aliases configured".into());
        }
        for (name, alias) in &self.aliases {
            if alias.chain.is_empty() {
                return Err(format!("route-select: alias {name:?} has an empty chain name"));
            }
            if alias.steps.is_empty() {
                return Err(format!("route-select: alias {name:?} has no steps"));
            }
            for s in &alias.steps {
                if !self.providers.contains_key(&s.provider) {
                    return Err(format!("route-select: alias {name:?} names unknown provider {:?}", s.provider));
                }
            }
        }
        Ok(())
    }

    pub fn alias(&self, model: &str) -> Result<&Alias, GatewayError> {
        self.aliases.get(model).ok_or_else(|| {
            GatewayError::new(
                404,
                "invalid_request_error",
                "model_not_found",
                format!("The model `{model}` is not an alias this gateway serves."),
            )
            .with_param("model")
        })
    }

    /// The step of `alias` that `provider` serves, with that provider's settings.
    pub fn step(&self, alias: &str, provider: &str) -> Option<(&Step, &ProviderConfig)> {
        let a = self.aliases.get(alias)?;
        let step = a.steps.iter().find(|s| s.provider == provider)?;
        Some((step, self.providers.get(provider)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> RouteConfig {
        serde_json::from_str(json)
            .unwrap_or_else(|_| RouteConfig { aliases: HashMap::new(), providers: HashMap::new() })
    }

    const OK: &str = r#"{"aliases":{"chat":{"chain":"chain_chat","steps":[
        {"provider":"anthropic","model":"claude-x"},{"provider":"openai","model":"gpt-x"}]}},
        "providers":{"anthropic":{"api":"anthropic","max_tokens_default":512},"openai":{"api":"openai"}}}"#;

    #[test]
    fn resolves_alias_and_steps() {
        let c = cfg(OK);
        assert!(c.validate().is_ok());
        assert_eq!(c.alias("chat").map(|a| a.chain.as_str()), Ok("chain_chat"));
        let (s, p) = c.step("chat", "openai").unwrap_or_else(|| unreachable!());
        assert_eq!((s.model.as_str(), p.api, p.max_tokens_default), ("gpt-x", Api::Openai, 4096));
        assert!(c.step("chat", "gemini").is_none());
    }

    #[test]
    fn unknown_alias_is_404_model_not_found() {
        let e = cfg(OK).alias("gpt-4").err();
        assert_eq!(e.as_ref().map(|e| (e.status, e.code)), Some((404, "model_not_found")));
    }

    #[test]
    fn dangling_provider_is_a_config_error() {
        let c = cfg(r#"{"aliases":{"a":{"chain":"c","steps":[{"provider":"p","model":"m"}]}},"providers":{}}"#);
        assert!(c.validate().err().unwrap_or_default().contains("unknown provider"));
    }
}
