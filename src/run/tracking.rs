//! MLflow tracking through its REST API (`[tracking] mlflow = "http://host:port"`):
//! the resolved config as parameters, every step's losses as metrics, the final
//! evaluation as metrics, and the report and predictions as artifacts. A run
//! resumed later continues the same MLflow run (its id is kept in `mlflow.json`).
//! A tracking server that stops answering mid-run is warned about, never fatal:
//! the run's own directory holds everything.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::rundir::RunDir;
use crate::train::fit::StepReport;

/// Metrics sent per `log-batch` call (MLflow accepts up to 1,000).
const BATCH: usize = 500;
/// Parameters per call (MLflow accepts up to 100).
const PARAMS_PER_CALL: usize = 100;
/// The longest parameter value MLflow keeps.
const MAX_PARAM: usize = 6000;

/// An MLflow server at `http://host:port[/prefix]`.
struct Server {
    host: String,
    port: u16,
    prefix: String,
}

impl Server {
    fn parse(url: &str) -> Result<Server> {
        let rest = url.strip_prefix("http://").ok_or_else(|| anyhow!("`{url}` is not an http:// URL"))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/').to_string()),
            None => (rest, String::new()),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().with_context(|| format!("bad port in `{url}`"))?),
            None => (authority.to_string(), 80),
        };
        Ok(Server { host, port, prefix })
    }

    /// One HTTP/1.1 request; the response's status and body.
    fn request(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let address = format!("{}:{}", self.host, self.port);
        let mut stream = TcpStream::connect(&address).with_context(|| format!("cannot reach the MLflow server at {address}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        let head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
            self.prefix,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("the MLflow server answered `{}`", line.trim()))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let header = line.trim();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse::<usize>().ok(),
                    "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| anyhow!("a malformed chunked response"))?;
                if size == 0 {
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                reader.read_exact(&mut body[start..])?;
                line.clear();
                reader.read_line(&mut line)?;
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            reader.read_exact(&mut body)?;
        } else {
            reader.read_to_end(&mut body)?;
        }
        Ok((status, body))
    }

    /// A REST call with a JSON body; the JSON it returns, or its error.
    fn call(&self, method: &str, endpoint: &str, body: &Value) -> Result<Value> {
        let (status, bytes) = self.request(method, &format!("/api/2.0/mlflow/{endpoint}"), "application/json", body.to_string().as_bytes())?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            bail!("MLflow {endpoint}: HTTP {status}: {}", value.get("message").and_then(Value::as_str).unwrap_or(&String::from_utf8_lossy(&bytes)));
        }
        Ok(value)
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `mlflow.json` in the run directory: which MLflow run this run logs to.
#[derive(serde::Serialize, serde::Deserialize)]
struct Link {
    url: String,
    experiment_id: String,
    run_id: String,
}

/// A run's MLflow run, open while the run trains.
pub struct Tracker {
    server: Server,
    run_id: String,
    experiment_id: String,
    pending: Vec<Value>,
    /// Set once a call failed: later calls are skipped, the first failure was warned.
    broken: bool,
}

impl Tracker {
    /// Opens (or, for a resumed run, reopens) the MLflow run of `dir`, and logs the
    /// resolved config as parameters.
    pub fn start(url: &str, experiment: &str, dir: &RunDir, config: &toml::Value) -> Result<Tracker> {
        let server = Server::parse(url)?;
        let link_path = dir.path.join("mlflow.json");
        let link: Option<Link> = std::fs::read(&link_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).filter(|l: &Link| l.url == url);
        let (experiment_id, run_id) = match link {
            Some(l) => {
                server.call("POST", "runs/update", &json!({ "run_id": l.run_id, "status": "RUNNING" }))?;
                (l.experiment_id, l.run_id)
            }
            None => {
                let experiment_id = experiment_id(&server, experiment)?;
                let created = server.call(
                    "POST",
                    "runs/create",
                    &json!({
                        "experiment_id": experiment_id,
                        "run_name": dir.label(),
                        "start_time": now_ms(),
                        "tags": [{ "key": "wmx.run_dir", "value": dir.path.display().to_string() }],
                    }),
                )?;
                let run_id = created["run"]["info"]["run_id"].as_str().ok_or_else(|| anyhow!("MLflow runs/create returned no run id"))?.to_string();
                let link = Link { url: url.to_string(), experiment_id: experiment_id.clone(), run_id: run_id.clone() };
                crate::fs::write_atomic(&link_path, &serde_json::to_vec_pretty(&link)?)?;
                (experiment_id, run_id)
            }
        };
        let mut params = BTreeMap::new();
        crate::compare::flatten("", config, &mut params);
        let params: Vec<Value> = params
            .into_iter()
            .map(|(key, value)| json!({ "key": key, "value": value.chars().take(MAX_PARAM).collect::<String>() }))
            .collect();
        for chunk in params.chunks(PARAMS_PER_CALL) {
            server.call("POST", "runs/log-batch", &json!({ "run_id": run_id, "params": chunk }))?;
        }
        dir.log(&format!("tracking in MLflow at {url}: experiment {experiment_id}, run {run_id}"));
        Ok(Tracker { server, run_id, experiment_id, pending: Vec::new(), broken: false })
    }

    /// Queues one step's losses, sending them in batches.
    pub fn step(&mut self, r: &StepReport) {
        let time = now_ms();
        let mut metric = |key: String, value: f64| {
            if value.is_finite() {
                self.pending.push(json!({ "key": key, "value": value, "timestamp": time, "step": r.step }));
            }
        };
        metric("text_loss".into(), r.text_loss);
        for (k, l) in r.wat_losses.iter().enumerate() {
            metric(format!("wat_loss_{k}"), *l);
        }
        metric("learning_rate".into(), r.learning_rate);
        metric("grad_norm".into(), r.grad_norm);
        metric("tokens_per_second".into(), r.tokens as f64 / r.seconds.max(1e-9));
        if self.pending.len() >= BATCH {
            self.flush();
        }
    }

    /// Sends the queued metrics.
    pub fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for chunk in pending.chunks(BATCH) {
            let sent = self.server.call("POST", "runs/log-batch", &json!({ "run_id": self.run_id, "metrics": chunk }));
            self.check(sent);
        }
    }

    fn check<T>(&mut self, result: Result<T>) {
        if let Err(err) = result
            && !self.broken
        {
            self.broken = true;
            log::warn!("MLflow tracking stopped: {err:#} (the run directory keeps everything)");
        }
    }

    /// Logs the evaluation's final metrics and uploads the report and predictions.
    pub fn finish(&mut self, run: &Path, status: crate::rundir::Status) {
        self.flush();
        if let Some(summary) = crate::rundir::summary::Summary::read(&run.join("eval")) {
            let time = now_ms();
            let mut finals = vec![
                ("test_accuracy".to_string(), summary.accuracy),
                ("selection_accuracy".to_string(), summary.selection.accuracy),
                ("oracle_accuracy".to_string(), summary.selection.oracle),
            ];
            for (stage, t) in &summary.stages {
                finals.push((format!("test_accuracy.{stage}"), t.accuracy));
            }
            for e in &summary.exits {
                finals.push((format!("exit{}_value_accuracy", e.exit), e.value_accuracy));
                finals.push((format!("exit{}_selected", e.exit), e.selected));
            }
            let metrics: Vec<Value> = finals.into_iter().map(|(key, value)| json!({ "key": key, "value": value, "timestamp": time, "step": 0 })).collect();
            let sent = self.server.call("POST", "runs/log-batch", &json!({ "run_id": self.run_id, "metrics": metrics }));
            self.check(sent);
        }
        for file in ["report/index.html", "report/report.md", "eval/summary.json", "eval/predictions.parquet", "metrics.csv"] {
            let path = run.join(file);
            if let Ok(bytes) = std::fs::read(&path) {
                let uploaded = self.upload(file, &bytes);
                self.check(uploaded);
            }
        }
        let state = match status {
            crate::rundir::Status::Complete => "FINISHED",
            crate::rundir::Status::Failed => "FAILED",
            crate::rundir::Status::Interrupted | crate::rundir::Status::Running => "KILLED",
        };
        let ended = self.server.call("POST", "runs/update", &json!({ "run_id": self.run_id, "status": state, "end_time": now_ms() }));
        self.check(ended);
    }

    /// Puts one artifact through the server's artifact proxy (`mlflow server`'s default).
    fn upload(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = format!("/api/2.0/mlflow-artifacts/artifacts/{}/{}/artifacts/{name}", self.experiment_id, self.run_id);
        let (status, body) = self.server.request("PUT", &path, "application/octet-stream", bytes)?;
        if !(200..300).contains(&status) {
            bail!("uploading {name}: HTTP {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(())
    }
}

/// The id of MLflow experiment `name`, created when missing.
fn experiment_id(server: &Server, name: &str) -> Result<String> {
    let query: String = name.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
    let (status, body) = server.request("GET", &format!("/api/2.0/mlflow/experiments/get-by-name?experiment_name={query}"), "application/json", b"")?;
    if status == 200 {
        let value: Value = serde_json::from_slice(&body)?;
        if let Some(id) = value["experiment"]["experiment_id"].as_str() {
            return Ok(id.to_string());
        }
    }
    let created = server.call("POST", "experiments/create", &json!({ "name": name }))?;
    created["experiment_id"].as_str().map(str::to_string).ok_or_else(|| anyhow!("MLflow experiments/create returned no id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_split_into_host_port_and_prefix() {
        let s = Server::parse("http://127.0.0.1:5000").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.prefix.as_str()), ("127.0.0.1", 5000, ""));
        let s = Server::parse("http://tracking.lab/mlflow/").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.prefix.as_str()), ("tracking.lab", 80, "/mlflow"));
        assert!(Server::parse("https://x").is_err());
    }
}
