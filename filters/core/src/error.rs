//! The gateway's own errors, in OpenAI's shape: `{"error":{"message","type","param","code"}}`.

use crate::text::Text;

/// An error the gateway answers with itself.
///
/// Boxed: the request path's `Result`s carry a pointer, not the error's five fields, through
/// every `?` (an error is rare; its allocation is paid only then). Its parts are read and set
/// through `Deref` (`e.status`, `e.code`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError(Box<GatewayErrorParts>);

/// What a [`GatewayError`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayErrorParts {
    pub status: u16,
    pub message: String,
    pub kind: &'static str,
    pub code: &'static str,
    pub param: Option<&'static str>,
}

impl std::ops::Deref for GatewayError {
    type Target = GatewayErrorParts;
    fn deref(&self) -> &GatewayErrorParts {
        &self.0
    }
}

impl std::ops::DerefMut for GatewayError {
    fn deref_mut(&mut self) -> &mut GatewayErrorParts {
        &mut self.0
    }
}

impl GatewayError {
    pub fn new(status: u16, kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self(Box::new(GatewayErrorParts { status, message: message.into(), kind, code, param: None }))
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", code, message)
    }

    pub fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    /// The JSON body sent to the caller.
    pub fn body(&self) -> String {
        crate::wire::write::to_string(&crate::wire::obj! {
            "error" = crate::wire::obj!{
                "message" => self.message,
                "type" => self.kind,
                "param" => self.param,
                "code" => self.code,
            },
        })
    }
}

/// A filter configuration refused when it is read or compiled: the filter (as operators know it:
/// `quota`, `route-select`, ..., `gateway`), the field, and what is wrong with it.
///
/// Boxed: a `Result` of a configuration's compile carries a pointer, not three strings,
/// through every `?`. Its parts are read through `Deref` (`e.field`, `e.problem`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(Box<ConfigErrorParts>);

/// What a [`ConfigError`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrorParts {
    pub filter: String,
    /// The stage's key in the gateway's configuration (`quota`, `route`, ...) when the field is
    /// in one stage's part; `field` is then relative to that part.
    pub stage: Option<&'static str>,
    /// The field's path (`tenants.acme.concurrent`, `keys[0].sha256`); empty: the whole.
    pub field: String,
    pub problem: String,
}

impl std::ops::Deref for ConfigError {
    type Target = ConfigErrorParts;
    fn deref(&self) -> &ConfigErrorParts {
        &self.0
    }
}

impl ConfigError {
    #[cold]
    #[inline(never)]
    pub fn new(filter: &str, field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError(Box::new(ConfigErrorParts {
            filter: filter.own(),
            stage: None,
            field: field.into(),
            problem: problem.into(),
        }))
    }

    /// The same error, found in a part of a larger configuration: `filter`'s, under `prefix`.
    pub fn at(mut self, filter: &str, prefix: &str) -> ConfigError {
        let r = &mut *self.0;
        r.field = if r.field.is_empty() { prefix.own() } else { format!("{prefix}.{}", r.field) };
        r.filter = filter.own();
        self
    }

    /// The same error, said to be in the stage `stage`'s part of the gateway's configuration.
    pub fn in_stage(mut self, stage: &'static str) -> ConfigError {
        self.0.stage = Some(stage);
        self
    }

    /// As the `gateway` filter reports it: the field's path from the top of its configuration.
    pub fn in_gateway(mut self) -> ConfigError {
        let r = &mut *self.0;
        match (r.stage.take(), r.field.is_empty()) {
            (Some(s), true) => r.field = s.own(),
            (Some(s), false) => r.field = format!("{s}.{}", r.field),
            (None, _) => {}
        }
        r.filter = "gateway".into();
        self
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: invalid configuration: {}", self.filter, self.problem)
        } else {
            write!(f, "{}: invalid configuration at `{}`: {}", self.filter, self.field, self.problem)
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_openai_shape() {
        let e = GatewayError::bad_request("invalid_json", "body is not JSON").with_param("messages");
        let v: crate::wire::tree::Value = crate::wire::from_str(&e.body()).unwrap_or_default();
        assert_eq!(v["error"]["message"], "body is not JSON");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_json");
        assert_eq!(v["error"]["param"], "messages");
    }
}
