//! Fake providers: offline stand-ins for the paid provider APIs, speaking their real wire formats
//! (see the providers reference): OpenAI `POST /v1/chat/completions` and Anthropic
//! `POST /v1/messages`, non-streamed and streamed (SSE); Azure OpenAI
//! (`/openai/deployments/D/chat/completions?api-version=V`, `api-key`); Gemini
//! (`/v1beta/models/M:generateContent`, `x-goog-api-key`); Bedrock Converse
//! (`/model/M/converse`, every request's SigV4 signature verified: `--key NAME=AKID:SECRET`,
//! `--region NAME=REGION`, default us-east-1). Each with its real error bodies.
//!
//! ```text
//! fake-providers --listen NAME=ADDR [--listen NAME=ADDR ...] [--key NAME=KEY ...] [--region NAME=REGION]
//! ```
//! Each listener is one provider instance named NAME (the name fault rules refer to). It prints
//! `NAME ADDR` per listener and then `ready` on stdout.
//!
//! Per request, a caller chooses faults with the `x-fake-fault` header:
//! `NAME=FAULT[,NAME=FAULT...]` (`*` matches every instance), where FAULT is one of
//! `429`, `500`, `503`, `529` (that status, with the provider's real error body and retry
//! headers), `STATUS-if-TEXT` (that status only for a request whose body holds TEXT), `delay-MS` (answer after MS milliseconds), `reset` (close the connection before
//! answering), `reset-after-N` (stream N content events, then drop the connection),
//! `error-after-N` (stream N content events, then the provider's in-stream error event),
//! `slow-MS` (wait MS before each streamed content event), `linger-MS` (after a stream's last
//! event, wait MS before ending the body, as a provider holding the connection), `pieces-N` (streamed text in pieces
//! of at most N characters, as a model's tokens split words),
//! `malformed` (a 200 whose JSON body is cut short), `not-json` (a last user message that is
//! JSON, which the fakes otherwise answer with that JSON, is answered in prose), `odd-header` (a 200 whose headers carry
//! bytes that are not UTF-8), `gateway-header` (OpenAI only: a 200 that carries headers in the
//! gateway's own `x-aigw-` namespace, posing as the gateway's), `finish-REASON` (Gemini only: the answer
//! ends with that `finishReason`).
//!
//! `GET /__fake/requests` returns what the instance received (method, path, headers, body);
//! `DELETE /__fake/requests` forgets it. `PUT /__fake/keys` (a JSON array) sets the keys the
//! instance accepts from then on, as a provider issuing or revoking keys; `--key` may repeat.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

mod embeddings;
mod more;
mod responses;

struct Request {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

struct Instance {
    name: String,
    /// The keys this provider accepts (any, when none were given).
    keys: Mutex<Option<Vec<String>>>,
    /// The region a Bedrock instance checks signatures for (`--region NAME=REGION`).
    region: Option<String>,
    log: Mutex<Vec<Value>>,
    counter: AtomicU64,
    /// The ids of the responses stored (`/v1/responses` with `store` not false).
    responses: Mutex<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    Status(u16),
    Delay(u64),
    Reset,
    ResetAfter(usize),
    ErrorAfter(usize),
    /// Wait this many ms before each streamed content event.
    Slow(u64),
    /// After a stream's last event, wait this many ms before ending the body.
    Linger(u64),
    /// Streamed text in pieces of at most this many characters.
    Pieces(usize),
    Malformed,
    /// A 200 whose `content-type` and `x-fake-note` headers carry a byte that is not UTF-8.
    OddHeader,
    /// A 200 with `x-aigw-` headers of the provider's own.
    GatewayHeader,
    /// A request whose last user message is JSON is answered in prose, not with that JSON.
    NotJson,
    /// The model refuses: OpenAI's `refusal` field, Anthropic's `refusal` stop reason, and the
    /// refusal's text for the others.
    Refuse,
    /// `finish-REASON`: Gemini's answer ends with that `finishReason` (one Gemini sends).
    Finish(&'static str),
}

/// The `finishReason`s Gemini sends that the `finish-REASON` fault can ask for.
const GEMINI_FINISH_REASONS: [&str; 6] =
    ["STOP", "MAX_TOKENS", "SAFETY", "RECITATION", "MALFORMED_FUNCTION_CALL", "OTHER"];

thread_local! {
    /// The request being answered on this thread was given the `not-json` fault.
    static NOT_JSON: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The request being answered on this thread was given the `linger-MS` fault: its ms.
    static LINGER_MS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// `pieces-N`: streamed text in pieces of at most N characters.
    static PIECES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// The request being answered on this thread was given the `refuse` fault.
    static REFUSE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn main() {
    let mut listens = Vec::new();
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut regions: BTreeMap<String, String> = BTreeMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        let Some((name, value)) = v.split_once('=') else {
            eprintln!("usage: fake-providers --listen NAME=ADDR [--key NAME=KEY]");
            std::process::exit(2);
        };
        match a.as_str() {
            "--listen" => listens.push((name.to_string(), value.to_string())),
            "--region" => {
                regions.insert(name.to_string(), value.to_string());
            }
            "--key" => {
                keys.entry(name.to_string()).or_default().push(value.to_string());
            }
            _ => {
                eprintln!("unknown argument {a}");
                std::process::exit(2);
            }
        }
    }
    if listens.is_empty() {
        eprintln!("usage: fake-providers --listen NAME=ADDR [--key NAME=KEY]");
        std::process::exit(2);
    }
    let mut handles = Vec::new();
    for (name, addr) in listens {
        let listener = match TcpListener::bind(&addr) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("fake-providers: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        };
        let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
        println!("{name} {local}");
        let inst = Arc::new(Instance {
            keys: Mutex::new(keys.get(&name).cloned()),
            region: regions.get(&name).cloned(),
            name,
            log: Mutex::new(Vec::new()),
            counter: AtomicU64::new(0),
            responses: Mutex::new(Vec::new()),
        });
        handles.push(std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let inst = inst.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &inst);
                });
            }
        }));
    }
    println!("ready");
    let _ = io::stdout().flush();
    for h in handles {
        let _ = h.join();
    }
}

