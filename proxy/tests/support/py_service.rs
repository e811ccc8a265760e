//! A small Python service (python3's standard library only) as a real process on loopback, in one of two
//! roles: `app`, the service under test, and `dependency`, the service it calls through its HTTP_PROXY.
//! What replay and mock tests record, mock and replay.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// `app`: GET /users/1 answers `{"id":1,"name":$APP_NAME,"updated":<now>}` (dates, a server header);
/// GET /quote?item=N asks the dependency (`$DEPENDENCY`, through `$HTTP_PROXY`) for the price and
/// answers `{"item":N,"quote":price}`; GET /report answers gzip'd JSON.
/// `dependency`: GET /price?item=N answers `{"item":N,"price":N*10}`; POST /orders echoes the ordered
/// item; GET /counter counts its calls; GET /slow?ms=N answers after N ms.
const SERVICE: &str = r#"
import gzip, json, os, sys, time, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

role = sys.argv[1]
calls = {"counter": 0}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def answer(self, status, value, gz=False):
        body = json.dumps(value).encode()
        if gz:
            body = gzip.compress(body)
        self.send_response(status)
        self.send_header("content-type", "application/json")
        if gz:
            self.send_header("content-encoding", "gzip")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if role == "app" and url.path == "/users/1":
            return self.answer(200, {"id": 1, "name": os.environ.get("APP_NAME", "Ann"), "updated": time.time()})
        if role == "app" and url.path == "/quote":
            item = int(query["item"][0])
            with urllib.request.urlopen("http://%s/price?item=%d" % (os.environ["DEPENDENCY"], item)) as r:
                price = json.load(r)["price"]
            return self.answer(200, {"item": item, "quote": price})
        if role == "app" and url.path == "/report":
            return self.answer(200, {"lines": [1, 2, 3]}, gz=True)
        if role == "dependency" and url.path == "/price":
            item = int(query["item"][0])
            return self.answer(200, {"item": item, "price": item * 10})
        if role == "dependency" and url.path == "/counter":
            calls["counter"] += 1
            return self.answer(200, {"count": calls["counter"]})
        if role == "dependency" and url.path == "/slow":
            time.sleep(int(query["ms"][0]) / 1000)
            return self.answer(200, {"slept": int(query["ms"][0])})
        self.answer(404, {"error": "no such path"})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
        if role == "dependency" and self.path == "/orders":
            return self.answer(201, {"ordered": body.get("item"), "status": "created"})
        self.answer(404, {"error": "no such path"})

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The service running; killed when dropped.
pub struct PyService {
    child: Child,
    pub addr: SocketAddr,
}

impl PyService {
    /// Starts the service in `role` with `env`, and waits until it listens (it prints its port then).
    pub fn start(role: &str, env: &[(&str, &str)]) -> PyService {
        let mut command = Command::new("python3");
        command
            .args(["-c", SERVICE, role])
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("no_proxy")
            .env_remove("NO_PROXY")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .expect("python3 runs (scripts/test.sh installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the {role} service printed {line:?}, not its port"));
        PyService {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// Stops the service (its port then refuses connections).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PyService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
