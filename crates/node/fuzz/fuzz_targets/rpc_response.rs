//! Fuzz the JSON-RPC answer handling: `RpcClient::call` against a loopback HTTP server that
//! answers with the fuzzer's status and body (the body interpretation is inside `call`, no
//! public function of its own), and `BlockAnswer::from_result` on what comes back.
//!
//! Input: first byte picks the HTTP status (200, 400, 401, 403, 404, 500, 503, 200); the rest is
//! the body, sent with a `Content-Length`.
//!
//! Invariants beyond "no panic": 401/403 are `Unauthorized`; the answer is `Ok` only with a 2xx
//! status, a JSON body whose `error` is null or absent, and then it is exactly the body's
//! `result` member; a JSON body with a non-null `error` is `Error::Rpc`; the connection never
//! fails (`Transport`/`Timeout`); `BlockAnswer` is exactly one of accepted, inconclusive or
//! rejected, and prints.
#![no_main]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use hashrig_node::rpc::{Auth, NodeUrl, RpcClient};
use hashrig_node::{BlockAnswer, Error};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const STATUS: [u16; 8] = [200, 400, 401, 403, 404, 500, 503, 200];

struct Fixture {
    rt: tokio::runtime::Runtime,
    client: RpcClient,
    answer: &'static Mutex<(u16, Vec<u8>)>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        static ANSWER: Mutex<(u16, Vec<u8>)> = Mutex::new((200, Vec::new()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                std::thread::spawn(move || serve(conn, &ANSWER));
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut client = RpcClient::new(NodeUrl { host: "127.0.0.1".into(), port }, Auth::UserPass { user: "u".into(), password: "p".into() });
        client.timeout = Duration::from_secs(20);
        Fixture { rt, client, answer: &ANSWER }
    })
}

/// HTTP/1.1 keep-alive: read a request (head and Content-Length body), write the answer.
fn serve(conn: std::net::TcpStream, answer: &Mutex<(u16, Vec<u8>)>) {
    let _ = conn.set_nodelay(true);
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let (status, body) = answer.lock().unwrap().clone();
        let mut out = format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend_from_slice(&body);
        if w.write_all(&out).is_err() {
            return;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else { return };
    let status = STATUS[usize::from(first) % STATUS.len()];
    let f = fixture();
    *f.answer.lock().unwrap() = (status, body.to_vec());
    let got = f.rt.block_on(f.client.call("submitblock", serde_json::json!(["00"])));
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let ok = (200..300).contains(&status);
    match &got {
        Ok(v) => {
            let j = json.as_ref().expect("Ok from a body that is not JSON");
            assert!(ok, "Ok with HTTP {status}");
            assert!(j.get("error").is_none_or(Value::is_null), "Ok despite an error member: {j}");
            assert_eq!(Some(v), j.get("result"));
            let a = BlockAnswer::from_result(v);
            let kinds = [a.is_accepted(), a.is_rejection(), a == BlockAnswer::Inconclusive];
            assert_eq!(kinds.iter().filter(|k| **k).count(), 1, "{a:?}");
            assert_eq!(a == BlockAnswer::Accepted, v.is_null());
            let _ = a.to_string();
        }
        Err(Error::Unauthorized { .. }) => assert!(status == 401 || status == 403),
        Err(Error::Rpc { .. }) => {
            assert!(status != 401 && status != 403);
            let j = json.as_ref().expect("Rpc error from a body that is not JSON");
            assert!(j.get("error").is_some_and(|e| !e.is_null()));
        }
        Err(Error::HttpStatus { body: quoted, .. }) => {
            assert!(!ok && status != 401 && status != 403);
            assert!(quoted.chars().count() <= 201);
        }
        Err(Error::Http { .. }) => assert!(ok),
        Err(e) => panic!("unexpected error against a working server: {e:?}"),
    }
    if let Err(e) = &got {
        let _ = (e.to_string(), e.is_transient());
        assert!(!matches!(e, Error::Unauthorized { .. }) || status == 401 || status == 403);
    }
    if status == 401 || status == 403 {
        assert!(matches!(got, Err(Error::Unauthorized { .. })), "{got:?}");
    }
});