fn read_request(r: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut body = Vec::new();
    if headers.get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            chunk.truncate(n);
            body.extend(chunk);
            if n == 0 {
                break;
            }
        }
    } else if let Some(n) = headers.get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Some(Request { method, path, headers, body }))
}

fn serve(conn: TcpStream, inst: &Instance) -> io::Result<()> {
    let _ = conn.set_nodelay(true);
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    while let Some(req) = read_request(&mut r)? {
        let keep = handle(&req, inst, &mut w)?;
        if !keep {
            break;
        }
    }
    Ok(())
}

/// Writes a complete response; returns whether the connection stays open.
fn respond(w: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &[u8]) -> io::Result<bool> {
    // As the providers' own front ends: their server's name, and the connection kept open.
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\nserver: fake-provider\r\nconnection: keep-alive\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    w.write_all(out.as_bytes())?;
    w.write_all(body)?;
    w.flush()?;
    Ok(true)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        529 => "Site Overloaded",
        _ => "Status",
    }
}

impl Instance {
    fn accepts(&self, presented: &str) -> bool {
        match self.keys.lock().as_deref() {
            Ok(Some(keys)) => keys.iter().any(|k| k == presented),
            _ => true,
        }
    }
}

fn fault_for(req: &Request, name: &str) -> Fault {
    let Some(spec) = req.headers.get("x-fake-fault") else { return Fault::None };
    for rule in spec.split(',') {
        let Some((who, what)) = rule.trim().split_once('=') else { continue };
        if who != name && who != "*" {
            continue;
        }
        let n = |p: &str| what.strip_prefix(p).and_then(|v| v.parse::<u64>().ok());
        // `STATUS-if-TEXT`: that status only for a request whose body holds TEXT.
        if let Some((status, text)) = what.split_once("-if-") {
            let holds = req.body.windows(text.len().max(1)).any(|w| w == text.as_bytes());
            return match status.parse::<u16>() {
                Ok(s) if holds => Fault::Status(s),
                _ => Fault::None,
            };
        }
        return if let Ok(s) = what.parse::<u16>() {
            Fault::Status(s)
        } else if let Some(ms) = n("delay-") {
            Fault::Delay(ms)
        } else if let Some(ms) = n("slow-") {
            Fault::Slow(ms)
        } else if let Some(ms) = n("linger-") {
            Fault::Linger(ms)
        } else if let Some(k) = n("pieces-") {
            Fault::Pieces(usize::try_from(k).unwrap_or(1).max(1))
        } else if let Some(k) = n("reset-after-") {
            Fault::ResetAfter(usize::try_from(k).unwrap_or(0))
        } else if let Some(k) = n("error-after-") {
            Fault::ErrorAfter(usize::try_from(k).unwrap_or(0))
        } else if what == "reset" {
            Fault::Reset
        } else if what == "malformed" {
            Fault::Malformed
        } else if what == "odd-header" {
            Fault::OddHeader
        } else if what == "gateway-header" {
            Fault::GatewayHeader
        } else if what == "not-json" {
            Fault::NotJson
        } else if what == "refuse" {
            Fault::Refuse
        } else if let Some(reason) =
            what.strip_prefix("finish-").and_then(|r| GEMINI_FINISH_REASONS.iter().find(|k| **k == r))
        {
            Fault::Finish(reason)
        } else {
            Fault::None
        };
    }
    Fault::None
}

