//! MLflow tracking against a real `mlflow server` (PyPI's `mlflow`, which `.ci/run`
//! installs; `WMX_MLFLOW` names its executable when it is not on PATH): parameters,
//! per-step metrics, final metrics and artifacts of a tiny run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

fn mlflow() -> PathBuf {
    std::env::var_os("WMX_MLFLOW").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("mlflow"))
}

/// A free local port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET `url`, through Python's standard library: the body, or None when unreachable.
fn get(url: &str) -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())", url])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn get_json(url: &str) -> serde_json::Value {
    serde_json::from_str(&get(url).unwrap_or_else(|| panic!("GET {url} failed"))).unwrap()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(dir: &Path) -> (Server, String) {
    let port = free_port();
    let child = Command::new(mlflow())
        .args(["server", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
        .arg("--backend-store-uri")
        .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
        .arg("--artifacts-destination")
        .arg(dir.join("artifacts"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{} server` ({e}): install PyPI's mlflow (.ci/run does) or set WMX_MLFLOW", mlflow().display()));
    let server = Server(child);
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while get(&format!("{url}/health")).is_none() {
        assert!(started.elapsed() < Duration::from_secs(120), "mlflow server did not answer at {url}");
        std::thread::sleep(Duration::from_millis(500));
    }
    (server, url)
}

#[test]
fn a_run_is_followed_in_mlflow_and_resumes_into_the_same_mlflow_run() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = start_server(dir.path());
    let exp = experiment(dir.path());
    let mut toml = std::fs::read_to_string(&exp).unwrap();
    toml.push_str(&format!("[tracking]\nmlflow = \"{url}\"\nexperiment = \"wmx-test\"\n"));
    std::fs::write(&exp, &toml).unwrap();
    // Interrupted once, then resumed: one MLflow run, continued.
    let child = start_run(dir.path(), &exp, 8);
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(130));
    run_ok(dir.path(), &exp);
    let run = run_dir(dir.path());
    let link: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("mlflow.json")).unwrap()).unwrap();
    let run_id = link["run_id"].as_str().unwrap();

    let found = get_json(&format!("{url}/api/2.0/mlflow/runs/get?run_id={run_id}"));
    let info = &found["run"]["info"];
    assert_eq!(info["status"], "FINISHED", "{found}");
    let data = &found["run"]["data"];
    let param = |key: &str| data["params"].as_array().unwrap().iter().find(|p| p["key"] == key).map(|p| p["value"].clone());
    assert_eq!(param("model.hidden_size"), Some("32".into()), "{data}");
    assert_eq!(param("fusion.layers"), Some("[0, 1]".into()), "{data}");
    let metric = |key: &str| data["metrics"].as_array().unwrap().iter().find(|m| m["key"] == key).map(|m| m["value"].as_f64().unwrap());
    let accuracy: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("eval/summary.json")).unwrap()).unwrap();
    assert_eq!(metric("test_accuracy"), accuracy["accuracy"].as_f64(), "{data}");
    // Every step's text loss, once each, across the interruption.
    let history = get_json(&format!("{url}/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=text_loss&max_results=10000"));
    let mut steps: Vec<i64> = history["metrics"].as_array().unwrap().iter().map(|m| m["step"].as_i64().unwrap()).collect();
    steps.sort_unstable();
    steps.dedup();
    let rows = std::fs::read_to_string(run.join("metrics.csv")).unwrap().lines().count() - 1;
    assert_eq!(steps, (1..=rows as i64).collect::<Vec<_>>());
    // The report and predictions as artifacts.
    let listed = get_json(&format!("{url}/api/2.0/mlflow-artifacts/artifacts?path={}/{run_id}/artifacts/report", link["experiment_id"].as_str().unwrap()));
    assert!(listed.to_string().contains("index.html"), "{listed}");
    let listed = get_json(&format!("{url}/api/2.0/mlflow-artifacts/artifacts?path={}/{run_id}/artifacts/eval", link["experiment_id"].as_str().unwrap()));
    assert!(listed.to_string().contains("predictions.parquet"), "{listed}");
}

#[test]
fn an_unreachable_tracking_server_fails_the_run_at_its_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let port = free_port();
    let mut toml = std::fs::read_to_string(&exp).unwrap();
    toml.push_str(&format!("[tracking]\nmlflow = \"http://127.0.0.1:{port}\"\n"));
    let tracked = dir.path().join("tracked.toml");
    std::fs::write(&tracked, &toml).unwrap();
    let out = wmx(dir.path()).args(["run", tracked.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("tracking.mlflow") && text.contains(&format!("127.0.0.1:{port}")), "{text}");
    // Without the key, nothing changes: the same run id.
    let (a, b) = (wmx::config::load(&tracked, &[]).unwrap(), wmx::config::load(&exp, &[]).unwrap());
    assert!(a.experiment.tracking.mlflow.is_some() && b.experiment.tracking.mlflow.is_none());
    let root = Path::new(".");
    assert_eq!(wmx::rundir::RunDir::for_experiment(root, &a).unwrap().0.path, wmx::rundir::RunDir::for_experiment(root, &b).unwrap().0.path);
}
