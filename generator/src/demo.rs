//! A stand-in for stepik.org serving the bundled demo course (`site/demo/stepik/`,
//! invented data in the real API's shapes) on a loopback port, so that
//! `generator sync --demo` runs the real client and sync offline, with no credentials.

use std::thread::JoinHandle;

/// The demo course's Stepik id.
pub const COURSE_ID: u64 = 9001;

macro_rules! demo_file {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../site/demo/stepik/",
            $name
        ))
    };
}

const EMPTY_PAGE: &str =
    r#"{"meta": {"page": 3, "has_next": false, "has_previous": true}, "course-grades": []}"#;

/// The response body for a request path (query included), if the demo knows it.
fn answer(method: &str, url: &str) -> Option<&'static str> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let page = query
        .split('&')
        .find_map(|p| p.strip_prefix("page="))
        .unwrap_or("1");
    Some(match (method, path.trim_end_matches('/')) {
        ("POST", "/oauth2/token") => demo_file!("oauth2_token__client_credentials.json"),
        ("GET", "/api/stepics/1") => demo_file!("api_stepics_1.json"),
        ("GET", "/api/courses/9001") => demo_file!("api_courses_9001.json"),
        ("GET", "/api/sections") => demo_file!("api_sections__ids_501_502.json"),
        ("GET", "/api/units") => demo_file!("api_units__ids_7001_7002_7003_7004.json"),
        ("GET", "/api/lessons") => demo_file!("api_lessons__ids_8001_8002_8003_8004.json"),
        ("GET", "/api/steps") => demo_file!("api_steps__ids_90011_to_90042.json"),
        ("GET", "/api/course-grades") => match page {
            "1" => demo_file!("api_course-grades__course_9001__page_1.json"),
            "2" => demo_file!("api_course-grades__course_9001__page_2.json"),
            _ => EMPTY_PAGE,
        },
        _ => return None,
    })
}

/// A running demo server; it stops with the process.
pub struct DemoStepik {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    _thread: JoinHandle<()>,
}

/// Starts the demo server on a free loopback port.
pub fn start() -> std::io::Result<DemoStepik> {
    let server = tiny_http::Server::http("127.0.0.1:0").map_err(std::io::Error::other)?;
    let port = server
        .server_addr()
        .to_ip()
        .map(|a| a.port())
        .ok_or_else(|| std::io::Error::other("the demo server has no IP address"))?;
    let thread = std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let method = request.method().as_str().to_owned();
            let response = match answer(&method, request.url()) {
                Some(body) => tiny_http::Response::from_string(body).with_status_code(200),
                None => tiny_http::Response::from_string(r#"{"detail": "Not found."}"#)
                    .with_status_code(404),
            };
            let header = tiny_http::Header::from_bytes("Content-Type", "application/json")
                .expect("a valid static header");
            let _ = request.respond(response.with_header(header));
        }
    });
    Ok(DemoStepik {
        base_url: format!("http://127.0.0.1:{port}"),
        _thread: thread,
    })
}