fn handle(req: &Request, inst: &Instance, w: &mut TcpStream) -> io::Result<bool> {
    let path = req.path.split('?').next().unwrap_or("");
    match (req.method.as_str(), path) {
        ("GET", "/__fake/requests") => {
            let body = Value::Array(inst.log.lock().map(|l| l.clone()).unwrap_or_default()).to_string();
            return respond(w, 200, &[("content-type", "application/json".into())], body.as_bytes());
        }
        ("DELETE", "/__fake/requests") => {
            if let Ok(mut l) = inst.log.lock() {
                l.clear();
            }
            return respond(w, 204, &[], b"");
        }
        ("GET", "/healthz") => return respond(w, 200, &[], b"ok"),
        ("PUT", "/__fake/keys") => {
            // The provider issues or revokes keys: the body is the list it accepts from now on.
            let Ok(list) = serde_json::from_slice::<Vec<String>>(&req.body) else {
                return respond(w, 400, &[], b"a JSON array of keys");
            };
            if let Ok(mut k) = inst.keys.lock() {
                *k = Some(list);
            }
            return respond(w, 204, &[], b"");
        }
        _ => {}
    }
    if let Ok(mut l) = inst.log.lock() {
        l.push(json!({"method": req.method, "path": req.path, "headers": req.headers,
                      "body": String::from_utf8_lossy(&req.body)}));
    }
    let n = inst.counter.fetch_add(1, Ordering::Relaxed);
    let fault = fault_for(req, &inst.name);
    NOT_JSON.with(|c| c.set(matches!(fault, Fault::NotJson)));
    LINGER_MS.with(|c| c.set(if let Fault::Linger(ms) = fault { ms } else { 0 }));
    REFUSE.with(|c| c.set(matches!(fault, Fault::Refuse)));
    PIECES.with(|c| c.set(if let Fault::Pieces(n) = fault { n } else { 0 }));
    if let Fault::Delay(ms) = fault {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if fault == Fault::Reset {
        let _ = w.shutdown(std::net::Shutdown::Both);
        return Ok(false);
    }
    match (req.method.as_str(), path) {
        ("POST", "/v1/chat/completions") => openai(req, inst, w, fault, n, false),
        ("POST", "/v1/messages") => anthropic(req, inst, w, fault, n),
        ("POST", "/v1/embeddings" | "/v1/responses") => openai(req, inst, w, fault, n, false),
        ("POST", "/openai/v1/responses") => openai(req, inst, w, fault, n, true),
        ("POST", p)
            if p.starts_with("/openai/deployments/")
                && (p.ends_with("/chat/completions") || p.ends_with("/embeddings")) =>
        {
            openai(req, inst, w, fault, n, true)
        }
        ("POST", p) if p.starts_with("/v1beta/models/") && p.ends_with(":batchEmbedContents") => {
            more::gemini(req, inst, w, fault, n, false)
        }
        ("POST", p) if p.starts_with("/v1beta/models/") && p.ends_with(":generateContent") => {
            more::gemini(req, inst, w, fault, n, false)
        }
        ("POST", p) if p.starts_with("/v1beta/models/") && p.ends_with(":streamGenerateContent") => {
            more::gemini(req, inst, w, fault, n, true)
        }
        ("POST", p) if p.starts_with("/model/") && p.ends_with("/invoke") => more::bedrock_invoke(req, inst, w, fault),
        ("POST", p) if p.starts_with("/model/") && p.ends_with("/converse") => {
            more::bedrock(req, inst, w, fault, n, false)
        }
        ("POST", p) if p.starts_with("/model/") && p.ends_with("/converse-stream") => {
            more::bedrock(req, inst, w, fault, n, true)
        }
        _ => respond(w, 404, &[("content-type", "application/json".into())], br#"{"error":"not found"}"#),
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Every text in the conversation, the last user text, and the message count.
fn conversation(body: &Value) -> (String, String, usize) {
    let mut all = String::new();
    let mut last_user = String::new();
    let msgs = body.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    let text = |c: &Value| -> String {
        match c {
            Value::String(s) => s.clone(),
            Value::Array(parts) => {
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" ")
            }
            _ => String::new(),
        }
    };
    for m in &msgs {
        let t = text(m.get("content").unwrap_or(&Value::Null));
        all.push_str(&t);
        all.push(' ');
        if m.get("role").and_then(Value::as_str) == Some("user") {
            last_user = t;
        }
    }
    for sys in ["system"] {
        if let Some(s) = body.get(sys) {
            all.push_str(&text(s));
        }
    }
    (all, last_user, msgs.len())
}

/// Deterministic answer and token counts for a request. Like the real providers, the answer
/// stops at the request's output bound (`max_completion_tokens` or `max_tokens`, one token a
/// word); `truncated(body)` says whether it did.
/// What a refusing model says.
const REFUSAL: &str = "I'm sorry, but I can't help with that request.";

fn refusing() -> bool {
    REFUSE.with(std::cell::Cell::get)
}

fn answer(body: &Value) -> (Vec<String>, u64, u64) {
    let (all, last_user, count) = conversation(body);
    // A last user message that is JSON is answered with it, as a model asked for JSON output
    // would answer (unless the `not-json` fault says to answer in prose).
    let reply = if refusing() {
        REFUSAL.to_string()
    } else if last_user.trim_start().starts_with('{') && !NOT_JSON.with(std::cell::Cell::get) {
        last_user.trim().to_string()
    } else {
        format!("Echo: {}", last_user.chars().take(200).collect::<String>())
    };
    let mut words: Vec<String> = reply.split_inclusive(' ').map(str::to_string).collect();
    if let Some(max) = output_bound(body) {
        words.truncate(usize::try_from(max).unwrap_or(usize::MAX).max(1));
    }
    let input = all.split_whitespace().count() as u64 + 4 * count as u64;
    let output = words.len() as u64;
    let pieces = PIECES.with(std::cell::Cell::get);
    if pieces > 0 {
        // As a model's tokens: a word may come in several events (the count stays one a word).
        let chars: Vec<char> = words.concat().chars().collect();
        words = chars.chunks(pieces).map(|c| c.iter().collect()).collect();
    }
    (words, input, output)
}

/// The arguments of a tool call the fake is asked to make: `{"city": C}`, where C follows
/// `city=` in the last user message (a model filling an argument from the prompt), else Paris.
fn tool_input(body: &Value) -> Value {
    let (_, last_user, _) = conversation(body);
    let city = last_user
        .split_once("city=")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .filter(|c| !c.is_empty())
        .unwrap_or("Paris");
    json!({ "city": city })
}

/// A tool call's arguments streamed in three pieces, as a model's tokens split them.
fn tool_input_pieces(input: &Value) -> Vec<String> {
    let chars: Vec<char> = input.to_string().chars().collect();
    chars.chunks(chars.len().div_ceil(3).max(1)).map(|c| c.iter().collect()).collect()
}

fn output_bound(body: &Value) -> Option<u64> {
    body.get("max_completion_tokens").or_else(|| body.get("max_tokens")).and_then(Value::as_u64)
}

/// Whether the answer to `body` was cut at its output bound.
fn truncated(body: &Value) -> bool {
    let (_, last_user, _) = conversation(body);
    let full = format!("Echo: {}", last_user.chars().take(200).collect::<String>()).split_inclusive(' ').count();
    output_bound(body).is_some_and(|m| usize::try_from(m).unwrap_or(usize::MAX).max(1) < full)
}

fn start_chunked(w: &mut TcpStream, status: u16, headers: &[(&str, String)]) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} {}\r\ntransfer-encoding: chunked\r\n", reason(status));
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    w.write_all(out.as_bytes())?;
    w.flush()
}

fn chunk(w: &mut TcpStream, data: &str) -> io::Result<()> {
    w.write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes())?;
    w.flush()
}

fn end_chunked(w: &mut TcpStream) -> io::Result<bool> {
    let linger = LINGER_MS.with(std::cell::Cell::get);
    if linger > 0 {
        std::thread::sleep(Duration::from_millis(linger));
    }
    w.write_all(b"0\r\n\r\n")?;
    w.flush()?;
    Ok(true)
}

