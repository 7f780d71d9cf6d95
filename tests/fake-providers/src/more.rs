//! Gemini (`generateContent`) and Bedrock (`Converse`, with SigV4 verification) fakes.
//!
//! The SigV4 check here is written from AWS's description (shared/reference/providers.md §6.4),
//! independently of the gateway's signer, so that a mistake in one is not mirrored by the other.

use base64::Engine;
use std::io;
use std::net::TcpStream;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{answer, chunk, end_chunked, now, respond, start_chunked, Fault, Instance, Request};

fn json_headers() -> Vec<(&'static str, String)> {
    vec![("content-type", "application/json; charset=UTF-8".to_string())]
}

// ---------------------------------------------------------------------------------------------
// Gemini

fn gemini_error(w: &mut TcpStream, code: u16, status: &str, message: &str, details: Value) -> io::Result<bool> {
    let body = json!({"error": {"code": code, "message": message, "status": status, "details": details}});
    respond(w, code, &json_headers(), body.to_string().as_bytes())
}

/// `batchEmbedContents`: at most 100 requests, each naming the model of the path; no token
/// counts in the answer (the Gemini API gives none for embeddings).
fn gemini_embed(req: &Request, body: &Value, w: &mut TcpStream) -> io::Result<bool> {
    let path = req.path.split('?').next().unwrap_or("");
    let model = path.trim_start_matches("/v1beta/models/").split(':').next().unwrap_or("");
    let native = match model {
        "gemini-embedding-001" => 3072,
        "text-embedding-004" => 768,
        _ => {
            return gemini_error(
                w,
                404,
                "NOT_FOUND",
                &format!("models/{model} is not found for API version v1beta, or is not supported for embedContent."),
                json!([]),
            );
        }
    };
    let Some(requests) = body.get("requests").and_then(Value::as_array).filter(|r| !r.is_empty()) else {
        return gemini_error(
            w,
            400,
            "INVALID_ARGUMENT",
            "* BatchEmbedContentsRequest.requests: requests is not specified",
            json!([]),
        );
    };
    if requests.len() > 100 {
        return gemini_error(
            w,
            400,
            "INVALID_ARGUMENT",
            "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch",
            json!([]),
        );
    }
    let mut out = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        if r.get("model").and_then(Value::as_str) != Some(&format!("models/{model}")) {
            return gemini_error(
                w,
                400,
                "INVALID_ARGUMENT",
                &format!("* BatchEmbedContentsRequest.requests[{i}].model: the model must match the batch's model"),
                json!([]),
            );
        }
        let Some(text) = r.pointer("/content/parts/0/text").and_then(Value::as_str).filter(|t| !t.is_empty()) else {
            return gemini_error(
                w,
                400,
                "INVALID_ARGUMENT",
                &format!("* BatchEmbedContentsRequest.requests[{i}].content: contents is not specified"),
                json!([]),
            );
        };
        let dims =
            r.get("outputDimensionality").and_then(Value::as_u64).map_or(native, |d| (d as usize).clamp(1, native));
        out.push(json!({"values": super::embeddings::vector(text, dims)}));
    }
    respond(w, 200, &json_headers(), json!({"embeddings": out}).to_string().as_bytes())
}