fn drop_connection(w: &mut TcpStream) -> io::Result<bool> {
    let _ = w.shutdown(std::net::Shutdown::Both);
    Ok(false)
}

// ---------------------------------------------------------------------------------------------
// OpenAI

fn openai_error(
    w: &mut TcpStream,
    status: u16,
    kind: &str,
    code: Option<&str>,
    message: &str,
    extra: &[(&str, String)],
) -> io::Result<bool> {
    let body = json!({"error":{"message":message,"type":kind,"param":null,"code":code}}).to_string();
    let mut h = vec![("content-type", "application/json".to_string()), ("x-request-id", "req_fake_openai".to_string())];
    h.extend_from_slice(extra);
    respond(w, status, &h, body.as_bytes())
}

/// `POST /v1/embeddings` (and Azure's `/openai/deployments/D/embeddings`), past auth and faults.
fn openai_embeddings(body: &Value, model: &str, w: &mut TcpStream) -> io::Result<bool> {
    let Some((native, takes_dimensions)) = embeddings::openai_model(model) else {
        return openai_error(
            w,
            404,
            "invalid_request_error",
            Some("model_not_found"),
            &format!("The model `{model}` does not exist or you do not have access to it."),
            &[],
        );
    };
    let inputs = match embeddings::openai_inputs(body.get("input")) {
        Ok(i) => i,
        Err(msg) => return openai_error(w, 400, "invalid_request_error", None, msg, &[]),
    };
    let dims = match body.get("dimensions") {
        None | Some(Value::Null) => native,
        Some(_) if !takes_dimensions => {
            return openai_error(
                w,
                400,
                "invalid_request_error",
                None,
                "This model does not support specifying dimensions.",
                &[],
            );
        }
        Some(d) => match d.as_u64().and_then(|d| usize::try_from(d).ok()).filter(|d| (1..=native).contains(d)) {
            Some(d) => d,
            None => {
                return openai_error(
                    w,
                    400,
                    "invalid_request_error",
                    None,
                    &format!("Invalid value for 'dimensions' = {d}. Must be between 1 and {native}."),
                    &[],
                )
            }
        },
    };
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return openai_error(
                w,
                400,
                "invalid_request_error",
                None,
                &format!("Invalid value for 'encoding_format' = {other}. Supported values are: 'float' and 'base64'."),
                &[],
            )
        }
    };
    let tokens: u64 = inputs.iter().map(|(_, t)| t).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, (text, _))| {
            json!({"object": "embedding", "index": i,
                                     "embedding": embeddings::encoded(&if model == embeddings::NGRAM_MODEL {
                                         embeddings::ngram_vector(text)
                                     } else {
                                         embeddings::vector(text, dims)
                                     }, base64)})
        })
        .collect();
    let out = json!({"object": "list", "data": data, "model": model,
                     "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    respond(
        w,
        200,
        &[("content-type", "application/json".into()), ("x-request-id", "req_fake_embed".into())],
        out.to_string().as_bytes(),
    )
}

fn openai(req: &Request, inst: &Instance, w: &mut TcpStream, fault: Fault, n: u64, azure: bool) -> io::Result<bool> {
    if azure {
        // Azure OpenAI: `api-key` auth, a required api-version, its own error body shape.
        // The v1 surface (`/openai/v1/...`) takes no api-version; the deployment paths need one.
        if !req.path.contains("api-version=") && !req.path.starts_with("/openai/v1/") {
            let body = json!({"error":{"code":"404","message":"Resource not found"}}).to_string();
            return respond(w, 404, &[("content-type", "application/json".into())], body.as_bytes());
        }
        if !inst.accepts(req.headers.get("api-key").map(String::as_str).unwrap_or("")) {
            let body = json!({"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}).to_string();
            return respond(w, 401, &[("content-type", "application/json".into())], body.as_bytes());
        }
    }
    let presented = req.headers.get("authorization").and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    if !azure && !inst.accepts(presented) {
        {
            let shown: String = presented.chars().take(3).collect();
            return openai_error(w, 401, "invalid_request_error", Some("invalid_api_key"),
                &format!("Incorrect API key provided: {shown}***. You can find your API key at https://platform.openai.com/account/api-keys."), &[]);
        }
    }
    match fault {
        Fault::Status(429) => {
            return openai_error(
                w,
                429,
                "requests",
                Some("rate_limit_exceeded"),
                "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 1s.",
                &[
                    ("retry-after", "1".into()),
                    ("x-ratelimit-limit-requests", "3".into()),
                    ("x-ratelimit-remaining-requests", "0".into()),
                    ("x-ratelimit-reset-requests", "1s".into()),
                ],
            );
        }
        Fault::Status(503) => {
            return openai_error(
                w,
                503,
                "server_error",
                Some("server_is_overloaded"),
                "The server is overloaded. Please try again later.",
                &[],
            );
        }
        Fault::Status(s) if s >= 400 => {
            return openai_error(
                w,
                s,
                "server_error",
                None,
                "The server had an error while processing your request. Sorry about that!",
                &[],
            );
        }
        _ => {}
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return openai_error(
            w,
            400,
            "invalid_request_error",
            None,
            "We could not parse the JSON body of your request.",
            &[],
        );
    };
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return openai_error(w, 400, "invalid_request_error", None, "you must provide a model parameter", &[]);
    };
    if req.path.split('?').next().is_some_and(|p| p.ends_with("/responses")) {
        return responses::openai_responses(&body, model, w, n, &inst.responses);
    }
    if req.path.split('?').next().is_some_and(|p| p.ends_with("/embeddings")) {
        // Azure: the deployment in the path is the model.
        let deployment = azure.then(|| req.path.split('/').nth(3).unwrap_or("").to_string());
        return openai_embeddings(&body, deployment.as_deref().unwrap_or(model), w);
    }
    if body.get("messages").and_then(Value::as_array).is_none_or(|m| m.is_empty()) {
        return openai_error(
            w,
            400,
            "invalid_request_error",
            None,
            "'messages' must contain at least one message.",
            &[],
        );
    }
    let (words, input, output) = answer(&body);
    let id = format!("chatcmpl-fake{n:06}");
    // Asked to use a tool ("required" or a named function): call it with `tool_input`'s arguments.
    let forced_tool = match body.get("tool_choice") {
        Some(Value::String(c)) if c == "required" => {
            body.pointer("/tools/0/function/name").and_then(Value::as_str).map(str::to_string)
        }
        Some(v @ Value::Object(_)) => v.pointer("/function/name").and_then(Value::as_str).map(str::to_string),
        _ => None,
    };
    let call_id = format!("call_fake{n:06}");
    let created = now();
    let usage = json!({"prompt_tokens":input,"completion_tokens":output,"total_tokens":input+output,
        "prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},
        "completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}});
    let rl = [
        ("x-ratelimit-limit-requests", "5000".to_string()),
        ("x-ratelimit-remaining-requests", "4999".to_string()),
        ("x-request-id", format!("req_fake{n}")),
        ("openai-version", "2020-10-01".to_string()),
        ("openai-organization", "org-fake".to_string()),
        ("openai-processing-ms", "412".to_string()),
        ("cf-ray", "8f1e2d3c4b5a6979-FRA".to_string()),
        ("set-cookie", "__cf_bm=fake; path=/; HttpOnly; Secure".to_string()),
    ];
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = body.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
        let mut h = vec![("content-type", "text/event-stream; charset=utf-8".to_string())];
        h.extend_from_slice(&rl);
        start_chunked(w, 200, &h)?;
        if azure {
            // Azure's first chunk carries only the prompt's content-filter results.
            let c = json!({"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[
                {"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]});
            chunk(w, &format!("data: {c}\n\n"))?;
        }
        let mk = |delta: Value, finish: Value| {
            let mut c = json!({"id":id,"object":"chat.completion.chunk","created":created,"model":model,
                "system_fingerprint":"fp_fake","choices":[{"index":0,"delta":delta,"logprobs":null,"finish_reason":finish}]});
            if include_usage {
                c["usage"] = Value::Null;
            }
            format!("data: {c}\n\n")
        };
        // The finish chunk, the usage chunk if asked for, [DONE].
        let finish = |w: &mut TcpStream, reason: &str| -> io::Result<bool> {
            chunk(w, &mk(json!({}), json!(reason)))?;
            if include_usage {
                let c = json!({"id":id,"object":"chat.completion.chunk","created":created,"model":model,
                    "system_fingerprint":"fp_fake","choices":[],"usage":usage});
                chunk(w, &format!("data: {c}\n\n"))?;
            }
            chunk(w, "data: [DONE]\n\n")?;
            end_chunked(w)
        };
        if let Some(name) = &forced_tool {
            chunk(
                w,
                &mk(
                    json!({"role":"assistant","content":null,"tool_calls":[{"index":0,"id":call_id,"type":"function",
                "function":{"name":name,"arguments":""}}],"refusal":null}),
                    Value::Null,
                ),
            )?;
            for part in tool_input_pieces(&tool_input(&body)) {
                chunk(w, &mk(json!({"tool_calls":[{"index":0,"function":{"arguments":part}}]}), Value::Null))?;
            }
            return finish(w, "tool_calls");
        }
        chunk(w, &mk(json!({"role":"assistant","content":"","refusal":null}), Value::Null))?;
        for (i, word) in words.iter().enumerate() {
            if let Fault::Slow(ms) = fault {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            if fault == Fault::ResetAfter(i) {
                return drop_connection(w);
            }
            if fault == Fault::ErrorAfter(i) {
                chunk(
                    w,
                    &format!(
                        "data: {}\n\n",
                        json!({"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}})
                    ),
                )?;
                return end_chunked(w);
            }
            let delta = if refusing() { json!({"refusal":word}) } else { json!({"content":word}) };
            chunk(w, &mk(delta, Value::Null))?;
        }
        return finish(w, if truncated(&body) { "length" } else { "stop" });
    }
    let (message, finish) = match &forced_tool {
        Some(name) => (
            json!({"role":"assistant","content":null,"refusal":null,"annotations":[],"tool_calls":[{"id":call_id,
                "type":"function","function":{"name":name,"arguments":tool_input(&body).to_string()}}]}),
            "tool_calls",
        ),
        None if refusing() => {
            (json!({"role":"assistant","content":null,"refusal":words.concat(),"annotations":[]}), "stop")
        }
        None => (
            json!({"role":"assistant","content":words.concat(),"refusal":null,"annotations":[]}),
            if truncated(&body) { "length" } else { "stop" },
        ),
    };
    let mut out = json!({"id":id,"object":"chat.completion","created":created,"model":model,
        "choices":[{"index":0,"message":message,"logprobs":null,"finish_reason":finish}],
        "usage":usage,"service_tier":"default","system_fingerprint":"fp_fake"});
    if azure {
        out["prompt_filter_results"] =
            json!([{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]);
    }
    let out = out.to_string();
    let mut h = vec![("content-type", "application/json".to_string())];
    h.extend_from_slice(&rl);
    if fault == Fault::Malformed {
        return respond(w, 200, &h, &out.as_bytes()[..out.len() / 2]);
    }
    if fault == Fault::OddHeader {
        return respond_odd(w, &h[1..], out.as_bytes());
    }
    if fault == Fault::GatewayHeader {
        h.push(("x-aigw-cost-usd", "0".into()));
        h.push(("x-aigw-debug", "from-the-provider".into()));
    }
    respond(w, 200, &h, out.as_bytes())
}

/// A 200 JSON answer whose headers carry a byte that is not UTF-8 (obs-text, which HTTP/1.1
/// allows in field values).
fn respond_odd(w: &mut TcpStream, headers: &[(&str, String)], body: &[u8]) -> io::Result<bool> {
    let mut out = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n", body.len()).into_bytes();
    out.extend_from_slice(b"content-type: application/json; note=caf\xe9\r\nx-fake-note: caf\xe9\r\n");
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    w.write_all(&out)?;
    w.write_all(body)?;
    w.flush()?;
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// Anthropic

fn anthropic_error(
    w: &mut TcpStream,
    status: u16,
    kind: &str,
    message: &str,
    extra: &[(&str, String)],
) -> io::Result<bool> {
    let body =
        json!({"type":"error","error":{"type":kind,"message":message},"request_id":"req_fake_anthropic"}).to_string();
    let mut h =
        vec![("content-type", "application/json".to_string()), ("request-id", "req_fake_anthropic".to_string())];
    h.extend_from_slice(extra);
    respond(w, status, &h, body.as_bytes())
}

/// Extended thinking's signature of a thinking block's text, as the fake gives it (Anthropic's
/// are opaque; a block passed back in a later turn must carry the one it was given with).
fn thinking_signature(thinking: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("fake-thinking:{thinking}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// Prompt caching, as Anthropic reports it: the request's prefix up to its last block marked
/// `cache_control` (tools, then system, then the messages' blocks, in order) is written to the
/// cache the first time it is seen and read from it after. Returns (tokens written, tokens
/// read), counted as the fake counts input (a word a token, 4 more per message). The real API
/// caches only prefixes of 1,024 tokens or more; the fake caches any.
fn prompt_cache(body: &Value, input: u64) -> (u64, u64, u64) {
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut blocks: Vec<(&Value, bool)> = Vec::new();
    for t in body.get("tools").and_then(Value::as_array).into_iter().flatten() {
        blocks.push((t, false));
    }
    for b in body.get("system").and_then(Value::as_array).into_iter().flatten() {
        blocks.push((b, false));
    }
    for m in body.get("messages").and_then(Value::as_array).into_iter().flatten() {
        let content = m.get("content").and_then(Value::as_array).into_iter().flatten();
        for (i, b) in content.enumerate() {
            blocks.push((b, i == 0));
        }
    }
    let Some(last) = blocks.iter().rposition(|(b, _)| b.get("cache_control").is_some()) else { return (0, 0, 0) };
    let words = |prefix: &[(&Value, bool)]| -> u64 {
        prefix
            .iter()
            .map(|(b, first)| {
                let text = ["text", "description", "name"].iter().filter_map(|k| b.get(*k).and_then(Value::as_str));
                text.map(|t| t.split_whitespace().count() as u64).sum::<u64>() + if *first { 4 } else { 0 }
            })
            .sum()
    };
    let prefix = &blocks[..=last];
    let tokens = words(prefix).min(input);
    // The prefix up to the last breakpoint kept for an hour (`ttl: "1h"`) is written for an hour.
    let hour_at =
        blocks.iter().rposition(|(b, _)| b.pointer("/cache_control/ttl").and_then(Value::as_str) == Some("1h"));
    let hour = hour_at.map_or(0, |h| words(&blocks[..=h]).min(tokens));
    let key = prefix.iter().map(|(b, _)| b.to_string()).collect::<Vec<_>>().join("\u{0}");
    let Ok(mut seen) = SEEN.lock() else { return (0, 0, 0) };
    if seen.contains(&key) {
        (0, 0, tokens)
    } else {
        seen.push(key);
        (tokens, hour, 0)
    }
}

/// The Claude models that refuse both `temperature` and `top_p` (Sonnet and Haiku 4.5, Opus
/// 4.1 and later, as Anthropic's and Bedrock's documentation name them).
pub fn one_of_temperature_and_top_p(model: &str) -> bool {
    ["sonnet-4-5", "haiku-4-5", "opus-4-1", "opus-4-5", "sonnet-4-6", "opus-4-6"].iter().any(|m| model.contains(m))
}

fn anthropic(req: &Request, inst: &Instance, w: &mut TcpStream, fault: Fault, n: u64) -> io::Result<bool> {
    if !inst.accepts(req.headers.get("x-api-key").map(String::as_str).unwrap_or("")) {
        {
            return anthropic_error(w, 401, "authentication_error", "invalid x-api-key", &[]);
        }
    }
    if !req.headers.contains_key("anthropic-version") {
        return anthropic_error(w, 400, "invalid_request_error", "anthropic-version: header is required", &[]);
    }
    match fault {
        Fault::Status(429) => {
            return anthropic_error(
                w,
                429,
                "rate_limit_error",
                "This request would exceed the rate limit for your organization of 50 requests per minute.",
                &[
                    ("retry-after", "1".into()),
                    ("anthropic-ratelimit-requests-limit", "50".into()),
                    ("anthropic-ratelimit-requests-remaining", "0".into()),
                    ("anthropic-ratelimit-requests-reset", "2026-01-15T12:00:59Z".into()),
                ],
            );
        }
        Fault::Status(529) => return anthropic_error(w, 529, "overloaded_error", "Overloaded", &[]),
        Fault::Status(s) if s >= 400 => return anthropic_error(w, s, "api_error", "Internal server error", &[]),
        _ => {}
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return anthropic_error(
            w,
            400,
            "invalid_request_error",
            "There was an issue with the JSON body of your request.",
            &[],
        );
    };
    if body.get("max_tokens").and_then(Value::as_u64).is_none() {
        return anthropic_error(w, 400, "invalid_request_error", "max_tokens: Field required", &[]);
    }
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_string) else {
        return anthropic_error(w, 400, "invalid_request_error", "model: Field required", &[]);
    };
    let msgs_ok = body.get("messages").and_then(Value::as_array).is_some_and(|m| {
        !m.is_empty() && m.iter().all(|x| matches!(x.get("role").and_then(Value::as_str), Some("user" | "assistant")))
    });
    if !msgs_ok {
        return anthropic_error(w, 400, "invalid_request_error", "messages: roles must be user or assistant", &[]);
    }
    // Extended thinking: a budget of at least 1,024 tokens, below `max_tokens`; thinking blocks
    // passed back must carry the signature they were given with.
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64).unwrap_or(0);
    let thinking = match body.pointer("/thinking/type").and_then(Value::as_str) {
        Some("enabled") => {
            let budget = body.pointer("/thinking/budget_tokens").and_then(Value::as_u64).unwrap_or(0);
            if budget < 1024 {
                let m = "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024";
                return anthropic_error(w, 400, "invalid_request_error", m, &[]);
            }
            if budget >= max_tokens {
                let m = "`max_tokens` must be greater than `thinking.budget_tokens`.";
                return anthropic_error(w, 400, "invalid_request_error", m, &[]);
            }
            // As a model's thinking does, it quotes the prompt (masked values and all).
            let (_, last_user, count) = conversation(&body);
            let quoted: String = last_user.chars().take(200).collect();
            Some(format!("The caller wants an answer to {count} messages; the last says: {quoted}"))
        }
        _ => None,
    };
    let history = body.get("messages").and_then(Value::as_array).into_iter().flatten();
    for b in history.flat_map(|m| m.get("content").and_then(Value::as_array).into_iter().flatten()) {
        if b.get("type").and_then(Value::as_str) == Some("thinking") {
            let text = b.get("thinking").and_then(Value::as_str).unwrap_or_default();
            if b.get("signature").and_then(Value::as_str) != Some(thinking_signature(text).as_str()) {
                return anthropic_error(
                    w,
                    400,
                    "invalid_request_error",
                    "Invalid `signature` in `thinking` block",
                    &[],
                );
            }
        }
    }
    // Claude models since Opus 4.1 take one of `temperature` and `top_p`.
    if one_of_temperature_and_top_p(&model) && body.get("temperature").is_some() && body.get("top_p").is_some() {
        let m = "`temperature` and `top_p` cannot both be specified for this model. Please use only one.";
        return anthropic_error(w, 400, "invalid_request_error", m, &[]);
    }
    // Text blocks are not empty, and a final assistant turn (a prefill) does not end in whitespace.
    let turns = body.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    let blocks = |m: &Value| m.get("content").and_then(Value::as_array).cloned().unwrap_or_default();
    if turns.iter().flat_map(blocks).any(|b| {
        b.get("type").and_then(Value::as_str) == Some("text") && b.get("text").and_then(Value::as_str) == Some("")
    }) {
        return anthropic_error(
            w,
            400,
            "invalid_request_error",
            "messages: text content blocks must be non-empty",
            &[],
        );
    }
    let last = turns.last().filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"));
    let last_text = last.and_then(|m| {
        m.get("content").and_then(|c| {
            c.as_str().map(str::to_string).or_else(|| {
                c.as_array()
                    .and_then(|a| a.last())
                    .and_then(|b| b.get("text"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
        })
    });
    if last_text.is_some_and(|t| t.trim_end() != t) {
        let m = "messages: final assistant content cannot end with trailing whitespace";
        return anthropic_error(w, 400, "invalid_request_error", m, &[]);
    }
    // A stop sequence has something but whitespace in it.
    if let Some(stops) = body.get("stop_sequences").and_then(Value::as_array) {
        if stops.iter().any(|s| s.as_str().is_some_and(|s| s.trim().is_empty())) {
            let m = "stop_sequences: each stop sequence must contain non-whitespace";
            return anthropic_error(w, 400, "invalid_request_error", m, &[]);
        }
    }
    // Every `tool_use` id in the conversation is unique.
    let mut seen_ids = std::collections::HashSet::new();
    for (i, m) in body.get("messages").and_then(Value::as_array).into_iter().flatten().enumerate() {
        for (j, b) in m.get("content").and_then(Value::as_array).into_iter().flatten().enumerate() {
            if b.get("type").and_then(Value::as_str) != Some("tool_use") {
                continue;
            }
            if !seen_ids.insert(b.get("id").and_then(Value::as_str).unwrap_or_default().to_string()) {
                let m = format!("messages.{i}.content.{j}: `tool_use` ids must be unique");
                return anthropic_error(w, 400, "invalid_request_error", &m, &[]);
            }
        }
    }
    // Structured outputs: a format, when given, is a JSON Schema (an object).
    if let Some(format) = body.pointer("/output_config/format") {
        let schema = format.get("type").and_then(Value::as_str) == Some("json_schema")
            && format.get("schema").is_some_and(Value::is_object);
        if !schema {
            let m = "output_config.format: Input tag does not match the expected tag 'json_schema'";
            return anthropic_error(w, 400, "invalid_request_error", m, &[]);
        }
    }
    let (words, input, output) = answer(&body);
    fn ttls<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
        match v {
            Value::Object(o) => {
                if let Some(t) = o.get("cache_control").and_then(|c| c.get("ttl")) {
                    out.push(t);
                }
                o.values().for_each(|x| ttls(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| ttls(x, out)),
            _ => {}
        }
    }
    let mut given = Vec::new();
    ttls(&body, &mut given);
    if given.iter().any(|t| !matches!(t.as_str(), Some("5m" | "1h"))) {
        let m = "cache_control.ttl: Input should be '5m' or '1h'";
        return anthropic_error(w, 400, "invalid_request_error", m, &[]);
    }
    let (cache_written, cache_hour, cache_read) = prompt_cache(&body, input);
    let input = input - cache_written - cache_read;
    let stop_reason = if refusing() {
        "refusal"
    } else if truncated(&body) {
        "max_tokens"
    } else {
        "end_turn"
    };
    let id = format!("msg_fake{n:06}");
    // Asked to use a tool (tool_choice any/tool): call it with `tool_input`'s arguments.
    let forced_tool = match body.pointer("/tool_choice/type").and_then(Value::as_str) {
        Some("tool") => body.pointer("/tool_choice/name").and_then(Value::as_str).map(str::to_string),
        Some("any") => body.pointer("/tools/0/name").and_then(Value::as_str).map(str::to_string),
        _ => None,
    };
    let rl = [
        ("request-id", format!("req_fake{n}")),
        ("anthropic-ratelimit-requests-limit", "50".to_string()),
        ("anthropic-ratelimit-requests-remaining", "49".to_string()),
        ("anthropic-organization-id", "0e7c1a4e-fake".to_string()),
        ("cf-ray", "8f1e2d3c4b5a6978-FRA".to_string()),
        ("via", "1.1 google".to_string()),
    ];
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let mut h = vec![
            ("content-type", "text/event-stream; charset=utf-8".to_string()),
            ("cache-control", "no-cache".to_string()),
        ];
        h.extend_from_slice(&rl);
        start_chunked(w, 200, &h)?;
        let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        chunk(
            w,
            &ev(
                "message_start",
                json!({"type":"message_start","message":{"id":id,"type":"message","role":"assistant",
            "model":model,"content":[],"stop_reason":null,"stop_sequence":null,
            "usage":{"input_tokens":input,"cache_creation_input_tokens":cache_written,"cache_read_input_tokens":cache_read,
                     "cache_creation":{"ephemeral_5m_input_tokens":cache_written - cache_hour,"ephemeral_1h_input_tokens":cache_hour},
                     "output_tokens":1,"service_tier":"standard"}}}),
            ),
        )?;
        // The thinking block first (its text, then its signature), then the text at the next index.
        let at = u64::from(thinking.is_some());
        if let Some(t) = &thinking {
            let start = json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}});
            chunk(w, &ev("content_block_start", start))?;
            for d in [
                json!({"type":"thinking_delta","thinking":t}),
                json!({"type":"signature_delta","signature":thinking_signature(t)}),
            ] {
                chunk(w, &ev("content_block_delta", json!({"type":"content_block_delta","index":0,"delta":d})))?;
            }
            chunk(w, &ev("content_block_stop", json!({"type":"content_block_stop","index":0})))?;
        }
        chunk(
            w,
            &ev(
                "content_block_start",
                json!({"type":"content_block_start","index":at,"content_block":{"type":"text","text":""}}),
            ),
        )?;
        chunk(w, "event: ping\ndata: {\"type\": \"ping\"}\n\n")?;
        if let Some(name) = &forced_tool {
            chunk(w, &ev("content_block_stop", json!({"type":"content_block_stop","index":at})))?;
            chunk(
                w,
                &ev(
                    "content_block_start",
                    json!({"type":"content_block_start","index":at + 1,
                "content_block":{"type":"tool_use","id":format!("toolu_fake{n:06}"),"name":name,"input":{}}}),
                ),
            )?;
            for part in tool_input_pieces(&tool_input(&body)) {
                chunk(
                    w,
                    &ev(
                        "content_block_delta",
                        json!({"type":"content_block_delta","index":at + 1,
                    "delta":{"type":"input_json_delta","partial_json":part}}),
                    ),
                )?;
            }
            chunk(w, &ev("content_block_stop", json!({"type":"content_block_stop","index":at + 1})))?;
            chunk(
                w,
                &ev(
                    "message_delta",
                    json!({"type":"message_delta",
                "delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":12}}),
                ),
            )?;
            chunk(w, &ev("message_stop", json!({"type":"message_stop"})))?;
            return end_chunked(w);
        }
        for (i, word) in words.iter().enumerate() {
            if let Fault::Slow(ms) = fault {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            if fault == Fault::ResetAfter(i) {
                return drop_connection(w);
            }
            if fault == Fault::ErrorAfter(i) {
                chunk(
                    w,
                    &ev("error", json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})),
                )?;
                return end_chunked(w);
            }
            chunk(
                w,
                &ev(
                    "content_block_delta",
                    json!({"type":"content_block_delta","index":at,"delta":{"type":"text_delta","text":word}}),
                ),
            )?;
        }
        chunk(w, &ev("content_block_stop", json!({"type":"content_block_stop","index":at})))?;
        chunk(
            w,
            &ev(
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":stop_reason,"stop_sequence":null},"usage":{"output_tokens":output}}),
            ),
        )?;
        chunk(w, &ev("message_stop", json!({"type":"message_stop"})))?;
        return end_chunked(w);
    }
    let (content, stop) = match &forced_tool {
        Some(name) => (
            json!([{"type":"tool_use","id":format!("toolu_fake{n:06}"),"name":name,"input":tool_input(&body)}]),
            "tool_use",
        ),
        None => (json!([{"type":"text","text":words.concat()}]), stop_reason),
    };
    let content = match (&thinking, content) {
        (Some(t), Value::Array(mut blocks)) => {
            blocks.insert(0, json!({"type":"thinking","thinking":t,"signature":thinking_signature(t)}));
            Value::Array(blocks)
        }
        (_, c) => c,
    };
    let out = json!({"id":id,"type":"message","role":"assistant","model":model,
        "content":content,"stop_reason":stop,"stop_sequence":null,
        "usage":{"input_tokens":input,"cache_creation_input_tokens":cache_written,"cache_read_input_tokens":cache_read,
                 "cache_creation":{"ephemeral_5m_input_tokens":cache_written - cache_hour,"ephemeral_1h_input_tokens":cache_hour},
                 "output_tokens":output,"service_tier":"standard"}})
    .to_string();
    let mut h = vec![("content-type", "application/json".to_string())];
    h.extend_from_slice(&rl);
    if fault == Fault::Malformed {
        return respond(w, 200, &h, &out.as_bytes()[..out.len() / 2]);
    }
    respond(w, 200, &h, out.as_bytes())
}