/// The first function call of the current turn (from the caller's last text on) that lacks the
/// thought signature Gemini 3 requires on each model turn's first call, as Gemini names it: the
/// function's name and the call's position (1-based, over the turn's calls).
fn unsigned_call(body: &Value) -> Option<(String, usize)> {
    let contents = body.get("contents").and_then(Value::as_array)?;
    let is_text_turn = |c: &Value| {
        c.get("role").and_then(Value::as_str) != Some("model")
            && c.get("parts").and_then(Value::as_array).is_some_and(|p| p.iter().any(|p| p.get("text").is_some()))
    };
    let start = contents.iter().rposition(is_text_turn).unwrap_or(0);
    let mut position = 0;
    for c in &contents[start..] {
        if c.get("role").and_then(Value::as_str) != Some("model") {
            continue;
        }
        let calls: Vec<&Value> = c
            .get("parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|p| p.get("functionCall").is_some())
            .collect();
        if let Some(first) = calls.first() {
            let signed = first.get("thoughtSignature").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
            if !signed {
                let name = first.pointer("/functionCall/name").and_then(Value::as_str).unwrap_or("");
                return Some((name.to_string(), position + 1));
            }
        }
        position += calls.len();
    }
    None
}

/// The Gemini request as OpenAI-like messages, so the shared `answer` can echo it.
fn gemini_as_messages(body: &Value) -> Value {
    let mut messages = Vec::new();
    for c in body.get("contents").and_then(Value::as_array).into_iter().flatten() {
        let role = if c.get("role").and_then(Value::as_str) == Some("model") { "assistant" } else { "user" };
        messages.push(json!({"role": role, "content": c.get("parts").cloned().unwrap_or(json!([]))}));
    }
    let mut out = json!({"messages": messages});
    if let Some(s) = body.pointer("/systemInstruction/parts") {
        out["system"] = s.clone();
    }
    out
}

pub fn gemini(
    req: &Request,
    inst: &Instance,
    w: &mut TcpStream,
    fault: Fault,
    n: u64,
    stream: bool,
) -> io::Result<bool> {
    match req.headers.get("x-goog-api-key") {
        None => {
            return gemini_error(
                w,
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
                json!([]),
            )
        }
        Some(k) if !inst.accepts(k) => {
            return gemini_error(
                w,
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]),
            )
        }
        Some(_) => {}
    }
    match fault {
        Fault::Status(429) => {
            return gemini_error(
                w,
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]),
            )
        }
        Fault::Status(503) => {
            return gemini_error(w, 503, "UNAVAILABLE", "The model is overloaded. Please try again later.", json!([]))
        }
        Fault::Status(s) if s >= 400 => {
            return gemini_error(w, s, "INTERNAL", "An internal error has occurred.", json!([]))
        }
        _ => {}
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return gemini_error(w, 400, "INVALID_ARGUMENT", "Invalid JSON payload received.", json!([]));
    };
    if req.path.split('?').next().is_some_and(|p| p.ends_with(":batchEmbedContents")) {
        return gemini_embed(req, &body, w);
    }
    if body.get("model").is_some() || body.get("messages").is_some() || body.get("stream").is_some() {
        return gemini_error(
            w,
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received. Unknown name \"messages\": Cannot find field.",
            json!([]),
        );
    }
    if body.get("contents").and_then(Value::as_array).is_none_or(|c| c.is_empty()) {
        return gemini_error(
            w,
            400,
            "INVALID_ARGUMENT",
            "* GenerateContentRequest.contents: contents is not specified",
            json!([]),
        );
    }
    // A response schema needs the JSON MIME type.
    if body.pointer("/generationConfig/responseJsonSchema").is_some()
        && body.pointer("/generationConfig/responseMimeType").and_then(Value::as_str) != Some("application/json")
    {
        return gemini_error(
            w,
            400,
            "INVALID_ARGUMENT",
            "* GenerateContentRequest.generation_config.response_mime_type: must be application/json when a \
             response schema is set",
            json!([]),
        );
    }
    let path = req.path.split('?').next().unwrap_or("");
    let model = path.trim_start_matches("/v1beta/models/").split(':').next().unwrap_or("").to_string();
    if stream && !req.path.contains("alt=sse") {
        // Without alt=sse Gemini streams one JSON array; the gateway always asks for SSE.
        return gemini_error(
            w,
            400,
            "INVALID_ARGUMENT",
            "this fake serves streamGenerateContent with alt=sse only",
            json!([]),
        );
    }
    // Gemini 3 checks the thought signatures of the current turn's function calls.
    if model.starts_with("gemini-3") {
        if let Some((name, position)) = unsigned_call(&body) {
            return gemini_error(
                w,
                400,
                "INVALID_ARGUMENT",
                &format!(
                    "Function call is missing a thought_signature in functionCall parts. This is required for \
                     tools to work correctly, and missing thought_signature may lead to degraded model \
                     performance. Additional data, function call `default_api:{name}` , position {position}. \
                     please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
                ),
                json!([]),
            );
        }
    }
    let (words, input, output) = answer(&gemini_as_messages(&body));
    let mut parts = vec![json!({"text": words.concat()})];
    // A model asked to use a tool calls the first one it was given; a thinking model (2.5 and 3,
    // thinking by default) signs the call with its reasoning's opaque signature.
    let first_tool = body.pointer("/tools/0/functionDeclarations/0/name").cloned();
    let mode = body.pointer("/toolConfig/functionCallingConfig/mode").and_then(Value::as_str);
    if let (Some(name), Some("ANY")) = (first_tool, mode) {
        let signature = base64::engine::general_purpose::STANDARD.encode(format!("fake-gemini-{n}-reasoning"));
        parts = vec![json!({"functionCall": {"name": name, "args": {"city": "Paris"}}, "thoughtSignature": signature})];
    }
    let finish = if let Fault::Finish(reason) = fault { reason } else { "STOP" };
    if stream {
        // One event per word, usage cumulative on each, finishReason on the last, no end marker.
        start_chunked(w, 200, &[("content-type", "text/event-stream".to_string())])?;
        let pieces: Vec<Value> = if parts[0].get("functionCall").is_some() {
            parts.clone()
        } else {
            words.iter().map(|wd| json!({"text": wd})).collect()
        };
        let last = pieces.len().saturating_sub(1);
        for (i, p) in pieces.iter().enumerate() {
            if let Fault::Slow(ms) = fault {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            let mut cand = json!({"content": {"parts": [p], "role": "model"}, "index": 0});
            if i == last {
                cand["finishReason"] = json!(finish);
            }
            let sent = u64::try_from(i + 1).unwrap_or(output).min(output);
            let ev = json!({"candidates": [cand],
                "usageMetadata": {"promptTokenCount": input, "candidatesTokenCount": sent, "totalTokenCount": input + sent},
                "modelVersion": model, "responseId": format!("fake-gemini-{n}")});
            chunk(w, &format!("data: {ev}\r\n\r\n"))?;
        }
        return end_chunked(w);
    }
    let out = json!({
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0,
                        "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]}],
        "usageMetadata": {"promptTokenCount": input, "candidatesTokenCount": output, "totalTokenCount": input + output,
                          "promptTokensDetails": [{"modality": "TEXT", "tokenCount": input}]},
        "modelVersion": model, "responseId": format!("fake-gemini-{n}"),
    });
    respond(w, 200, &json_headers(), out.to_string().as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Bedrock

fn bedrock_error(w: &mut TcpStream, status: u16, kind: &str, message: &str) -> io::Result<bool> {
    let h = vec![
        ("content-type", "application/json".to_string()),
        ("x-amzn-requestid", "ca47a5ce-e260-4824-aa0e-2e62669d5d6e".to_string()),
        ("x-amzn-errortype", format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/")),
    ];
    respond(w, status, &h, json!({"message": message}).to_string().as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = if key.len() > 64 { Sha256::digest(key).to_vec() } else { key.to_vec() };
    k.resize(64, 0);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&ipad).chain_update(msg).finalize();
    Sha256::new().chain_update(&opad).chain_update(inner).finalize().to_vec()
}

/// RFC 3986 encoding, keeping unreserved characters (and `/` when asked).
fn encode(s: &str, keep_slash: bool) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Checks the request's SigV4 signature; `Err((status, exception, message))` when it is wrong.
fn verify_sigv4(req: &Request, inst: &Instance, region: &str) -> Result<(), (u16, &'static str, String)> {
    let deny = |m: &str| Err((403, "InvalidSignatureException", m.to_string()));
    let Some(auth) = req.headers.get("authorization") else {
        return Err((403, "MissingAuthenticationTokenException", "Missing Authentication Token".into()));
    };
    let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else { return deny("Unsupported signing algorithm") };
    let mut credential = "";
    let mut signed_headers = "";
    let mut signature = "";
    for part in rest.split(", ") {
        match part.split_once('=') {
            Some(("Credential", v)) => credential = v,
            Some(("SignedHeaders", v)) => signed_headers = v,
            Some(("Signature", v)) => signature = v,
            _ => return deny("Authorization header is malformed"),
        }
    }
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, scope_region, service, terminal] = scope[..] else {
        return deny("Credential is malformed");
    };
    let amz_date = req.headers.get("x-amz-date").map(String::as_str).unwrap_or("");
    if service != "bedrock" || terminal != "aws4_request" || scope_region != region || !amz_date.starts_with(date) {
        return deny("Credential should be scoped to a valid region and the bedrock service.");
    }
    // Within 5 minutes of "now".
    if let Some(t) = parse_amz_date(amz_date) {
        if t.abs_diff(now()) > 300 {
            return deny("Signature expired: the request time is too far from the server time.");
        }
    } else {
        return deny("X-Amz-Date is malformed");
    }
    let secret = inst
        .keys
        .lock()
        .ok()
        .and_then(|k| k.clone())
        .unwrap_or_default()
        .iter()
        .find_map(|k| k.strip_prefix(&format!("{access_key}:")).map(str::to_string));
    let Some(secret) = secret else {
        return Err((
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.".into(),
        ));
    };
    let body_hash = hex(&Sha256::digest(&req.body));
    if let Some(claimed) = req.headers.get("x-amz-content-sha256") {
        if *claimed != body_hash {
            return Err((
                400,
                "ValidationException",
                "The provided x-amz-content-sha256 does not match the body.".into(),
            ));
        }
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"host") || !names.contains(&"x-amz-date") {
        return deny("host and x-amz-date must be signed");
    }
    let mut canonical_headers = String::new();
    for name in &names {
        let value = if *name == "host" { req.headers.get("host") } else { req.headers.get(*name) };
        let Some(v) = value else { return deny("a signed header is missing") };
        canonical_headers.push_str(&format!("{name}:{}\n", v.split_whitespace().collect::<Vec<_>>().join(" ")));
    }
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let mut q: Vec<String> = query.split('&').filter(|p| !p.is_empty()).map(str::to_string).collect();
    q.sort();
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        req.method,
        encode(path, true),
        q.join("&"),
        req.headers.get("x-amz-content-sha256").cloned().unwrap_or(body_hash)
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/bedrock/aws4_request\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, "bedrock", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let expected = hex(&hmac(&key, to_sign.as_bytes()));
    let same = expected.len() == signature.len()
        && expected.bytes().zip(signature.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !same {
        return deny(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        );
    }
    Ok(())
}

/// Seconds since the epoch of `20260115T120000Z`.
fn parse_amz_date(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2.rem_euclid(400);
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// CRC-32 (zlib's), table-driven; written apart from the gateway's.
fn crc32(data: &[u8]) -> u32 {
    let table: Vec<u32> =
        (0..256u32).map(|i| (0..8).fold(i, |c, _| if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 })).collect();
    !data.iter().fold(!0u32, |c, &b| table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8))
}

/// One AWS event-stream message (reference §5.6): prelude, prelude CRC, headers, payload, CRC.
fn frame(message_type: &str, name: &str, payload: &Value) -> Vec<u8> {
    let kind_header = if message_type == "event" { ":event-type" } else { ":exception-type" };
    let mut headers = Vec::new();
    for (k, v) in [(kind_header, name), (":content-type", "application/json"), (":message-type", message_type)] {
        headers.push(u8::try_from(k.len()).unwrap_or(0));
        headers.extend_from_slice(k.as_bytes());
        headers.push(7);
        headers.extend_from_slice(&u16::try_from(v.len()).unwrap_or(0).to_be_bytes());
        headers.extend_from_slice(v.as_bytes());
    }
    let body = payload.to_string();
    let total = u32::try_from(16 + headers.len() + body.len()).unwrap_or(0);
    let mut m = total.to_be_bytes().to_vec();
    m.extend_from_slice(&u32::try_from(headers.len()).unwrap_or(0).to_be_bytes());
    let prelude_crc = crc32(&m);
    m.extend_from_slice(&prelude_crc.to_be_bytes());
    m.extend_from_slice(&headers);
    m.extend_from_slice(body.as_bytes());
    let crc = crc32(&m);
    m.extend_from_slice(&crc.to_be_bytes());
    m
}

fn write_chunk(w: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    w.write_all(format!("{:x}\r\n", bytes.len()).as_bytes())?;
    w.write_all(bytes)?;
    w.write_all(b"\r\n")?;
    w.flush()
}

pub fn bedrock(
    req: &Request,
    inst: &Instance,
    w: &mut TcpStream,
    fault: Fault,
    n: u64,
    stream: bool,
) -> io::Result<bool> {
    let region = inst.region.as_deref().unwrap_or("us-east-1");
    if let Err((status, kind, message)) = verify_sigv4(req, inst, region) {
        return bedrock_error(w, status, kind, &message);
    }
    match fault {
        Fault::Status(429) => {
            return bedrock_error(w, 429, "ThrottlingException", "Too many tokens, please wait before trying again.")
        }
        Fault::Status(503) => {
            return bedrock_error(w, 503, "ServiceUnavailableException", "Bedrock is unable to process your request.")
        }
        Fault::Status(s) if s >= 400 => {
            return bedrock_error(w, s, "InternalServerException", "The server encountered an internal error.")
        }
        _ => {}
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return bedrock_error(
            w,
            400,
            "ValidationException",
            "Malformed input request, please reformat your input and try again.",
        );
    };
    if body.get("model").is_some() || body.get("max_tokens").is_some() {
        return bedrock_error(
            w,
            400,
            "ValidationException",
            "Malformed input request: extraneous key [model] is not permitted",
        );
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array).filter(|m| !m.is_empty()) else {
        return bedrock_error(w, 400, "ValidationException", "A conversation must start with a user message.");
    };
    // Bedrock's newer Claude models take one of temperature and topP, as Anthropic's do.
    let model_id = req.path.trim_start_matches("/model/").split('/').next().unwrap_or("").replace("%3A", ":");
    if super::one_of_temperature_and_top_p(&model_id)
        && body.pointer("/inferenceConfig/temperature").is_some()
        && body.pointer("/inferenceConfig/topP").is_some()
    {
        return bedrock_error(
            w,
            400,
            "ValidationException",
            "The model returned the following errors: `temperature` and `top_p` cannot both be specified for this \
             model. Please use only one.",
        );
    }
    // Its Claude models refuse a blank stop sequence, as Anthropic's do.
    let stops = body.pointer("/inferenceConfig/stopSequences").and_then(Value::as_array);
    if model_id.contains("claude-")
        && stops.is_some_and(|s| s.iter().any(|s| s.as_str().is_some_and(|s| s.trim().is_empty())))
    {
        return bedrock_error(
            w,
            400,
            "ValidationException",
            "The model returned the following errors: stop_sequences: each stop sequence must contain non-whitespace",
        );
    }
    if messages.first().and_then(|m| m.get("role")).and_then(Value::as_str) != Some("user") {
        return bedrock_error(
            w,
            400,
            "ValidationException",
            "A conversation must start with a user message. Try again with a conversation that starts with a user \
             message.",
        );
    }
    if messages.iter().any(|m| m.get("content").and_then(Value::as_array).is_none()) {
        return bedrock_error(w, 400, "ValidationException", "Message content must be an array of content blocks.");
    }
    // Structured output: the schema is JSON text of an object.
    if let Some(format) = body.pointer("/outputConfig/textFormat") {
        let schema = format.pointer("/structure/jsonSchema/schema").and_then(Value::as_str);
        let object = schema.and_then(|s| serde_json::from_str::<Value>(s).ok()).is_some_and(|v| v.is_object());
        if format.get("type").and_then(Value::as_str) != Some("json_schema") || !object {
            let m = "The provided request is not valid: outputConfig.textFormat needs type json_schema and a JSON \
                     Schema object as text in structure.jsonSchema.schema";
            return bedrock_error(w, 400, "ValidationException", m);
        }
    }
    let (words, input, output) = answer(&body);
    if stream {
        start_chunked(
            w,
            200,
            &[
                ("content-type", "application/vnd.amazon.eventstream".to_string()),
                ("x-amzn-requestid", format!("fake-bedrock-{n}")),
            ],
        )?;
        // Every event also carries the padding member "p" real streams have.
        let ev = |w: &mut TcpStream, name: &str, mut p: Value| {
            p["p"] = json!("abcdefgh");
            write_chunk(w, &frame("event", name, &p))
        };
        ev(w, "messageStart", json!({"role": "assistant"}))?;
        let tool = body.pointer("/toolConfig/tools/0/toolSpec/name").cloned();
        let forced = body.pointer("/toolConfig/toolChoice/any").is_some()
            || body.pointer("/toolConfig/toolChoice/tool").is_some();
        let stop = if let (Some(name), true) = (tool, forced) {
            ev(
                w,
                "contentBlockStart",
                json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": format!("tooluse_fake{n}"), "name": name}}}),
            )?;
            for part in ["{\"city\"", ": \"Paris\"}"] {
                ev(w, "contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": part}}}))?;
            }
            ev(w, "contentBlockStop", json!({"contentBlockIndex": 0}))?;
            "tool_use"
        } else {
            for (i, word) in words.iter().enumerate() {
                if let Fault::Slow(ms) = fault {
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                }
                if fault == Fault::ErrorAfter(i) {
                    write_chunk(
                        w,
                        &frame(
                            "exception",
                            "modelStreamErrorException",
                            &json!({"message": "The model stream failed.", "originalStatusCode": 500}),
                        ),
                    )?;
                    return end_chunked(w);
                }
                ev(w, "contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": word}}))?;
            }
            ev(w, "contentBlockStop", json!({"contentBlockIndex": 0}))?;
            "end_turn"
        };
        ev(w, "messageStop", json!({"stopReason": stop}))?;
        ev(
            w,
            "metadata",
            json!({"usage": {"inputTokens": input, "outputTokens": output, "totalTokens": input + output},
                                  "metrics": {"latencyMs": 1}}),
        )?;
        return end_chunked(w);
    }
    let out = json!({
        "output": {"message": {"role": "assistant", "content": [{"text": words.concat()}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": input, "outputTokens": output, "totalTokens": input + output},
        "metrics": {"latencyMs": 1},
    });
    let h = vec![("content-type", "application/json".to_string()), ("x-amzn-requestid", format!("fake-bedrock-{n}"))];
    respond(w, 200, &h, out.to_string().as_bytes())
}

/// `InvokeModel` for embeddings (`POST /model/{id}/invoke`, SigV4-signed): Titan Text
/// Embeddings v2 (one text) and Cohere Embed v3 (up to 96 texts, the token count in the
/// `X-Amzn-Bedrock-Input-Token-Count` header only).
pub fn bedrock_invoke(req: &Request, inst: &Instance, w: &mut TcpStream, fault: Fault) -> io::Result<bool> {
    let region = inst.region.as_deref().unwrap_or("us-east-1");
    if let Err((status, kind, message)) = verify_sigv4(req, inst, region) {
        return bedrock_error(w, status, kind, &message);
    }
    match fault {
        Fault::Status(429) => {
            return bedrock_error(w, 429, "ThrottlingException", "Too many requests, please wait before trying again.")
        }
        Fault::Status(s) if s >= 400 => {
            return bedrock_error(w, s, "ServiceUnavailableException", "Bedrock is unable to process your request.")
        }
        _ => {}
    }
    let path = req.path.split('?').next().unwrap_or("");
    let id = path.trim_start_matches("/model/").trim_end_matches("/invoke").replace("%3A", ":").replace("%3a", ":");
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return bedrock_error(
            w,
            400,
            "ValidationException",
            "Malformed input request, please reformat your input and try again.",
        );
    };
    let words = |t: &str| t.split_whitespace().count().max(1) as u64;
    let (out, tokens) = match id.as_str() {
        "amazon.titan-embed-text-v2:0" => {
            let Some(text) = body.get("inputText").and_then(Value::as_str).filter(|t| !t.is_empty()) else {
                return bedrock_error(w, 400, "ValidationException", "Malformed input request: #: required key [inputText] not found, please reformat your input and try again.");
            };
            let dims = match body.get("dimensions").map(Value::as_u64) {
                None => 1024,
                Some(Some(d @ (256 | 512 | 1024))) => d as usize,
                Some(_) => return bedrock_error(w, 400, "ValidationException", "Malformed input request: #/dimensions: 300 is not a valid enum value, please reformat your input and try again."),
            };
            let v = super::embeddings::vector(text, dims);
            let n = words(text);
            (json!({"embedding": v, "inputTextTokenCount": n, "embeddingsByType": {"float": v}}), n)
        }
        "cohere.embed-english-v3" | "cohere.embed-multilingual-v3" => {
            let texts: Vec<&str> = body
                .get("texts")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if texts.is_empty() || texts.len() > 96 || body.get("input_type").and_then(Value::as_str).is_none() {
                return bedrock_error(w, 400, "ValidationException", "Malformed input request: texts (1 to 96) and input_type are required, please reformat your input and try again.");
            }
            let vectors: Vec<Vec<f32>> = texts.iter().map(|t| super::embeddings::vector(t, 1024)).collect();
            let n = texts.iter().map(|t| words(t)).sum();
            (
                json!({"id": "fake-cohere-embed", "texts": texts, "embeddings": vectors, "response_type": "embeddings_floats"}),
                n,
            )
        }
        _ => return bedrock_error(w, 400, "ValidationException", "The provided model identifier is invalid."),
    };
    let mut h = json_headers();
    h.push(("x-amzn-requestid", "fake-bedrock-embed".into()));
    h.push(("x-amzn-bedrock-input-token-count", tokens.to_string()));
    respond(w, 200, &h, out.to_string().as_bytes())
}
